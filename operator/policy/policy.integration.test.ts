/**
 * The policy reconciler and node plans against a real kube-apiserver: Nodes, labelled Namespaces and Pods
 * (Pending forever: there is no scheduler or kubelet, so spec.nodeName is set here), policies created as a
 * user would. The reconciler is driven directly, with caches filled by listing the API (the operator's
 * informers are wired elsewhere); what is checked is what the API server then holds.
 */
import { randomBytes } from 'node:crypto';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesObject,
  NodeV1Api,
  type V1Namespace,
  type V1Pod,
} from '@kubernetes/client-node';
import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import { GROUP, POLICY_KIND, POLICY_PLURAL, VERSION, API_VERSION } from '../../api/v1alpha1/index.js';
import { createAuditPolicy, installCrds, kubectlOk, testKubeConfig } from '../../e2e/support/cluster.js';
import { ReportLedger } from '../ledger.js';
import { KubeEventSink } from '../../common/kube/event-sink.js';
import { EVENT_NAMESPACE, INVALID_POLICY_REASON, policyEvents } from './events.js';
import { PlanStore } from './plan-store.js';
import { PolicyReconciler, recomputePlans } from './reconciler.js';
import { kubeStatusWriter, type StatusWriter } from './status-writer.js';
import type { WorldSources } from './world.js';

const run = randomBytes(3).toString('hex');
const RUN_LABEL = 'containeraudit.io/test-run';
const prod = `policy-${run}-prod`;
const dev = `policy-${run}-dev`;
const node1 = `policy-${run}-node-1`;
const node2 = `policy-${run}-node-2`;
const RUNTIME_CLASS = 'container-auditor';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const nodeApi = kc.makeApiClient(NodeV1Api);

/** Caches filled by listing the API: what informers would hold, at the moment of `refresh`. */
class ListedSources implements WorldSources {
  private policyList: KubernetesObject[] = [];
  private podList: V1Pod[] = [];
  private namespaceList: V1Namespace[] = [];

  readonly policies = {
    list: () => this.policyList,
    get: (name: string) => this.policyList.find((p) => p.metadata?.name === name),
  };
  readonly pods = { list: () => this.podList };
  readonly namespaces = { list: () => this.namespaceList };

  async refresh(): Promise<void> {
    // Only this run's policies: the examples other tests install select everything and are older.
    const policies = (await custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: POLICY_PLURAL,
      labelSelector: `${RUN_LABEL}=${run}`,
    })) as { items: KubernetesObject[] };
    this.policyList = policies.items;
    this.podList = (await core.listPodForAllNamespaces()).items;
    this.namespaceList = (await core.listNamespace()).items;
  }
}

/** Counts the writes that reach the API server. */
class CountingWriter implements StatusWriter {
  writes = 0;
  constructor(private readonly inner: StatusWriter) {}
  apply(...args: Parameters<StatusWriter['apply']>) {
    this.writes++;
    return this.inner.apply(...args);
  }
}

const sources = new ListedSources();
const ledger = new ReportLedger();
const writer = new CountingWriter(kubeStatusWriter(custom));
const reconciler = new PolicyReconciler({
  sources,
  ledger,
  status: writer,
  events: policyEvents(new KubeEventSink(kc)),
  runtimeClass: RUNTIME_CLASS,
  // Agents report through the ledger here; a node without a report counts at once.
  reportGraceMs: 0,
});

async function reconcile(name: string) {
  await sources.refresh();
  return reconciler.reconcile(name);
}

async function createPolicy(name: string, spec: Record<string, unknown>): Promise<void> {
  await createAuditPolicy(custom, name, spec, { [RUN_LABEL]: run });
}

async function getPolicy(name: string) {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    name,
  })) as {
    metadata: { generation: number; resourceVersion: string; uid: string };
    status?: ContainerAuditPolicyStatus;
  };
}

async function mergePatchPolicy(name: string, patch: object): Promise<void> {
  await kubectlOk(['patch', POLICY_PLURAL, name, '--type=merge', '-p', JSON.stringify(patch)]);
}

function condition(status: ContainerAuditPolicyStatus | undefined, type: string) {
  return status?.conditions?.find((c) => c.type === type);
}

