/**
 * Keeps one bpftrace running with a uretprobe on every readline target, and changes the target set without
 * a gap: a new generation (a new bpftrace with the new set) is started, and the old one keeps running until
 * well after the new one reported ready; then it is stopped.
 *
 * The overlap is needed because the `R` line is not proof of attachment: measured here, a new generation's
 * probes first fired 17 to 20 ms after its `R` line arrived, while the old one still saw every line. During
 * the overlap both generations see most readline returns; the copies of one hit carry the same pid, tid and
 * bytes, and times within microseconds of each other. So each line from one generation is matched, one to
 * one, against the lines emitted within MATCH_WINDOW_NS that this generation has not matched yet: a match is
 * the same hit, dropped; anything else is emitted. Two identical lines of one shell (a paste) are two hits and are both
 * kept, because matching is across generations and one to one. When bpftrace dies on its own, the gap until
 * the next generation is attached is reported as a loss, and capture resumes.
 */
import { EventEmitter } from 'node:events';
import { BpftraceProcess, type BpftraceExit } from './bpftrace-process.js';
import { type CapturedLine, ReadlineAssembler, parseReadlineLine } from './readline-output.js';
import { renderReadlineScript } from './readline-script.js';

export interface CaptureLoss {
  reason: 'bpftrace-exited' | 'kernel-lost-events' | 'incomplete-line';
  /** Events (kernel) or lines lost, when known. */
  count?: number;
  /** Monotonic ns of the window in which nothing was captured, when known. */
  fromNs?: bigint;
  toNs?: bigint;
  detail?: string;
}

export interface ReadlineCaptureEvents {
  line: [line: CapturedLine];
  loss: [loss: CaptureLoss];
  /** A new target set is attached (all its probes live). */
  attached: [targets: readonly string[]];
  error: [error: Error];
}

export interface ReadlineCaptureOptions {
  maxCommandBytes: number;
  bpftrace?: string;
  /** How long the old generation keeps running after the new one took over, to flush. */
  overlapMs?: number;
  /** Delay before restarting a bpftrace that died on its own. */
  restartDelayMs?: number;
  /** How long a new bpftrace may take to attach its probes. */
  readyTimeoutMs?: number;
  now?: () => bigint;
}

interface Generation {
  id: number;
  process: BpftraceProcess;
  assembler: ReadlineAssembler;
  targets: readonly string[];
  /** When it reported ready (monotonic ns). */
  fromNs: bigint;
}

/** Copies of one probe hit seen by two bpftrace processes are this close in time (measured: tens of µs). */
const MATCH_WINDOW_NS = 1_000_000n;
const RECENT_KEEP_NS = 5_000_000_000n;
const MAX_RESTART_DELAY_MS = 30_000;

interface Emitted {
  ns: bigint;
  /** Generations that delivered a copy of this hit: each may match it once. */
  generations: Set<number>;
}

export class ReadlineCapture extends EventEmitter<ReadlineCaptureEvents> {
  private current: Generation | undefined;
  private generations = 0;
  /** Generations alive now (more than one during an overlap). */
  private readonly live = new Set<Generation>();
  /** Lines emitted recently, by pid/tid/bytes, for matching copies during an overlap. */
  private readonly recent = new Map<string, Emitted[]>();
  private prunedAtNs = 0n;
  /** Generations that handed over and are flushing before they stop. */
  private readonly retiring = new Set<Promise<void>>();
  private switching: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The targets last asked for: what a restart after a crash attaches. */
  private wanted: readonly string[] = [];
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readonly now: () => bigint;

  constructor(private readonly options: ReadlineCaptureOptions) {
    super();
    this.now = options.now ?? (() => process.hrtime.bigint());
  }

  /** The targets the running generation probes. */
  get targets(): readonly string[] {
    return this.current?.targets ?? [];
  }

  /** Probes exactly these files from now on (empty: stop probing). Calls are serialized. */
  setTargets(targets: readonly string[]): Promise<void> {
    const wanted = [...new Set(targets)].sort();
    this.wanted = wanted;
    this.switching = this.switching.then(() => this.switchTo(wanted));
    return this.switching;
  }

  private async switchTo(targets: readonly string[]): Promise<void> {
    if (this.stopped) return;
    const old = this.current;
    if (old && old.targets.join('\n') === targets.join('\n')) return;
    if (targets.length === 0) {
      this.current = undefined;
      if (old) await this.retire(old);
      return;
    }
    const next = await this.startGeneration(targets);
    next.fromNs = this.now();
    this.current = next;
    this.emit('attached', targets);
    if (old) {
      const retired = new Promise<void>((resolve) =>
        setTimeout(() => void this.retire(old).finally(resolve), this.options.overlapMs ?? 1000),
      );
      this.retiring.add(retired);
      void retired.finally(() => this.retiring.delete(retired));
    }
  }

