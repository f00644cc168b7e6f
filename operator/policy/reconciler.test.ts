import { ApiException, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import type { RawObject, Wire } from '../../common/kube/objects.js';
import type { PlanSource } from '../ingest/plan-source.js';
import type { Informer } from '../runtime/informer.js';
import type { WorkHandler } from '../runtime/workqueue.js';
import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import { ReportLedger } from '../ledger.js';
import type { PolicyEvents, PolicyRef } from './events.js';
import { PlanStore } from './plan-store.js';
import { PolicyReconciler, policyKeys, recomputePlans, type ReconcilerOptions } from './reconciler.js';
import type { StatusWriter, StoredStatus } from './status-writer.js';
import type { WorldSources } from './world.js';
import { FakeSources, namespaceObject, pod, podObject, policyObject } from './testdata/fixtures.js';

/** Stores what it is given, like the status subresource, with a fresh resourceVersion per write. */
class FakeWriter implements StatusWriter {
  writes: { name: string; resourceVersion: string | undefined; status: ContainerAuditPolicyStatus }[] = [];
  fail: Error | undefined;
  private version = 100;

  apply(
    name: string,
    resourceVersion: string | undefined,
    status: ContainerAuditPolicyStatus,
  ): Promise<StoredStatus> {
    if (this.fail !== undefined) return Promise.reject(this.fail);
    this.writes.push({ name, resourceVersion, status });
    return Promise.resolve({ resourceVersion: String(++this.version), status: structuredClone(status) });
  }

  get last(): ContainerAuditPolicyStatus {
    return this.writes.at(-1)!.status;
  }
}

class FakeEvents implements PolicyEvents {
  told: { policy: PolicyRef; message: string }[] = [];
  fail = false;

  invalidPolicy(policy: PolicyRef, message: string): Promise<void> {
    if (this.fail) return Promise.reject(new ApiException(500, 'boom', '{"reason":"InternalError"}', {}));
    this.told.push({ policy, message });
    return Promise.resolve();
  }
}

const apiError = (code: number, reason: string) =>
  new ApiException(
    code,
    `HTTP-Code: ${code} Headers: {"authorization":"secret"}`,
    JSON.stringify({ reason, message: reason }),
    {
      authorization: 'secret',
    },
  );

function condition(status: ContainerAuditPolicyStatus, type: string) {
  return status.conditions?.find((c) => c.type === type);
}

function setup(options: Partial<ReconcilerOptions> = {}) {
  let t = Date.parse('2026-03-01T12:00:00Z');
  const clock = { now: () => t, date: () => new Date(t), advance: (ms: number) => (t += ms) };
  const sources = new FakeSources();
  sources.namespaceObjects = [namespaceObject('prod', { env: 'production' })];
  sources.podObjects = [podObject(pod('prod/web', { containers: ['app', 'sidecar'] }))];
  sources.setPolicy(policyObject('p'));
  const ledger = new ReportLedger();
  const writer = new FakeWriter();
  const events = new FakeEvents();
  const reconciler = new PolicyReconciler({
    sources,
    ledger,
    status: writer,
    events,
    clock,
    reportGraceMs: 60_000,
    lossWindowMs: 600_000,
    ...options,
  });
  const agentReports = (node = 'node-a', errors: string[] = []) =>
    ledger.recordAgentState(
      node,
      { planVersion: 'v', auditedContainers: 2, probesAttached: 1, errors, queueDropped: 0 },
      clock.date(),
      ['p'],
    );
  /** What the informer would show after our write: the written status at the written version. */
  const cacheCatchesUp = (name = 'p') => {
    const last = writer.writes.filter((w) => w.name === name).at(-1)!;
    const object = sources.policies.get(name)!;
    sources.setPolicy({
      ...object,
      metadata: { ...object.metadata, resourceVersion: String(100 + writer.writes.indexOf(last) + 1) },
      status: last.status,
    } as typeof object);
  };
  return { clock, sources, ledger, writer, events, reconciler, agentReports, cacheCatchesUp };
}

describe('PolicyReconciler', () => {
  it('writes the status, then nothing while the world stays the same', async () => {
    const { reconciler, writer, agentReports, cacheCatchesUp } = setup();
    agentReports();
    await expect(reconciler.reconcile('p')).resolves.toBeUndefined();
    expect(writer.writes).toHaveLength(1);
    expect(writer.writes[0]!.resourceVersion).toBe('1');
    expect(writer.last).toMatchObject({
      observedGeneration: 1,
      matchedPods: 1,
      auditedContainers: 2,
      unauditablePods: 0,
      commandsRecorded: 0,
      nodes: [{ name: 'node-a', planVersion: 'v', probesAttached: 1, auditedContainers: 2 }],
    });
    expect(condition(writer.last, 'Ready')).toMatchObject({ status: 'True', reason: 'Audited' });
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'False' });
    await reconciler.reconcile('p');
    cacheCatchesUp();
    await reconciler.reconcile('p');
    expect(writer.writes).toHaveLength(1);
  });

  it('adds what the ledger gathered to the figure it wrote last, even before the cache shows that write', async () => {
    const { reconciler, writer, ledger, cacheCatchesUp } = setup();
    ledger.recordCommands('p', 3, new Date('2026-03-01T11:00:00Z'));
    await reconciler.reconcile('p');
    expect(writer.last.commandsRecorded).toBe(3);
    expect(ledger.takeActivity('p')).toBeUndefined();
    // The cache still shows resourceVersion 1 and no status.
    ledger.recordCommands('p', 2, new Date('2026-03-01T11:30:00Z'));
    await reconciler.reconcile('p');
    expect(writer.last.commandsRecorded).toBe(5);
    expect(writer.last.lastCommandTime).toBe('2026-03-01T11:30:00Z');
    // Applied on top of the version it wrote, not the stale one.
    expect(writer.writes[1]!.resourceVersion).toBe('101');
    cacheCatchesUp();
    ledger.recordCommands('p', 1, new Date('2026-03-01T11:40:00Z'));
    await reconciler.reconcile('p');
    expect(writer.last.commandsRecorded).toBe(6);
    expect(writer.writes[2]!.resourceVersion).toBe('102');
  });

  it('puts the ledger figures back when the write fails, and throws an error without the response headers', async () => {
    const { reconciler, writer, ledger } = setup();
    ledger.recordCommands('p', 4, new Date('2026-03-01T11:00:00Z'));
    ledger.recordProblem('p', { kind: 'loss', node: 'node-a', reason: 'queue-full', count: 3 });
    writer.fail = apiError(409, 'Conflict');
    const failed = reconciler.reconcile('p');
    await expect(failed).rejects.toMatchObject({ kind: 'conflict', code: 409, reason: 'Conflict' });
    await failed.catch((e: Error) => expect(e.message).not.toContain('secret'));
    writer.fail = undefined;
    await reconciler.reconcile('p');
    expect(writer.last.commandsRecorded).toBe(4);
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'True', reason: 'LossesReported' });
  });

  it('lets a policy deleted under it go quietly', async () => {
    const { reconciler, writer, ledger, sources } = setup();
    writer.fail = apiError(404, 'NotFound');
    await expect(reconciler.reconcile('p')).resolves.toBeUndefined();
    sources.policyObjects.delete('p');
    ledger.recordCommands('p', 1, new Date());
    await expect(reconciler.reconcile('p')).resolves.toBeUndefined();
    expect(ledger.takeActivity('p')).toBeUndefined();
  });

  it('marks an invalid policy, naming the field, and tells it once per generation and message', async () => {
    const { reconciler, writer, events, sources } = setup();
    sources.setPolicy(policyObject('p', { redact: { patterns: ['(a)\\1'] } }));
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Invalid')).toMatchObject({
      status: 'True',
      reason: 'InvalidSpec',
      message: expect.stringMatching(/^spec\.redact\.patterns\[0\]: /) as string,
    });
    expect(condition(writer.last, 'Ready')).toMatchObject({ status: 'False', reason: 'Invalid' });
    expect(writer.last.auditedContainers).toBe(0);
    expect(writer.last.nodes).toBeUndefined();
    expect(events.told).toEqual([
      {
        policy: { name: 'p', uid: 'uid-p', generation: 1 },
        message: condition(writer.last, 'Invalid')!.message,
      },
    ]);
    await reconciler.reconcile('p');
    expect(events.told).toHaveLength(1);
    sources.setPolicy(
      policyObject('p', { redact: { patterns: ['(a)\\1'] } }, { generation: 2, resourceVersion: '5' }),
    );
    await reconciler.reconcile('p');
    expect(events.told).toHaveLength(2);
    // Valid again, then invalid again: told again.
    sources.setPolicy(policyObject('p', {}, { generation: 3, resourceVersion: '6' }));
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Invalid')).toMatchObject({ status: 'False' });
    sources.setPolicy(
      policyObject('p', { redact: { patterns: ['(a)\\1'] } }, { generation: 4, resourceVersion: '7' }),
    );
    await reconciler.reconcile('p');
    expect(events.told).toHaveLength(3);
  });

  it('retries an Event that could not be written', async () => {
    const { reconciler, events, sources } = setup({ eventRetryMs: 5000 });
    sources.setPolicy(policyObject('p', { redact: { patterns: ['(a)\\1'] } }));
    events.fail = true;
    await expect(reconciler.reconcile('p')).resolves.toEqual({ requeueAfterMs: 5000 });
    events.fail = false;
    await expect(reconciler.reconcile('p')).resolves.toBeUndefined();
    expect(events.told).toHaveLength(1);
  });

  it('marks an object the schema refuses Invalid instead of failing', async () => {
    const { reconciler, writer, events, sources } = setup();
    sources.setPolicy({
      ...policyObject('p'),
      spec: { capture: { interactiveShells: false, execs: false }, surprise: 1 },
    } as ReturnType<typeof policyObject>);
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Invalid')).toMatchObject({
      status: 'True',
      message: expect.stringContaining('spec') as string,
    });
    expect(writer.last).not.toHaveProperty('matchedPods');
    expect(events.told).toHaveLength(1);
  });

  it('holds a silent agent against the policy only after the start-up grace', async () => {
    const { reconciler, writer, clock, agentReports } = setup();
    await expect(reconciler.reconcile('p')).resolves.toEqual({ requeueAfterMs: 60_000 });
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'False' });
    expect(writer.last.nodes).toEqual([{ name: 'node-a' }]);
    clock.advance(45_000);
    await expect(reconciler.reconcile('p')).resolves.toEqual({ requeueAfterMs: 15_000 });
    clock.advance(15_000);
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'AgentsNotReporting',
      lastTransitionTime: '2026-03-01T12:01:00Z',
    });
    agentReports('node-a', ['bpftrace exited 1']);
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'True', reason: 'AgentErrors' });
    expect(writer.last.nodes![0]!.errors).toEqual(['bpftrace exited']);
  });

  it('shows reported losses for a while', async () => {
    const { reconciler, writer, ledger, clock, agentReports } = setup();
    agentReports();
    ledger.recordProblem('p', { kind: 'loss', node: 'node-a', reason: 'kernel-lost-events', count: 7 });
    await expect(reconciler.reconcile('p')).resolves.toEqual({ requeueAfterMs: 600_000 });
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'True', reason: 'LossesReported' });
    clock.advance(300_000);
    await reconciler.reconcile('p');
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'True' });
    clock.advance(300_000);
    await expect(reconciler.reconcile('p')).resolves.toBeUndefined();
    expect(condition(writer.last, 'Degraded')).toMatchObject({ status: 'False', reason: 'AllAudited' });
  });

  it('counts containers an older policy audits, and unauditable pods', async () => {
    const { reconciler, writer, sources } = setup();
    sources.setPolicy(policyObject('older', {}, { creationTimestamp: '2025-01-01T00:00:00Z' }));
    sources.podObjects.push(podObject(pod('prod/plain', { runtimeClassName: undefined })));
    await reconciler.reconcile('p');
    expect(writer.last).toMatchObject({ matchedPods: 2, auditedContainers: 0, unauditablePods: 1 });
    expect(condition(writer.last, 'Ready')!.message).toContain(
      '2 selected containers audited by older policy older',
    );
    expect(condition(writer.last, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'UnauditablePods',
      message: expect.stringContaining('prod/plain') as string,
    });
  });
});