async function createPod(
  namespace: string,
  name: string,
  options: { labels?: Record<string, string>; node?: string; runtimeClass?: string; containers?: string[] },
): Promise<void> {
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name, labels: options.labels ?? {} },
      spec: {
        nodeName: options.node,
        runtimeClassName: options.runtimeClass,
        containers: (options.containers ?? ['app']).map((c) => ({
          name: c,
          image: 'example.invalid/shell:1',
        })),
      },
    },
  });
}

async function createIfAbsent(create: () => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (error) {
    if (!(error instanceof ApiException && error.code === 409)) throw error;
  }
}

beforeAll(async () => {
  await installCrds();
  await createIfAbsent(() =>
    nodeApi.createRuntimeClass({ body: { metadata: { name: RUNTIME_CLASS }, handler: RUNTIME_CLASS } }),
  );
  for (const name of [node1, node2]) await core.createNode({ body: { metadata: { name } } });
  await core.createNamespace({ body: { metadata: { name: prod, labels: { environment: `prod-${run}` } } } });
  await core.createNamespace({ body: { metadata: { name: dev, labels: { environment: `dev-${run}` } } } });
  await createPod(prod, 'web-1', {
    labels: { app: 'web' },
    node: node1,
    runtimeClass: RUNTIME_CLASS,
    containers: ['app', 'sidecar'],
  });
  await createPod(prod, 'web-2', { labels: { app: 'web' }, node: node2 });
  await createPod(prod, 'db', { labels: { app: 'db' }, node: node1, runtimeClass: RUNTIME_CLASS });
  await createPod(dev, 'web-dev', { labels: { app: 'web' }, node: node1, runtimeClass: RUNTIME_CLASS });
});

const webSelector = {
  namespaceSelector: { matchLabels: { environment: `prod-${run}` } },
  podSelector: { matchLabels: { app: 'web' } },
};

