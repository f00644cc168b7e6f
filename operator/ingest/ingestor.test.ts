import type { NodePlan, PlannedContainer, Report } from '../../api/agentapi/v1.js';
import type { AgentRecord, CoverageRecord, LossRecord } from '../../api/records/v1.js';
import type { RecordedCommand } from '../../api/v1alpha1/index.js';
import { ReportLedger } from '../ledger.js';
import type { CommandEvent } from './events.js';
import { combine, IngestFailure, ReportIngestor, type PolicyOutputs } from './ingestor.js';
import { lost, type WriteOutcome } from './outcome.js';
import type { ContainerTarget, Loss } from './records-writer.js';
import type { KnownPod } from './scope.js';
import type { SessionIdentity } from './sessions.js';
import { BOOT, command, exec } from './testdata/fakes.js';

/** Writers that remember what they were given and answer as told. */
class FakeRecords {
  written: { session: SessionIdentity; command: RecordedCommand }[] = [];
  losses: { target: ContainerTarget; loss: Loss }[] = [];
  answer: (seq: number) => WriteOutcome = () => 'accepted';
  write(session: SessionIdentity, command: RecordedCommand): Promise<WriteOutcome> {
    this.written.push({ session, command });
    return Promise.resolve(this.answer(command.seq));
  }
  noteLoss(target: ContainerTarget, loss: Loss): Promise<WriteOutcome[]> {
    this.losses.push({ target, loss });
    return Promise.resolve(['accepted']);
  }
}

class FakeEvents {
  written: CommandEvent[] = [];
  answer: (seq: number) => WriteOutcome = () => 'accepted';
  write(events: readonly CommandEvent[]): Promise<WriteOutcome[]> {
    this.written.push(...events);
    return Promise.resolve(events.map((e) => this.answer(e.seq)));
  }
}

const UID = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';

const coverage = (seq: number, over: Partial<CoverageRecord>): CoverageRecord => ({
  kind: 'coverage',
  seq,
  boot: BOOT,
  node: 'node-a',
  time: '2026-03-01T10:00:00Z',
  containerId: 'c0ffee0123456789',
  pod: { namespace: 'shop', name: 'web-0', uid: UID },
  container: 'app',
  policy: 'prod',
  status: 'covered',
  ...over,
});

const loss = (seq: number): LossRecord => ({
  kind: 'loss',
  seq,
  boot: BOOT,
  node: 'node-a',
  time: '2026-03-01T10:00:00Z',
  reason: 'kernel-lost-events',
  count: 12,
});

const planned = (
  containerName: string,
  policy: string,
  podName = 'web-0',
  podUid = UID,
): PlannedContainer => ({
  podNamespace: 'shop',
  podName,
  podUid,
  containerName,
  policy,
});

/** node-a audits web-0's app under prod, and one container named after each other policy. */
const PLANNED = [planned('app', 'prod'), planned('quiet', 'quiet'), planned('loud', 'loud')];

function nodePlan(
  containers: PlannedContainer[],
  version = 'v1',
  generatedAt = '2026-03-01T10:00:00Z',
): NodePlan {
  const policies = Object.fromEntries(containers.map((c) => [c.policy, {} as never]));
  return { node: 'node-a', version, generatedAt, policies, containers };
}

function setup(outputs: Record<string, PolicyOutputs> = {}, pods: Record<string, KnownPod> = {}) {
  const records = new FakeRecords();
  const events = new FakeEvents();
  const ledger = new ReportLedger();
  const clock = { t: Date.parse('2026-03-01T11:00:00Z') };
  let plan = nodePlan(PLANNED);
  const ingestor = new ReportIngestor({
    records,
    events,
    ledger,
    outputsOf: (p) => outputs[p],
    plans: { get: (node) => (node === 'node-a' ? plan : undefined) },
    pods: { get: (namespace, name) => pods[`${namespace}/${name}`] },
    scope: { memoryMs: 60_000, graceMs: 5_000 },
    clock: { now: () => clock.t },
  });
  const report = (recs: AgentRecord[], state?: Report['state']): Report => ({
    node: 'node-a',
    boot: BOOT,
    records: recs,
    ...(state ? { state } : {}),
  });
  const setPlan = (containers: PlannedContainer[], version: string) =>
    (plan = nodePlan(containers, version, new Date(clock.t).toISOString()));
  const advance = (ms: number) => (clock.t += ms);
  return { records, events, ledger, ingestor, report, setPlan, advance };
}

describe('combine', () => {
  it('lets the judge decide and any failure fail', () => {
    expect(combine('duplicate', 'accepted')).toBe('duplicate');
    expect(combine('accepted', 'failed')).toBe('failed');
    expect(combine(undefined, 'duplicate')).toBe('duplicate');
  });
});