describe('recomputePlans', () => {
  it('publishes every node plan from the caches and reports what changed', () => {
    const { sources } = setup();
    const store = new PlanStore();
    expect(recomputePlans(sources, store)).toEqual(['node-a']);
    expect(store.get('node-a')!.containers.map((c) => c.containerName)).toEqual(['app', 'sidecar']);
    expect(recomputePlans(sources, store)).toEqual([]);
    sources.setPolicy(policyObject('p', { suspend: true }));
    expect(recomputePlans(sources, store)).toEqual(['node-a']);
    expect(store.get('node-a')!.containers).toEqual([]);
    expect(recomputePlans(sources, store, { runtimeClass: 'other' })).toEqual([]);
  });

  it('lists the policy keys to enqueue', () => {
    const { sources } = setup();
    sources.setPolicy(policyObject('q'));
    expect(policyKeys(sources)).toEqual(['p', 'q']);
  });
});

describe('the pieces the wiring plugs together', () => {
  it('fit the runtime and the agent endpoint as they are (checked by the compiler)', () => {
    const { reconciler } = setup();
    const handler: WorkHandler = (key) => reconciler.reconcile(key);
    const plans: PlanSource = new PlanStore();
    const informers = (
      policies: Informer<RawObject>,
      pods: Informer<Wire<V1Pod>>,
      ns: Informer<Wire<V1Namespace>>,
    ) => ({ policies, pods, namespaces: ns }) satisfies WorldSources;
    expect([handler, plans, informers]).toHaveLength(3);
  });
});
