/**
 * Keeps one bpftrace running the exec script (agent/capture/exec) and turns its output into `exec` events.
 * What it probes never changes while it runs (every exec outside the host's mount namespace; the argv bound
 * and the host's namespace are fixed at construction), so unlike ReadlineCapture there is no hand-over between
 * two bpftrace processes: one runs, and when it dies on its own a new one is started after a delay and the
 * gap is reported as a loss. Kernel-side losses ("Lost N events") and execs whose lines did not all arrive
 * are reported as losses too.
 *
 * Its `R` line is enough to know execs are seen: measured here, an exec started 0.1 ms after `R` arrived was
 * captured (10 of 10), unlike readline's uprobes (agent/capture/exec/README.md).
 */
import { EventEmitter } from 'node:events';
import { type BpftraceExit, BpftraceProcess } from '../bpftrace-process.js';
import { type CapturedExec, ExecAssembler } from './parse.js';
import { renderExecScript, tracefsWrapperPath } from './script.js';

export interface ExecCaptureLoss {
  reason: 'bpftrace-exited' | 'kernel-lost-events' | 'incomplete-exec';
  /** Events (kernel) or execs lost, when known. */
  count?: number;
  /** Monotonic ns of the window in which nothing was captured, when known. */
  fromNs?: bigint;
  toNs?: bigint;
  detail?: string;
}

export interface ExecCaptureEvents {
  exec: [exec: CapturedExec];
  loss: [loss: ExecCaptureLoss];
  /** A bpftrace is attached (at start, and after each restart). */
  attached: [];
  /** A restart failed; it is retried after restartDelayMs (emitted only when someone listens). */
  error: [error: Error];
}

export interface ExecCaptureOptions {
  /** Inode of the host's mount namespace (mountNamespaceOf(1) with hostPID): execs there are not captured. */
  hostMntns: number;
  /** argv bytes kept per exec, NULs included; longer argv is cut and marked truncated. 1 to 65536. */
  maxArgvBytes: number;
  /**
   * The program run with the script's path. Default: agent/capture/exec/bpftrace-tracefs.sh, which runs
   * $BPFTRACE (or bpftrace) where tracefs is mounted, as bpftrace 0.17 needs it for tracepoints.
   */
  bpftrace?: string;
  /** Delay before restarting a bpftrace that died on its own, and between failed restarts. */
  restartDelayMs?: number;
  /** How long a new bpftrace may take to attach. */
  readyTimeoutMs?: number;
  now?: () => bigint;
}

interface Run {
  process: BpftraceProcess;
  assembler: ExecAssembler;
  /** Drops of this run's assembler already reported as losses. */
  reportedDrops: number;
}

/** A gap in capture: bpftrace died, the next one is not attached yet. */
interface Gap {
  fromNs: bigint;
  detail: string;
}

export class ExecCapture extends EventEmitter<ExecCaptureEvents> {
  private readonly script: string;
  private readonly now: () => bigint;
  private run: Run | undefined;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  private gap: Gap | undefined;
  /** Start and restarts, one at a time; stop() waits for the one under way. */
  private launching: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private totals = { execs: 0, truncated: 0, dropped: 0, restarts: 0 };

  /** Renders the script now: bad options throw here, not later in bpftrace. */
  constructor(private readonly options: ExecCaptureOptions) {
    super();
    this.script = renderExecScript(options);
    this.now = options.now ?? (() => process.hrtime.bigint());
  }

  /** Starts bpftrace and resolves once it is attached; rejects if it cannot attach (start may then be called again). */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`exec capture cannot start: it is ${this.state}`);
    this.state = 'running';
    const launch = this.launch();
    this.launching = launch.catch(() => undefined);
    try {
      await launch;
    } catch (error) {
      this.state = 'idle';
      throw error;
    }
  }

  private async launch(): Promise<void> {
    const bpftrace = new BpftraceProcess(this.script, this.options.bpftrace ?? tracefsWrapperPath());
    const run: Run = { process: bpftrace, assembler: new ExecAssembler(), reportedDrops: 0 };
    let exited = false;
    bpftrace.on('line', (line) => this.onLine(run, line));
    bpftrace.on('lost', (count) => this.emit('loss', { reason: 'kernel-lost-events', count }));
    bpftrace.on('exit', (exit) => {
      exited = true;
      this.onExit(run, exit);
    });
    await bpftrace.start();
    await bpftrace.attached(this.options.readyTimeoutMs ?? 30_000);
    if (exited) {
      await bpftrace.stop();
      throw new Error('bpftrace exited right after attaching');
    }
    this.run = run;
    this.emit('attached');
  }

  private onLine(run: Run, line: string): void {
    const exec = run.assembler.pushLine(line);
    if (exec) this.emit('exec', exec);
    this.reportDrops(run);
  }

  /** Execs the assembler gave up on (a line lost or garbled) since the last report. */
  private reportDrops(run: Run): void {
    const dropped = run.assembler.stats.dropped - run.reportedDrops;
    if (dropped <= 0) return;
    run.reportedDrops += dropped;
    this.emit('loss', { reason: 'incomplete-exec', count: dropped });
  }

  /** Execs waiting for lines that will not come now that this run is over. */
  private retire(run: Run): void {
    run.assembler.flush();
    this.reportDrops(run);
    const s = run.assembler.stats;
    this.totals.execs += s.execs;
    this.totals.truncated += s.truncated;
    this.totals.dropped += s.dropped;
  }

  private onExit(run: Run, exit: BpftraceExit): void {
    if (run !== this.run) return; // one that never attached: its launch reports it
    this.run = undefined;
    this.retire(run);
    if (exit.requested || this.state !== 'running') return;
    // bpftrace died on its own: nothing is captured until the next one is attached.
    const detail = `bpftrace exited (code ${exit.code}, signal ${exit.signal}): ${exit.stderr.trim().slice(-500)}`;
    this.gap = { fromNs: this.now(), detail };
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.launching = this.restart();
    }, this.options.restartDelayMs ?? 1000);
  }

  private async restart(): Promise<void> {
    if (this.state !== 'running') return;
    try {
      await this.launch();
    } catch (error) {
      if (this.listenerCount('error') > 0) this.emit('error', error as Error);
      if (this.state === 'running') this.scheduleRestart();
      return;
    }
    this.totals.restarts++;
    this.closeGap();
  }

  /** Reports the gap, if any, as ending now. */
  private closeGap(): void {
    const gap = this.gap;
    if (!gap) return;
    this.gap = undefined;
    this.emit('loss', {
      reason: 'bpftrace-exited',
      fromNs: gap.fromNs,
      toNs: this.now(),
      detail: gap.detail,
    });
  }

  /** Stops bpftrace (it detaches and flushes what it holds); a gap still open is reported as ending now. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    clearTimeout(this.restartTimer);
    await this.launching;
    const run = this.run;
    if (run) await run.process.stop(); // its exit retires it
    this.closeGap();
  }

  /** Whether a bpftrace is attached now. */
  get attached(): boolean {
    return this.run !== undefined;
  }

  /** Counts over every bpftrace this capture ran, the running one included. */
  get stats(): { execs: number; truncated: number; dropped: number; restarts: number } {
    const s = this.run?.assembler.stats;
    return {
      execs: this.totals.execs + (s?.execs ?? 0),
      truncated: this.totals.truncated + (s?.truncated ?? 0),
      dropped: this.totals.dropped + (s?.dropped ?? 0),
      restarts: this.totals.restarts,
    };
  }

  /** The running bpftrace's pid (tests kill it to prove capture resumes). */
  bpftracePid(): number | undefined {
    return this.run?.process.pid;
  }
}
