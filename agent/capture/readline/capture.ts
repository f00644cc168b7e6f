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
 *
 * One target must not cost the others their probes. Target changes, restarts and retries run one at a time,
 * each converging on what is wanted now, and one that fails leaves the queue usable. When a generation
 * cannot attach, the targets to blame are found and left out, and the rest is started: first those bpftrace's
 * stderr names (a file gone, a symbol it cannot resolve), else among the targets the running generation does
 * not already probe, else by halves (a set that attaches is good; one that does not is split until each bad
 * target stands alone), each half tried by a bpftrace that is stopped once it attached. A path bpftrace's
 * syntax cannot carry (script.ts) is left out without trying. A target left out is `rejected` (with
 * the reason, for the coverage records of the containers that use it) and tried again with backoff; once it
 * attaches it is `recovered`.
 */
import { EventEmitter } from 'node:events';
import { BpftraceAttachError, BpftraceProcess, type BpftraceExit } from '../bpftrace-process.js';
import { type CapturedLine, type DroppedTotalEvent, ReadlineAssembler, parseReadlineLine } from './parse.js';
import { renderReadlineScript, unprobeablePath } from './script.js';

export interface CaptureLoss {
  reason: 'bpftrace-exited' | 'kernel-lost-events' | 'incomplete-line';
  /** Events (kernel) or lines lost, when known. */
  count?: number;
  /** Monotonic ns of the window in which nothing was captured, when known. */
  fromNs?: bigint;
  toNs?: bigint;
  detail?: string;
}

/** A target left out of the probes while the others are probed. */
export interface TargetRejection {
  target: string;
  reason: string;
  /** When it is tried again, in ms from the rejection; absent when never (bpftrace cannot take its path). */
  retryInMs?: number;
}

/** What a setTargets call came to: the targets probed now, and those wanted but left out, with why. */
export interface TargetsOutcome {
  probed: readonly string[];
  rejected: readonly TargetRejection[];
}

/** Lines of one mount namespace the probe dropped over its kernel budget (script.ts), newly counted. */
export interface KernelDrop {
  mntns: number;
  lines: number;
  bytes: number;
}

export interface ReadlineCaptureEvents {
  line: [line: CapturedLine];
  /** Counted, not printed, in the kernel: one event per tally that grew (once a second at most, per generation). */
  dropped: [drop: KernelDrop];
  loss: [loss: CaptureLoss];
  /** A new target set is attached (all its probes live). */
  attached: [targets: readonly string[]];
  /** A wanted target is left out of the probes (once, when it is first left out). */
  rejected: [rejection: TargetRejection];
  /** A target left out earlier is probed now. */
  recovered: [target: string];
  /** A failure it handled (a start that failed, a step that threw); emitted only while someone listens. */
  error: [error: Error];
}

export interface ReadlineCaptureOptions {
  maxCommandBytes: number;
  bpftrace?: string;
  /** How long the old generation keeps running after the new one took over, to flush. */
  overlapMs?: number;
  /** Delay before restarting a bpftrace that died on its own (doubled while it keeps dying young). */
  restartDelayMs?: number;
  /** Delay before trying a rejected target again; doubled with each failed try, up to MAX_RETRY_DELAY_MS. */
  retryDelayMs?: number;
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
  /** The totals of kernel drops it printed last, by mntns (its tallies are cumulative). */
  dropped: Map<number, { lines: number; bytes: number }>;
}

interface Rejected {
  reason: string;
  /** Failed tries so far (for the backoff). */
  tries: number;
  /** Its retry is due: the next step tries it again. */
  due: boolean;
  timer?: NodeJS.Timeout;
  /** Never retried: bpftrace cannot take the path. */
  final: boolean;
}