describe('policy status', () => {
  const name = `web-${run}`;

  beforeAll(async () => {
    await createPolicy(name, { selector: webSelector });
  });

  it('tells matched pods, audited containers, unauditable pods, Ready and Degraded', async () => {
    await expect(reconcile(name)).resolves.toBeUndefined();
    const { metadata, status } = await getPolicy(name);
    expect(status).toMatchObject({
      observedGeneration: metadata.generation,
      matchedPods: 2,
      auditedContainers: 2,
      unauditablePods: 1,
      commandsRecorded: 0,
      nodes: [{ name: node1 }],
    });
    expect(condition(status, 'Ready')).toMatchObject({ status: 'True', reason: 'Audited' });
    expect(condition(status, 'Invalid')).toMatchObject({ status: 'False' });
    expect(condition(status, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'UnauditablePods',
      message: expect.stringContaining(`${prod}/web-2`) as string,
    });
    expect(condition(status, 'Degraded')!.message).toContain(`no report from the agent on node ${node1}`);
  });

  it('writes nothing when nothing changed', async () => {
    const before = await getPolicy(name);
    const writes = writer.writes;
    await reconcile(name);
    await reconcile(name);
    expect(writer.writes).toBe(writes);
    expect((await getPolicy(name)).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
  });

  it('folds in what the agents reported: node state and commands', async () => {
    const degradedSince = condition((await getPolicy(name)).status, 'Degraded')!.lastTransitionTime;
    ledger.recordAgentState(
      node1,
      { planVersion: 'abc', auditedContainers: 2, probesAttached: 1, errors: [], queueDropped: 0 },
      new Date('2026-03-01T12:00:00Z'),
      [name],
    );
    ledger.recordCommands(name, 7, new Date('2026-03-01T12:00:05Z'));
    await reconcile(name);
    ledger.recordCommands(name, 2, new Date('2026-03-01T12:00:09Z'));
    await reconcile(name);
    const { status } = await getPolicy(name);
    expect(status).toMatchObject({
      commandsRecorded: 9,
      lastCommandTime: '2026-03-01T12:00:09Z',
      nodes: [
        {
          name: node1,
          planVersion: 'abc',
          auditedContainers: 2,
          probesAttached: 1,
          lastReportTime: '2026-03-01T12:00:00Z',
        },
      ],
    });
    // Still degraded (web-2), now only for that reason: the transition time holds.
    expect(condition(status, 'Degraded')).toMatchObject({
      status: 'True',
      lastTransitionTime: degradedSince,
    });
    expect(condition(status, 'Degraded')!.message).not.toContain('no report');
  });

  it('refuses a write computed from an older version and keeps the counts for the retry', async () => {
    const stale = await getPolicy(name);
    await mergePatchPolicy(name, { metadata: { labels: { touched: 'yes' } } });
    // Straight to the server with the old version: apply with a resourceVersion is a precondition.
    await expect(
      kubeStatusWriter(custom).apply(name, stale.metadata.resourceVersion, { commandsRecorded: 0 }),
    ).rejects.toMatchObject({ code: 409 });
    ledger.recordCommands(name, 1, new Date('2026-03-01T12:01:00Z'));
    const failing = new PolicyReconciler({
      sources: {
        ...sources,
        policies: {
          list: () => sources.policies.list(),
          get: (n) => ({
            ...sources.policies.get(n)!,
            metadata: { ...sources.policies.get(n)!.metadata, ...stale.metadata },
          }),
        },
      },
      ledger,
      status: kubeStatusWriter(custom),
      events: policyEvents(new KubeEventSink(kc)),
      runtimeClass: RUNTIME_CLASS,
    });
    await sources.refresh();
    await expect(failing.reconcile(name)).rejects.toMatchObject({ kind: 'conflict', code: 409 });
    await reconcile(name);
    expect((await getPolicy(name)).status?.commandsRecorded).toBe(10);
  });

  it('shows an unscheduled pod as matched but not audited', async () => {
    await createPod(prod, 'web-pending', { labels: { app: 'web' }, runtimeClass: RUNTIME_CLASS });
    await reconcile(name);
    const { status } = await getPolicy(name);
    expect(status).toMatchObject({ matchedPods: 3, auditedContainers: 2 });
    expect(condition(status, 'Ready')!.message).toContain('1 selected pod not on a node yet');
  });
});

describe('an invalid policy', () => {
  const name = `backreference-${run}`;

  async function invalidEvents() {
    const events = await core.listNamespacedEvent({
      namespace: EVENT_NAMESPACE,
      fieldSelector: `involvedObject.name=${name},reason=${INVALID_POLICY_REASON}`,
    });
    return events.items;
  }

  it('is accepted by the API server, then marked Invalid naming the field, with one Warning Event', async () => {
    await createPolicy(name, { selector: webSelector, redact: { patterns: ['(a)\\1'] } });
    await reconcile(name);
    const { metadata, status } = await getPolicy(name);
    expect(condition(status, 'Invalid')).toMatchObject({
      status: 'True',
      reason: 'InvalidSpec',
      observedGeneration: metadata.generation,
      message: expect.stringMatching(/^spec\.redact\.patterns\[0\]: /) as string,
    });
    expect(condition(status, 'Ready')).toMatchObject({ status: 'False', reason: 'Invalid' });
    expect(status?.auditedContainers).toBe(0);
    const events = await invalidEvents();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: 'Warning',
      reason: INVALID_POLICY_REASON,
      involvedObject: { kind: POLICY_KIND, name, uid: metadata.uid, apiVersion: API_VERSION },
      message: expect.stringContaining('spec.redact.patterns[0]') as string,
    });
    // Told once: reconciling again, or a second operator process, adds no Event.
    await reconcile(name);
    const second = new PolicyReconciler({
      sources,
      ledger,
      status: kubeStatusWriter(custom),
      events: policyEvents(new KubeEventSink(kc)),
    });
    await second.reconcile(name);
    expect(await invalidEvents()).toHaveLength(1);
  });

  it('shows the Event in kubectl describe', async () => {
    const text = await kubectlOk(['describe', 'auditpolicy', name]);
    expect(text).toMatch(/Warning\s+InvalidPolicy/);
  });

  it('is Ready once mended', async () => {
    await mergePatchPolicy(name, { spec: { redact: { patterns: ['(a)\\(1\\)'] } } });
    await reconcile(name);
    const { metadata, status } = await getPolicy(name);
    expect(status?.observedGeneration).toBe(metadata.generation);
    expect(condition(status, 'Invalid')).toMatchObject({ status: 'False', reason: 'Valid' });
    expect(condition(status, 'Ready')).toMatchObject({ status: 'True' });
  });
});

