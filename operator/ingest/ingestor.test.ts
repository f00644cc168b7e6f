import type { Report } from '../../api/agentapi/v1.js';
import type { AgentRecord, CoverageRecord, LossRecord } from '../../api/records/v1.js';
import type { RecordedCommand } from '../../api/v1alpha1/index.js';
import { ReportLedger } from '../ledger.js';
import type { CommandEvent } from './events.js';
import { combine, IngestFailure, ReportIngestor, type PolicyOutputs } from './ingestor.js';
import type { WriteOutcome } from './outcome.js';
import type { ContainerTarget, Loss } from './records-writer.js';
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

const coverage = (seq: number, over: Partial<CoverageRecord>): CoverageRecord => ({
  kind: 'coverage',
  seq,
  boot: BOOT,
  node: 'node-a',
  time: '2026-03-01T10:00:00Z',
  containerId: 'c0ffee0123456789',
  pod: { namespace: 'shop', name: 'web-0', uid: 'u' },
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

function setup(outputs: Record<string, PolicyOutputs> = {}) {
  const records = new FakeRecords();
  const events = new FakeEvents();
  const ledger = new ReportLedger();
  const ingestor = new ReportIngestor({
    records,
    events,
    ledger,
    outputsOf: (p) => outputs[p],
    plans: {
      get: () => ({
        node: 'node-a',
        version: 'v1',
        generatedAt: '2026-03-01T10:00:00Z',
        policies: { prod: {} as never, other: {} as never },
        containers: [],
      }),
    },
    now: () => new Date('2026-03-01T11:00:00Z'),
  });
  const report = (recs: AgentRecord[], state?: Report['state']): Report => ({
    node: 'node-a',
    boot: BOOT,
    records: recs,
    ...(state ? { state } : {}),
  });
  return { records, events, ledger, ingestor, report };
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
      report([command(1, 'a', { policy: 'quiet' }), command(2, 'b', { policy: 'loud' })]),
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
      ingestor.ingest(report([command(1, 'a'), command(2, 'b', { policy: 'loud' })])),
    ).resolves.toEqual({ accepted: 1, duplicates: 1 });
    expect(ledger.takeActivity('prod')).toBeUndefined();
    expect(ledger.takeActivity('loud')?.commands).toBe(1);
  });

  it('fails the report when any write failed, after telling the ledger what was written', async () => {
    const { records, events, ledger, ingestor, report } = setup();
    events.answer = (seq) => (seq === 2 ? 'failed' : 'accepted');
    await expect(ingestor.ingest(report([command(1, 'a'), command(2, 'b')]))).rejects.toBeInstanceOf(
      IngestFailure,
    );
    expect(ledger.takeActivity('prod')?.commands).toBe(2);
    // The retry: the AuditRecords have both, the Event of 2 is written now.
    records.answer = () => 'duplicate';
    events.answer = (seq) => (seq === 1 ? 'duplicate' : 'accepted');
    await expect(ingestor.ingest(report([command(1, 'a'), command(2, 'b')]))).resolves.toEqual({
      accepted: 0,
      duplicates: 2,
    });
    expect(ledger.takeActivity('prod')).toBeUndefined();
  });

  it('counts a command without pod identity and tells its policy, once', async () => {
    const { records, events, ledger, ingestor, report } = setup();
    const orphan = command(1, 'ls', { pod: undefined, container: undefined });
    await expect(ingestor.ingest(report([orphan]))).resolves.toEqual({ accepted: 1, duplicates: 0 });
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
    for (const policy of ['prod', 'other'])
      expect(ledger.takeActivity(policy)?.problems).toEqual([
        { kind: 'loss', node: 'node-a', reason: 'kernel-lost-events', count: 12 },
      ]);
    expect(ledger.nodeReport('node-a')).toEqual({ state, lastReportTime: new Date('2026-03-01T11:00:00Z') });
  });
});