/** Copies of one probe hit seen by two bpftrace processes are this close in time (measured: tens of µs). */
const MATCH_WINDOW_NS = 1_000_000n;
const RECENT_KEEP_NS = 5_000_000_000n;
const MAX_RESTART_DELAY_MS = 30_000;
/** A rejected target is tried again at least this often (each try starts a bpftrace). */
const MAX_RETRY_DELAY_MS = 300_000;
/** Kept of a bpftrace's stderr in a reason. */
const REASON_CHARS = 500;

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
  /** The queue of steps; never rejected, whatever a step did. */
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The targets last asked for: what every step converges on. */
  private wanted: readonly string[] = [];
  /** Wanted targets left out of the probes, by target. */
  private readonly rejections = new Map<string, Rejected>();
  /** A step to run later: a restart, or another try at what a failed step left as it was. */
  private stepTimer: NodeJS.Timeout | undefined;
  /** bpftrace deaths in a row, each soon after its start (for the restart delay). */
  private youngDeaths = 0;
  /** A death not yet reported: reported as one loss once the step that replaces it is done. */
  private pendingLoss: { fromNs: bigint; detail: string } | undefined;
  private readonly now: () => bigint;

  constructor(private readonly options: ReadlineCaptureOptions) {
    super();
    this.now = options.now ?? (() => process.hrtime.bigint());
  }

  /** The targets the running generation probes. */
  get targets(): readonly string[] {
    return this.current?.targets ?? [];
  }

  /** The targets last asked for (probed, or rejected and retried). */
  get requested(): readonly string[] {
    return this.wanted;
  }

  /**
   * Probes these files from now on (empty: stop probing), but those that cannot be attached, which are left
   * out and retried later. Calls are serialized; each resolves once its step is done, with what it came to.
   */
  async setTargets(targets: readonly string[]): Promise<TargetsOutcome> {
    this.wanted = [...new Set(targets)].sort();
    await this.enqueue(() => this.converge());
    return {
      probed: this.targets,
      rejected: this.wanted.flatMap((target) => {
        const r = this.rejections.get(target);
        return r ? [{ target, reason: r.reason }] : [];
      }),
    };
  }

  /** An 'error' event, unless nobody listens (an EventEmitter throws an 'error' nobody listens to). */
  private report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** Why a wanted target is left out of the probes, if it is. */
  rejectionOf(target: string): string | undefined {
    return this.rejections.get(target)?.reason;
  }

  /** Runs `step` after the steps queued before it; its failure is the caller's, never the queue's. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** A step queued by a timer: nobody awaits it, so its failure is reported. */
  private enqueueInBackground(): void {
    this.enqueue(() => this.converge()).catch((error: unknown) => this.report(error as Error));
  }

  /**
   * Makes the running generation probe every wanted target that is not rejected (a rejected one whose retry
   * is due counts as not rejected), leaving out those that cannot be attached.
   */
  private async converge(): Promise<void> {
    if (this.stopped) return;
    for (const [target, r] of this.rejections) {
      if (this.wanted.includes(target)) continue;
      clearTimeout(r.timer);
      this.rejections.delete(target);
    }
    for (const target of this.wanted) {
      const problem = unprobeablePath(target);
      if (problem && !this.rejections.has(target))
        this.reject(target, `bpftrace cannot probe this path: ${problem}`, true);
    }
    let candidates = this.wanted.filter((t) => {
      const r = this.rejections.get(t);
      return !r || r.due;
    });
    const retried = candidates.filter((t) => this.rejections.has(t));
    while (!this.stopped) {
      try {
        await this.switchTo(candidates);
        break;
      } catch (error) {
        this.report(error as Error);
        const running = new Set(this.targets);
        const bad = await this.toBlame(candidates, error as Error, running);
        if (this.stopped) return;
        for (const [target, reason] of bad) this.reject(target, reason);
        candidates = candidates.filter((t) => !bad.has(t));
        if (candidates.every((t) => running.has(t))) {
          // The running generation probes all that is left: it stays (a probe on a file no longer wanted
          // costs nothing) rather than be replaced by a start that may fail again; a later step tries again.
          if (candidates.length < running.size) this.stepLater(this.options.retryDelayMs ?? 5000);
          break;
        }
        if (bad.size === 0) throw error;
      }
    }
    if (this.stopped) return;
    for (const target of retried) {
      const r = this.rejections.get(target);
      if (!r?.due) continue; // failed again: rejected anew, with a later retry
      this.rejections.delete(target);
      this.emit('recovered', target);
    }
    if (this.pendingLoss) {
      const { fromNs, detail } = this.pendingLoss;
      this.pendingLoss = undefined;
      this.emit('loss', {
        reason: 'bpftrace-exited',
        fromNs,
        toNs: this.attachedSince() ?? this.now(),
        detail,
      });
    }
  }

  /** Starts a generation for exactly these targets, unless the running one probes them already. */
  private async switchTo(targets: readonly string[]): Promise<void> {
    const old = this.current;
    if ((old?.targets ?? []).join('\n') === targets.join('\n')) return;
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

  /**
   * The targets to leave out after `targets` failed to attach with `error`, each with its reason. Targets the
   * running generation probes are blamed only when bpftrace names them: empty when nothing else is left.
   */
  private async toBlame(
    targets: readonly string[],
    error: Error,
    running: ReadonlySet<string>,
  ): Promise<Map<string, string>> {
    const stderr = error instanceof BpftraceAttachError ? error.stderr : '';
    const named = new Map<string, string>();
    for (const target of targets) {
      const line = lineNaming(stderr, target);
      if (line) named.set(target, `bpftrace could not attach: ${line}`);
    }
    if (named.size > 0) return named;
    const why = reasonOf(error);
    const suspects = targets.filter((t) => !running.has(t));
    const cannotRun = !(error instanceof BpftraceAttachError) || error.cannotRun;
    // bpftrace cannot run now (no search would tell anything), or one new target joined probes that are
    // attached: that one is to blame.
    if (cannotRun || suspects.length === 0 || (suspects.length === 1 && running.size > 0)) {
      return new Map(suspects.map((t) => [t, why]));
    }
    if (suspects.length < targets.length) {
      const bad = await this.culprits(suspects);
      // Each attaches alone, not all of them with the running probes: leave them out for now.
      return bad.size > 0 ? bad : new Map(suspects.map((t) => [t, why]));
    }
    return this.culprits(targets, why);
  }

  /**
   * Which of `targets` do not attach, by halves; `failure` is why the whole set failed, when known. When
   * each half attaches but not both together, the second half is blamed (it is retried later).
   */
  private async culprits(targets: readonly string[], failure?: string): Promise<Map<string, string>> {
    const why = failure ?? (await this.trial(targets));
    if (why === undefined || this.stopped) return new Map();
    if (targets.length === 1) return new Map([[targets[0]!, why]]);
    const half = Math.ceil(targets.length / 2);
    const second = targets.slice(half);
    const bad = new Map([...(await this.culprits(targets.slice(0, half))), ...(await this.culprits(second))]);
    if (bad.size === 0 && !this.stopped) {
      for (const t of second) bad.set(t, `${why} (with the other targets; each attaches alone)`);
    }
    return bad;
  }

  /** Whether a bpftrace with these targets attaches: undefined if it does (it is stopped at once), or why not. */
  private async trial(targets: readonly string[]): Promise<string | undefined> {
    if (this.stopped) return undefined;
    const process = new BpftraceProcess(
      renderReadlineScript(targets, this.options.maxCommandBytes),
      this.options.bpftrace,
    );
    try {
      await process.start();
      await process.attached(this.options.readyTimeoutMs ?? 30_000);
    } catch (error) {
      return reasonOf(error as Error);
    }
    await process.stop();
    return undefined;
  }

  /** Leaves a target out; retried with backoff unless bpftrace can never take it. Reported once. */
  private reject(target: string, reason: string, final = false): void {
    const before = this.rejections.get(target);
    clearTimeout(before?.timer);
    const rejected: Rejected = { reason, tries: (before?.tries ?? 0) + 1, due: false, final };
    let retryInMs: number | undefined;
    if (!final) {
      retryInMs = Math.min(
        (this.options.retryDelayMs ?? 5000) * 2 ** Math.min(rejected.tries - 1, 20),
        MAX_RETRY_DELAY_MS,
      );
      rejected.timer = setTimeout(() => {
        rejected.timer = undefined;
        rejected.due = true;
        this.enqueueInBackground();
      }, retryInMs);
    }
    this.rejections.set(target, rejected);
    if (!before) this.emit('rejected', { target, reason, ...(retryInMs !== undefined ? { retryInMs } : {}) });
  }

  private async startGeneration(targets: readonly string[]): Promise<Generation> {
    const script = renderReadlineScript(targets, this.options.maxCommandBytes);
    const process = new BpftraceProcess(script, this.options.bpftrace);
    const generation: Generation = {
      id: ++this.generations,
      process,
      assembler: new ReadlineAssembler(),
      targets,
      fromNs: 0n,
      dropped: new Map(),
    };
    this.live.add(generation);
    process.on('line', (text) => this.onLine(generation, text));
    process.on('lost', (count) => this.emit('loss', { reason: 'kernel-lost-events', count }));
    process.on('exit', (exit) => this.onExit(generation, exit));
    try {
      await process.start();
      await process.attached(this.options.readyTimeoutMs ?? 30_000);
    } catch (error) {
      this.live.delete(generation);
      throw error;
    }
    return generation;
  }

  private onLine(generation: Generation, text: string): void {
    const parsed = parseReadlineLine(text);
    if (!parsed.ok) return;
    if (parsed.event.kind === 'dropped-total') {
      this.onDroppedTotal(generation, parsed.event);
      return;
    }
    const line = generation.assembler.push(parsed.event);
    if (line && this.isNew(generation, line)) this.emit('line', line);
  }

  /**
   * A tally of kernel drops: what grew since this generation's previous tally is reported. During an overlap
   * both generations count the lines over their own budgets, so a drop may be reported twice then.
   */
  private onDroppedTotal(generation: Generation, event: DroppedTotalEvent): void {
    const seen = generation.dropped.get(event.mntns) ?? { lines: 0, bytes: 0 };
    const grew = event.total - seen[event.what];
    if (grew <= 0) return;
    seen[event.what] = event.total;
    generation.dropped.set(event.mntns, seen);
    this.emit('dropped', {
      mntns: event.mntns,
      lines: event.what === 'lines' ? grew : 0,
      bytes: event.what === 'bytes' ? grew : 0,
    });
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
    this.pendingLoss = this.pendingLoss
      ? { fromNs: this.pendingLoss.fromNs, detail: `${this.pendingLoss.detail}; ${detail}` }
      : { fromNs, detail };
    // One that dies soon after taking over is restarted later each time, so that it cannot spin.
    const young = fromNs - generation.fromNs < BigInt(MAX_RESTART_DELAY_MS) * 1_000_000n;
    this.youngDeaths = young ? this.youngDeaths + 1 : 0;
    const delay = Math.min(
      (this.options.restartDelayMs ?? 1000) * 2 ** Math.min(Math.max(this.youngDeaths - 1, 0), 20),
      MAX_RESTART_DELAY_MS,
    );
    // The restart converges on the targets wanted now (not those of the dead generation: one may be what
    // killed it); it queues behind target changes instead of blocking them, and the loss is reported once
    // its step is done.
    this.stepLater(delay);
  }

  private stepLater(delayMs: number): void {
    clearTimeout(this.stepTimer);
    this.stepTimer = setTimeout(() => {
      this.stepTimer = undefined;
      this.enqueueInBackground();
    }, delayMs);
  }

  /** When the running generation took over (monotonic ns), if one runs. */
  attachedSince(): bigint | undefined {
    return this.current?.fromNs;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.stepTimer);
    for (const r of this.rejections.values()) clearTimeout(r.timer);
    await this.queue;
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

/** The line of bpftrace's stderr that says it could not use this target, from its ERROR on, if one does. */
export function lineNaming(stderr: string, target: string): string | undefined {
  const forms = [`'${target}'`, `"${target}"`, `:${target}:readline`, ` ${target}:readline`];
  const line = stderr
    .split('\n')
    .reverse()
    .find((l) => l.includes('ERROR') && !l.includes('detach') && forms.some((f) => l.includes(f)));
  return line?.slice(line.indexOf('ERROR')).trim().slice(0, REASON_CHARS);
}

/** Why a bpftrace did not attach, in a line: its last ERROR that is not noise, else the error itself. */
export function reasonOf(error: Error): string {
  const errors =
    error instanceof BpftraceAttachError
      ? error.stderr.split('\n').filter((l) => l.includes('ERROR') && !l.includes('detach'))
      : [];
  const line = errors.filter((l) => !l.includes('RLIMIT_MEMLOCK')).at(-1) ?? errors.at(-1);
  if (line === undefined) return error.message.trim().slice(0, REASON_CHARS);
  return `bpftrace could not attach: ${line.slice(line.indexOf('ERROR')).trim()}`.slice(0, REASON_CHARS);
}
