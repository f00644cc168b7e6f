/**
 * The standalone agent as a user runs it (`container-auditor agent --standalone ...`, through
 * cli/container-auditor.js, so `make build` must have run), with its records read from stdout as they come,
 * each stamped with when it came. Tests use it, and so does bench/agent-capture.ts (compiled into dist/:
 * REPO_ROOT finds cli/ from there too).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentRecord } from '../../api/records/v1.js';
import { AgentRecord as AgentRecordSchema } from '../../api/records/v1.js';
import { NODE_FLAGS } from '../../cli/node-flags.js';
import { REPO_ROOT } from './paths.js';

export const AGENT_BIN = join(REPO_ROOT, 'cli', 'container-auditor.js');

export interface AgentProcessOptions {
  policy: string;
  spool: string;
  state: string;
  node?: string;
  extraArgs?: string[];
  /**
   * How to run `container-auditor <args>`: by default this process's node with the images' NODE_FLAGS on
   * cli/container-auditor.js (benches run it on other Node.js runtimes too).
   */
  launch?: (args: string[]) => { command: string; args: string[] };
  /**
   * Called with every record as it is read, and when (as records' arrivals): to follow a long run as it goes
   * rather than search `records` again and again.
   */
  onRecord?: (record: AgentRecord, arrivalMs: number) => void;
}

/** An error about the agent process; its message ends with the tail of the agent's stderr. */
export class AgentProcessError extends Error {}

export class AgentProcess {
  readonly records: AgentRecord[] = [];
  /**
   * When each of `records` was read from the agent's stdout (the same index): wall-clock milliseconds, with a
   * fraction (performance.timeOrigin + performance.now()), taken as the chunk holding the line arrived.
   */
  readonly arrivals: number[] = [];
  /** Lines on stdout that are not valid records: a test fails on any. */
  readonly invalid: string[] = [];
  stderr = '';
  private readonly exit: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    onRecord?: (record: AgentRecord, arrivalMs: number) => void,
  ) {
    let rest = '';
    child.stdout!.setEncoding('utf8').on('data', (data: string) => {
      const arrivalMs = performance.timeOrigin + performance.now();
      const lines = (rest + data).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        const parsed = AgentRecordSchema.safeParse(parseJson(line));
        if (!parsed.success) {
          this.invalid.push(line);
          continue;
        }
        this.records.push(parsed.data);
        this.arrivals.push(arrivalMs);
        onRecord?.(parsed.data, arrivalMs);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (data: string) => {
      this.stderr = (this.stderr + data).slice(-64 * 1024);
    });
    this.exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  }

  /** Starts the agent and waits for its "Agent started" log line. */
  static async start(options: AgentProcessOptions): Promise<AgentProcess> {
    const args = [
      'agent',
      '--standalone',
      '--policy',
      options.policy,
      '--handoff-dir',
      options.spool,
      '--state-dir',
      options.state,
      '--output',
      '-',
      '--node',
      options.node ?? 'test-node',
      ...(options.extraArgs ?? []),
    ];
    const launch = options.launch?.(args) ?? {
      command: process.execPath,
      args: [...NODE_FLAGS, AGENT_BIN, ...args],
    };
    const child = spawn(launch.command, launch.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const agent = new AgentProcess(child, options.onRecord);
    await agent.waitFor('the agent to start', () => agent.stderr.includes('"Agent started"'), 30_000);
    return agent;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Waits until `test` holds; throws after the timeout, or when the agent exits first. */
  async waitFor(what: string, test: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (this.exited) throw this.error(`the agent exited while waiting for ${what}`);
      if (Date.now() > deadline) throw this.error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  }

  /** Waits for the records matching `test` to be at least `count`. */
  async recordsWhere<K extends AgentRecord['kind']>(
    kind: K,
    test: (r: Extract<AgentRecord, { kind: K }>) => boolean,
    count = 1,
    timeoutMs = 30_000,
  ): Promise<Extract<AgentRecord, { kind: K }>[]> {
    const found = () =>
      this.records.filter((r): r is Extract<AgentRecord, { kind: K }> => r.kind === kind && test(r as never));
    const recent = () =>
      this.records
        .filter((r) => r.kind === kind)
        .slice(-8)
        .map((r) => JSON.stringify(r))
        .join('\n');
    await this.waitFor(`${count} ${kind} record(s)`, () => found().length >= count, timeoutMs).catch(
      (error: Error) => {
        throw new Error(`${error.message}\nthe last ${kind} records:\n${recent()}`);
      },
    );
    return found();
  }

  /** SIGTERM (SIGKILL if it is still there after `graceMs`), and the exit code. */
  async stop(graceMs = 15_000): Promise<number | null> {
    if (this.exited) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exit;
    clearTimeout(timer);
    return code;
  }

  private error(message: string): AgentProcessError {
    return new AgentProcessError(`${message}; agent stderr:\n${this.stderr.slice(-4000)}`);
  }
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}
