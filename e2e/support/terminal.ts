/**
 * A program on a pseudo-terminal whose keyboard is the test: util-linux script(1) gives it the pty (and
 * `ctr run --tty` or `ctr tasks exec --tty` the terminal they insist on), the test writes keystrokes to
 * script's input and reads what the terminal shows from its output.
 *
 * Type only once the program is waiting for input (waitForOutput on its prompt): before ctr puts its own
 * terminal in raw mode, that terminal's line discipline still interprets what arrives (a Ctrl-D would end
 * ctr's input instead of reaching the container).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { shellQuote } from './containerd.js';

/** Ctrl-D: end of input for readline on an empty line. */
export const CTRL_D = '\x04';

export interface TerminalExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Terminal {
  private shown = '';
  private exit: TerminalExit | undefined;
  /** Settles when script (and so the program) has exited. */
  readonly closed: Promise<TerminalExit>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (data: Buffer) => (this.shown += data.toString('latin1')));
    child.stderr!.on('data', (data: Buffer) => (this.shown += data.toString('latin1')));
    child.stdin!.on('error', () => {}); // the program is gone: its keyboard goes nowhere
    this.closed = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  /** Runs argv (absolute or on PATH) on a new pseudo-terminal; its exit code becomes script's (-e). */
  static open(argv: string[], env: NodeJS.ProcessEnv = process.env): Terminal {
    const child = spawn('script', ['-qefc', argv.map(shellQuote).join(' '), '/dev/null'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new Terminal(child);
  }

  /** script's pid (the program runs under it, in a session of its own). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Everything the terminal showed so far (bytes as latin1 characters; echo, prompts, output). */
  get output(): string {
    return this.shown;
  }

  /** Keystrokes: a line is its text and '\n' (the terminal turns it into Enter); bytes go as they are. */
  type(keys: string | Uint8Array): void {
    this.child.stdin!.write(keys);
  }

  /** How many times a pattern occurs in the output so far (prompts shown, for one). */
  count(pattern: RegExp): number {
    return (
      this.shown.match(
        new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`),
      )?.length ?? 0
    );
  }

  /** Waits until the output matches (or `times` matches of the pattern), or fails with what was shown. */
  async waitForOutput(pattern: RegExp, timeoutMs = 20_000, times = 1): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count(pattern) < times) {
      if (this.exit) throw new Error(`the terminal closed before showing ${pattern}:\n${this.shown}`);
      if (Date.now() > deadline)
        throw new Error(`the terminal did not show ${pattern} in time:\n${this.shown}`);
      await sleep(20);
    }
  }

  /** Waits for the program to exit; kills script if it has not within the time. */
  async waitForExit(timeoutMs = 20_000): Promise<TerminalExit> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>(
      (resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)),
    );
    const exit = await Promise.race([this.closed, timedOut]);
    clearTimeout(timer);
    if (exit) return exit;
    this.kill();
    throw new Error(`the terminal's program did not exit in time:\n${this.shown}`);
  }

  /** SIGKILLs script (what runs in a container is the container's to clean up). Idempotent. */
  kill(): void {
    if (!this.exit) this.child.kill('SIGKILL');
  }
}