describe('ReportIngestor', () => {
  it('sends commands and execs to AuditRecords and Events and counts them in the ledger per policy', async () => {
    const { records, events, ledger, ingestor, report } = setup();
    await expect(ingestor.ingest(report([command(1, 'ls'), exec(2, ['id'])]))).resolves.toEqual({
      accepted: 2,
      duplicates: 0,
    });
    expect(records.written.map((w) => [w.session.kind, w.command.command])).toEqual([
      ['shell', 'ls'],
      ['exec', 'id'],
    ]);
    expect(events.written.map((e) => e.text)).toEqual(['ls', 'id']);
    expect(ledger.takeActivity('prod')).toMatchObject({
      commands: 2,
      lastCommandTime: new Date(exec(2, []).time),
    });
  });

  it('follows the policy outputs', async () => {
    const { records, events, ingestor, report } = setup({
      quiet: { events: false, auditRecords: true },
      loud: { events: true, auditRecords: false },
    });
    await ingestor.ingest(
      report([
        command(1, 'a', { policy: 'quiet', container: 'quiet' }),
        command(2, 'b', { policy: 'loud', container: 'loud' }),
      ]),
    );
    expect(records.written.map((w) => w.command.seq)).toEqual([1]);
    expect(events.written.map((e) => e.seq)).toEqual([2]);
  });

  it('judges duplicates by the AuditRecord when it is written, else by the Event', async () => {
    const { records, events, ledger, ingestor, report } = setup({
      loud: { events: true, auditRecords: false },
    });
    records.answer = () => 'duplicate';
    events.answer = () => 'accepted';
    await expect(
      ingestor.ingest(report([command(1, 'a'), command(2, 'b', { policy: 'loud', container: 'loud' })])),
    ).resolves.toEqual({ accepted: 1, duplicates: 1 });
    expect(ledger.takeActivity('prod')).toBeUndefined();
    expect(ledger.takeActivity('loud')?.commands).toBe(1);
  });

  it('answers retry for a transient failure, after telling the ledger what was written', async () => {
    const { records, events, ledger, ingestor, report } = setup();
    events.answer = (seq) => (seq === 2 ? 'failed' : 'accepted');
    await expect(ingestor.ingest(report([command(1, 'a'), command(2, 'b')]))).resolves.toEqual({
      accepted: 1,
      duplicates: 0,
      retry: [2],
    });
    expect(ledger.takeActivity('prod')?.commands).toBe(2);
    // The retry: the AuditRecord has it, the Event of 2 is written now.
    records.answer = () => 'duplicate';
    events.answer = () => 'accepted';
    await expect(ingestor.ingest(report([command(2, 'b')]))).resolves.toEqual({ accepted: 0, duplicates: 1 });
    expect(ledger.takeActivity('prod')).toBeUndefined();
  });

  it('fails the report as a whole only when nothing in it could be written', async () => {
    const { records, ingestor, report } = setup();
    records.answer = () => 'failed';
    await expect(ingestor.ingest(report([command(1, 'a'), command(2, 'b')]))).rejects.toBeInstanceOf(
      IngestFailure,
    );
    expect(ingestor.counters.get('failed')).toBe(2);
  });

  it('answers rejected for a record that can never be written, writes the rest and tells the policy', async () => {
    const { records, ledger, ingestor, report } = setup();
    records.answer = (seq) =>
      seq === 2 || seq === 3 ? lost('namespace-gone') : seq === 4 ? 'failed' : 'accepted';
    const batch = [command(1, 'a'), command(2, 'b'), command(3, 'c'), command(4, 'd'), command(5, 'e')];
    await expect(ingestor.ingest(report(batch))).resolves.toEqual({
      accepted: 2,
      duplicates: 0,
      rejected: [
        { seq: 2, reason: 'namespace-gone' },
        { seq: 3, reason: 'namespace-gone' },
      ],
      retry: [4],
    });
    expect(ingestor.counters.snapshot()).toMatchObject({
      rejected: 2,
      'rejected:namespace-gone': 2,
      failed: 1,
    });
    expect(ledger.takeActivity('prod')).toMatchObject({
      commands: 2,
      problems: [{ kind: 'rejected', node: 'node-a', reason: 'namespace-gone', count: 2 }],
    });
    // Sent again (the agent retries only seq 4, but a whole report again must not tell the policy twice).
    await ingestor.ingest(report(batch));
    expect(ledger.takeActivity('prod')?.problems ?? []).toEqual([]);
  });

  it('answers rejected for a command without pod identity, and tells its policy once', async () => {
    const { records, events, ledger, ingestor, report } = setup();
    const orphan = command(1, 'ls', { pod: undefined, container: undefined });
    await expect(ingestor.ingest(report([orphan]))).resolves.toEqual({
      accepted: 0,
      duplicates: 0,
      rejected: [{ seq: 1, reason: 'unattributed' }],
    });
    await ingestor.ingest(report([orphan]));
    expect(records.written).toHaveLength(0);
    expect(events.written).toHaveLength(0);
    expect(ingestor.counters.get('unattributed')).toBe(2);
    expect(ledger.takeActivity('prod')?.problems).toEqual([{ kind: 'unattributed', node: 'node-a' }]);
  });

  it('tells coverage gaps and late attachment to the ledger and the active sessions’ records', async () => {
    const { records, ledger, ingestor, report } = setup();
    await ingestor.ingest(
      report([
        coverage(1, { status: 'gap', reason: 'no readline in /bin/bash' }),
        coverage(2, { status: 'covered', late: true, coveredFrom: '2026-03-01T09:59:00Z' }),
        coverage(3, { status: 'covered' }),
      ]),
    );
    expect(ledger.takeActivity('prod')?.problems).toEqual([
      { kind: 'coverage-gap', node: 'node-a' },
      { kind: 'attached-late', node: 'node-a' },
    ]);
    expect(records.losses.map((l) => [l.target, l.loss])).toEqual([
      [
        { node: 'node-a', namespace: 'shop', pod: 'web-0', container: 'app' },
        { reason: 'not audited: no readline in /bin/bash', count: 0, since: '2026-03-01T10:00:00Z' },
      ],
      [
        { node: 'node-a', namespace: 'shop', pod: 'web-0', container: 'app' },
        { reason: 'attached late: earlier commands may be missing', count: 0, until: '2026-03-01T09:59:00Z' },
      ],
    ]);
  });

  it('tells a node’s losses to every policy planned there, once per record, and the agent state', async () => {
    const { ledger, ingestor, report } = setup();
    const state = { auditedContainers: 3, probesAttached: 1, errors: [], queueDropped: 0 };
    await expect(ingestor.ingest(report([loss(7)], state))).resolves.toEqual({ accepted: 1, duplicates: 0 });
    await expect(ingestor.ingest(report([loss(7)]))).resolves.toEqual({ accepted: 0, duplicates: 1 });
    for (const policy of ['prod', 'quiet', 'loud'])
      expect(ledger.takeActivity(policy)?.problems).toEqual([
        { kind: 'loss', node: 'node-a', reason: 'kernel-lost-events', count: 12 },
      ]);
    expect(ledger.nodeReport('node-a')).toEqual({ state, lastReportTime: new Date('2026-03-01T11:00:00Z') });
  });
});

