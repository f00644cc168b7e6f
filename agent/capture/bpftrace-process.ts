/**
 * One bpftrace process running one rendered script: started from a file, its stdout read as lines, its
 * readiness taken from the script's `R` line (printed only once every probe is attached), its stderr kept
 * (bounded) for the reason when it dies, and "Lost N events" counted wherever bpftrace reports it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STDERR_KEEP = 8192;
const LOST = /Lost (\d+) events/;

export interface BpftraceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The end of what bpftrace wrote to stderr: why it stopped, when it did so on its own. */
  stderr: string;
  /** Whether stop() asked for it. */
  requested: boolean;
}

/**
 * Why a bpftrace did not attach its script: it exited first, took too long, or could not be run at all. The
 * stderr it wrote is kept, as it often names the probe it could not attach.
 */
export class BpftraceAttachError extends Error {
  constructor(
    message: string,
    /** What bpftrace wrote to stderr until then (the end of it). */
    readonly stderr: string,
    /** bpftrace itself could not be started (missing, not executable): no script would have attached. */
    readonly cannotRun = false,
  ) {
    super(message);
    this.name = 'BpftraceAttachError';
  }
}

export interface BpftraceProcessEvents {
  line: [line: string];
  lost: [count: number];
  exit: [exit: BpftraceExit];
}

export class BpftraceProcess extends EventEmitter<BpftraceProcessEvents> {
  private child: ChildProcess | undefined;
  private dir: string | undefined;
  private stderr = '';
  private stopping = false;
  private spawnFailed = false;
  private finished = false;
  private readonly exited: Promise<BpftraceExit>;
  private resolveExit!: (exit: BpftraceExit) => void;
  /** Resolves when the script printed its ready line; rejects if bpftrace exits first. */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;

  constructor(
    private readonly script: string,
    private readonly bpftrace = 'bpftrace',
  ) {
    super();
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'container-auditor-bpftrace-'));
    const file = join(this.dir, 'script.bt');
    await writeFile(file, this.script, { mode: 0o600 });
    const child = spawn(this.bpftrace, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let rest = '';
    child.stdout.setEncoding('latin1').on('data', (data: string) => {
      const lines = (rest + data).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) this.onLine(line);
    });
    child.stderr.setEncoding('latin1').on('data', (data: string) => {
      this.stderr = (this.stderr + data).slice(-STDERR_KEEP);
      for (const line of data.split('\n')) {
        const lost = LOST.exec(line);
        if (lost) this.emit('lost', Number(lost[1]));
      }
    });
    child.on('error', (error) => {
      this.spawnFailed = child.pid === undefined;
      this.finish({ code: null, signal: null, stderr: String(error), requested: false });
    });
    child.on('close', (code, signal) =>
      this.finish({ code, signal, stderr: this.stderr, requested: this.stopping }),
    );
  }

  /**
   * Resolves once the script is attached; rejects (and stops bpftrace) if it exits first or takes longer than
   * timeoutMs: a bpftrace that neither attaches nor exits (seen with a script it could not use) must not hang
   * its supervisor.
   */
  async attached(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BpftraceAttachError(`bpftrace did not attach within ${timeoutMs} ms`, this.stderr)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.ready, timedOut]);
    } catch (error) {
      await this.stop();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private onLine(line: string): void {
    if (line === 'R') this.resolveReady();
    const lost = LOST.exec(line);
    if (lost) this.emit('lost', Number(lost[1]));
    this.emit('line', line);
  }

  private finish(exit: BpftraceExit): void {
    // A child that could not be spawned reports 'error' and then 'close': one exit.
    if (this.finished) return;
    this.finished = true;
    this.rejectReady(
      new BpftraceAttachError(
        `bpftrace exited before its probes were attached: ${exit.stderr.trim()}`,
        exit.stderr,
        this.spawnFailed,
      ),
    );
    this.resolveExit(exit);
    if (this.dir) void rm(this.dir, { recursive: true, force: true });
    this.emit('exit', exit);
  }

  /** SIGINT (bpftrace detaches and flushes), then SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<BpftraceExit> {
    this.stopping = true;
    const child = this.child;
    if (!child) this.finish({ code: null, signal: null, stderr: '', requested: true });
    else if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const exit = await this.exited;
      clearTimeout(timer);
      return exit;
    }
    return this.exited;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }
}