  private async startGeneration(targets: readonly string[]): Promise<Generation> {
    const script = renderReadlineScript(targets, this.options.maxCommandBytes);
    const process = new BpftraceProcess(script, this.options.bpftrace);
    const generation: Generation = {
      id: ++this.generations,
      process,
      assembler: new ReadlineAssembler(this.options.maxCommandBytes),
      targets,
      fromNs: 0n,
    };
    this.live.add(generation);
    process.on('line', (text) => this.onLine(generation, text));
    process.on('lost', (count) => this.emit('loss', { reason: 'kernel-lost-events', count }));
    process.on('exit', (exit) => this.onExit(generation, exit));
    await process.start();
    await process.attached(this.options.readyTimeoutMs ?? 30_000);
    return generation;
  }

  private onLine(generation: Generation, text: string): void {
    const parsed = parseReadlineLine(text);
    if (!parsed.ok) return;
    const line = generation.assembler.push(parsed.event);
    if (line && this.isNew(generation, line)) this.emit('line', line);
  }

  /** False when another generation already emitted this hit (see the header). */
  private isNew(generation: Generation, line: CapturedLine): boolean {
    if (this.live.size < 2 && this.recent.size === 0) return true;
    const key = `${line.pid}/${line.tid}/${line.bytes.toString('base64')}`;
    const copies = this.recent.get(key) ?? [];
    const twin = copies.find(
      (c) =>
        !c.generations.has(generation.id) &&
        (c.ns > line.ns ? c.ns - line.ns : line.ns - c.ns) <= MATCH_WINDOW_NS,
    );
    if (twin) {
      twin.generations.add(generation.id);
      return false;
    }
    copies.push({ ns: line.ns, generations: new Set([generation.id]) });
    this.recent.set(key, copies);
    // Pruning walks the whole map: at most once a second, not on every line of a busy overlap.
    if (line.ns - this.prunedAtNs > 1_000_000_000n) this.forgetOld(line.ns);
    return true;
  }

  private forgetOld(nowNs: bigint): void {
    this.prunedAtNs = nowNs;
    for (const [key, copies] of this.recent) {
      const kept = copies.filter((c) => nowNs - c.ns < RECENT_KEEP_NS);
      if (kept.length) this.recent.set(key, kept);
      else this.recent.delete(key);
    }
  }

  private async retire(generation: Generation): Promise<void> {
    await generation.process.stop();
    this.live.delete(generation);
    if (this.live.size < 2) this.recent.clear();
    if (generation.assembler.incomplete > 0) {
      this.emit('loss', { reason: 'incomplete-line', count: generation.assembler.incomplete });
    }
  }

  private onExit(generation: Generation, exit: BpftraceExit): void {
    this.live.delete(generation);
    if (exit.requested || this.stopped || this.current !== generation) return;
    // bpftrace died on its own: nothing is captured until a new generation is attached.
    const fromNs = this.now();
    this.current = undefined;
    const detail = `bpftrace exited (code ${exit.code}, signal ${exit.signal}): ${exit.stderr.trim().slice(-500)}`;
    this.scheduleRestart(fromNs, detail, 0);
  }

  /**
   * Restarts with the targets wanted now (not those of the dead generation: one may be what killed it), after
   * a delay that doubles with each failed attempt up to MAX_RESTART_DELAY_MS. The attempt queues behind
   * target changes instead of blocking them, and the loss is reported once capture is back.
   */
  private scheduleRestart(fromNs: bigint, detail: string, attempt: number): void {
    const delay = Math.min((this.options.restartDelayMs ?? 1000) * 2 ** attempt, MAX_RESTART_DELAY_MS);
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      this.switching = this.switching.then(async () => {
        if (this.stopped) return;
        try {
          if (!this.current && this.wanted.length > 0) await this.switchTo(this.wanted);
          this.emit('loss', {
            reason: 'bpftrace-exited',
            fromNs,
            toNs: this.attachedSince() ?? this.now(),
            detail,
          });
        } catch (error) {
          this.emit('error', error as Error);
          this.scheduleRestart(
            fromNs,
            `${detail}; restart ${attempt + 1} failed: ${(error as Error).message}`,
            attempt + 1,
          );
        }
      });
    }, delay);
    this.restartTimers.add(timer);
  }

  /** When the running generation took over (monotonic ns), if one runs. */
  attachedSince(): bigint | undefined {
    return this.current?.fromNs;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.restartTimers) clearTimeout(timer);
    await this.switching.catch(() => undefined);
    const current = this.current;
    this.current = undefined;
    if (current) await this.retire(current);
    await Promise.all(this.retiring);
  }

  /** The running bpftrace's pid (tests kill it to prove capture resumes). */
  bpftracePid(): number | undefined {
    return this.current?.process.pid;
  }
}