describe('ReportIngestor scope: a node reports only what its plan names', () => {
  const onNodeB: KnownPod = { uid: 'uid-of-db-0', nodeName: 'node-b' };

  it.each([
    [
      'a pod on another node',
      command(1, 'rm -rf /', {
        pod: { namespace: 'shop', name: 'db-0', uid: 'uid-of-db-0' },
        container: 'db',
      }),
      'not-planned',
    ],
    [
      'a pod no plan names',
      command(1, 'x', { pod: { namespace: 'kube-system', name: 'invented', uid: 'u-1' } }),
      'not-planned',
    ],
    [
      'a planned pod under another uid',
      command(1, 'x', { pod: { namespace: 'shop', name: 'web-0', uid: 'u-2' } }),
      'not-planned',
    ],
    [
      'a planned pod without its uid',
      command(1, 'x', { pod: { namespace: 'shop', name: 'web-0' } }),
      'not-planned',
    ],
    ['another container of a planned pod', command(1, 'x', { container: 'sidecar' }), 'not-planned'],
    ['a planned container under another policy', command(1, 'x', { policy: 'loud' }), 'wrong-policy'],
    ['a planned container under no policy', command(1, 'x', { policy: undefined }), 'wrong-policy'],
    [
      'an invented alert under an invented policy',
      command(1, 'x', { policy: 'victim', alerts: [{ name: 'fake', severity: 'critical' }] }),
      'wrong-policy',
    ],
    [
      'an exec in a pod on another node',
      exec(1, ['id'], { pod: { namespace: 'shop', name: 'db-0', uid: 'uid-of-db-0' } }),
      'not-planned',
    ],
    [
      'a coverage gap of a pod on another node',
      coverage(1, { status: 'gap', pod: { namespace: 'shop', name: 'db-0', uid: 'uid-of-db-0' } }),
      'not-planned',
    ],
    [
      'a record without pod under a policy not planned here',
      command(1, 'x', { pod: undefined, policy: 'victim' }),
      'not-planned',
    ],
  ] as const)('refuses %s: counted, nothing written anywhere', async (_what, record, reason) => {
    const { records, events, ledger, ingestor, report } = setup({}, { 'shop/db-0': onNodeB });
    const state = { auditedContainers: 3, probesAttached: 1, errors: [], queueDropped: 0 };
    await expect(ingestor.ingest(report([record, loss(2)], state))).resolves.toEqual({
      accepted: 1,
      duplicates: 0,
      rejected: [{ seq: 1, reason }],
    });
    expect(records.written).toEqual([]);
    expect(records.losses).toEqual([]);
    expect(events.written).toEqual([]);
    expect(ingestor.counters.snapshot()).toMatchObject({ rejected: 1, [`rejected:${reason}`]: 1 });
    // The policy a refused record names is not told anything, not even the node's losses and state.
    expect(ledger.takeActivity('victim')).toBeUndefined();
    expect(ledger.takeActivity('prod')?.commands ?? 0).toBe(0);
  });

  it('holds the records of a pod on the node its plan does not name yet, and takes them once planned', async () => {
    const { records, ingestor, report, setPlan, advance } = setup(
      {},
      {
        'shop/web-9': { uid: 'uid-9', nodeName: 'node-a' },
      },
    );
    const fresh = command(1, 'ls', { pod: { namespace: 'shop', name: 'web-9', uid: 'uid-9' } });
    await expect(ingestor.ingest(report([fresh]))).rejects.toBeInstanceOf(IngestFailure);
    await expect(ingestor.ingest(report([fresh, loss(2)]))).resolves.toEqual({
      accepted: 1,
      duplicates: 0,
      retry: [1],
    });
    expect(records.written).toEqual([]);
    advance(1_000);
    setPlan([...PLANNED, planned('app', 'prod', 'web-9', 'uid-9')], 'v2');
    await expect(ingestor.ingest(report([fresh]))).resolves.toEqual({ accepted: 1, duplicates: 0 });
    expect(records.written.map((w) => w.session.pod)).toEqual(['web-9']);
    expect(ingestor.counters.get('held')).toBe(2);
  });

  it('refuses them once the grace has passed without a plan naming them', async () => {
    const { ingestor, report, advance } = setup({}, { 'shop/web-9': { uid: 'uid-9', nodeName: 'node-a' } });
    const unplanned = command(1, 'ls', { pod: { namespace: 'shop', name: 'web-9', uid: 'uid-9' } });
    await expect(ingestor.ingest(report([unplanned]))).rejects.toBeInstanceOf(IngestFailure);
    advance(5_001);
    await expect(ingestor.ingest(report([unplanned]))).resolves.toEqual({
      accepted: 0,
      duplicates: 0,
      rejected: [{ seq: 1, reason: 'not-planned' }],
    });
  });

  it('takes late records of a container the plan named recently, and refuses them after the memory', async () => {
    const { records, ingestor, report, setPlan, advance } = setup();
    await expect(ingestor.ingest(report([command(1, 'ls')]))).resolves.toEqual({
      accepted: 1,
      duplicates: 0,
    });
    // web-0 is deleted: the node's plan no longer names it.
    setPlan([planned('quiet', 'quiet')], 'v2');
    advance(59_000);
    await expect(ingestor.ingest(report([command(2, 'late')]))).resolves.toEqual({
      accepted: 1,
      duplicates: 0,
    });
    // Under the policy the plan gave it, not another.
    await expect(ingestor.ingest(report([command(3, 'x', { policy: 'quiet' })]))).resolves.toMatchObject({
      rejected: [{ seq: 3, reason: 'wrong-policy' }],
    });
    advance(2_000);
    await expect(ingestor.ingest(report([command(4, 'too late')]))).resolves.toMatchObject({
      rejected: [{ seq: 4, reason: 'not-planned' }],
    });
    expect(records.written.map((w) => w.command.seq)).toEqual([1, 2]);
  });

  it('remembers a plan it was told of even when no report came while it stood', async () => {
    const { ingestor, report, setPlan } = setup();
    // web-7 is planned and gone again between two reports: the operator tells the scope of every plan.
    const withWeb7 = nodePlan(
      [...PLANNED, planned('app', 'prod', 'web-7', 'uid-7')],
      'v2',
      '2026-03-01T11:00:00Z',
    );
    ingestor.scope.observe(withWeb7);
    setPlan(PLANNED, 'v3');
    const late = command(1, 'ls', { pod: { namespace: 'shop', name: 'web-7', uid: 'uid-7' } });
    await expect(ingestor.ingest(report([late]))).resolves.toEqual({ accepted: 1, duplicates: 0 });
  });
});
