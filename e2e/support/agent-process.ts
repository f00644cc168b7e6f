/**
 * The standalone agent as a user runs it (`container-auditor agent --standalone ...`, from bin/, so `make
 * build` must have run), with its records read from stdout as they come.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentRecord } from '../../api/records/v1.js';
import { AgentRecord as AgentRecordSchema } from '../../api/records/v1.js';
import { REPO_ROOT } from './paths.js';

export const AGENT_BIN = join(REPO_ROOT, 'bin', 'container-auditor.js');

export interface AgentProcessOptions {
  policy: string;
  spool: string;
  state: string;
  node?: string;
  extraArgs?: string[];
}

export class AgentProcess {
  readonly records: AgentRecord[] = [];
  /** Lines on stdout that are not valid records: a test fails on any. */
  readonly invalid: string[] = [];
  stderr = '';
  private exit: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    let rest = '';
    child.stdout!.setEncoding('utf8').on('data', (data: string) => {
      const lines = (rest + data).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        const parsed = AgentRecordSchema.safeParse(JSON.parse(line));
        if (parsed.success) this.records.push(parsed.data);
        else this.invalid.push(line);
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
      AGENT_BIN,
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
    const agent = new AgentProcess(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    await agent.waitFor('the agent to start', () => agent.stderr.includes('"Agent started"'), 30_000);
    return agent;
  }

  get pid(): number {
    return this.child.pid!;
  }

  async waitFor(what: string, test: () => boolean, timeoutMs = 30_000): Promise<void> {
    for (let waited = 0; !test(); waited += 50) {
      if (waited > timeoutMs || this.child.exitCode !== null)
        throw new Error(`timed out waiting for ${what}; agent stderr:\n${this.stderr.slice(-4000)}`);
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

  /** SIGTERM, and the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exit;
  }
}