describe('node plans', () => {
  const store = new PlanStore();
  const name = `plans-${run}`;
  const younger = `plans-younger-${run}`;

  async function recompute(): Promise<string[]> {
    await sources.refresh();
    return recomputePlans(sources, store, { runtimeClass: RUNTIME_CLASS });
  }

  beforeAll(async () => {
    // Alone among this run's policies, so the figures are this policy's only.
    for (const p of sources.policies.list().map((o) => o.metadata!.name!))
      await custom.deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: POLICY_PLURAL,
        name: p,
      });
    await createPolicy(name, {
      selector: { ...webSelector, containers: ['app'] },
      alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
    });
  });

  it('plans the audited containers on their node and nothing elsewhere', async () => {
    await recompute();
    const plan = store.get(node1)!;
    expect(plan.containers).toEqual([
      {
        podNamespace: prod,
        podName: 'web-1',
        podUid: expect.any(String) as string,
        containerName: 'app',
        policy: name,
      },
    ]);
    expect(plan.policies[name]!.alerts).toEqual([
      { name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' },
    ]);
    expect(store.get(node2)!.containers).toEqual([]);
  });

  it('answers a long poll when a pod is added, and changes no other node', async () => {
    const before = store.get(node1)!.version;
    const node2Version = store.get(node2)!.version;
    const poll = store.wait(node1, before, 30_000);
    await createPod(prod, 'web-3', { labels: { app: 'web' }, node: node1, runtimeClass: RUNTIME_CLASS });
    expect(await recompute()).toEqual([node1]);
    const plan = await poll;
    expect(plan!.version).not.toBe(before);
    expect(plan!.containers.map((c) => c.podName)).toEqual(['web-1', 'web-3']);
    expect(store.get(node2)!.version).toBe(node2Version);
  });

  it('changes the version when the policy changes, not when nothing did', async () => {
    const before = store.get(node1)!.version;
    expect(await recompute()).toEqual([]);
    await mergePatchPolicy(name, { spec: { capture: { execs: true } } });
    expect(await recompute()).toEqual([node1]);
    expect(store.get(node1)!.version).not.toBe(before);
    expect(store.get(node1)!.policies[name]!.capture.execs).toBe(true);
  });

  it('hands containers to a younger policy while the older is suspended, and empties plans when none is left', async () => {
    // Creation times have whole seconds: make sure the younger one is younger.
    await new Promise((r) => setTimeout(r, 1100));
    await createPolicy(younger, { selector: webSelector });
    await recompute();
    expect(store.get(node1)!.containers.map((c) => [c.podName, c.containerName, c.policy])).toEqual([
      ['web-1', 'app', name],
      ['web-1', 'sidecar', younger],
      ['web-3', 'app', name],
    ]);
    await reconcile(younger);
    expect(condition((await getPolicy(younger)).status, 'Ready')!.message).toContain(
      `2 selected containers audited by older policy ${name}`,
    );

    await mergePatchPolicy(name, { spec: { suspend: true } });
    await recompute();
    expect(store.get(node1)!.containers.every((c) => c.policy === younger)).toBe(true);
    await reconcile(name);
    const { status } = await getPolicy(name);
    expect(condition(status, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
    expect(status).toMatchObject({ auditedContainers: 0 });
    expect(status?.nodes).toBeUndefined();

    const version = store.get(node1)!.version;
    const poll = store.wait(node1, version, 30_000);
    await mergePatchPolicy(younger, { spec: { suspend: true } });
    await recompute();
    const emptied = await poll;
    expect(emptied).toMatchObject({ node: node1, containers: [], policies: {} });
    expect(emptied!.version).not.toBe(version);
  });

  it('lets a deleted policy go', async () => {
    await custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: POLICY_PLURAL,
      name: younger,
    });
    await expect(reconcile(younger)).resolves.toBeUndefined();
  });
});
