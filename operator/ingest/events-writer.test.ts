import type { CommandRecord } from '../../api/records/v1.js';
import { commandEventOf, coverageEventOf } from './events.js';
import { EventsWriter, type EventsWriterOptions } from './events-writer.js';
import { apiError, command, coverageRecord, MemoryEventSink, TEST_START } from './testdata/fakes.js';
import { FakeClock } from '../../test-support/fake-clock.js';

function setup(options: Partial<EventsWriterOptions> = {}) {
  const clock = new FakeClock(TEST_START);
  const sink = new MemoryEventSink();
  const writer = new EventsWriter({ sink, clock, ...options });
  const write = (records: CommandRecord[]) => writer.write(records.map((r) => commandEventOf(r)!));
  return { clock, sink, writer, write };
}

const byReason = (sink: MemoryEventSink, reason: string) => sink.list().filter((e) => e.reason === reason);

describe('EventsWriter', () => {
  it('writes a coverage problem as a Warning Event on its pod, once', async () => {
    const { sink, writer } = setup({ rate: { burst: 1, perSecond: 0.001 } });
    const gap = coverageEventOf(coverageRecord(5))!;
    await expect(writer.writeCoverage(gap)).resolves.toBe('accepted');
    await expect(writer.writeCoverage(gap)).resolves.toBe('duplicate');
    const late = coverageEventOf(coverageRecord(6, { status: 'covered', late: true }))!;
    await expect(writer.writeCoverage(late)).resolves.toBe('accepted');
    expect(sink.list().map((e) => [e.metadata.name, e.type, e.reason, e.message])).toEqual([
      ['web-0.0f1e2d3c.5', 'Warning', 'NotAudited', 'app is not audited: no readline in /bin/bash'],
      ['web-0.0f1e2d3c.6', 'Warning', 'AuditedLate', 'app was audited late: earlier commands may be missing'],
    ]);
    expect(sink.calls.create).toBe(2);
    expect(writer.counters.get('coverage')).toBe(2);
  });

  it('writes one Event per command', async () => {
    const { sink, write } = setup();
    await expect(write([command(1, 'ls'), command(2, 'id')])).resolves.toEqual(['accepted', 'accepted']);
    expect(sink.list().map((e) => [e.metadata.name, e.message])).toEqual([
      ['web-0.0f1e2d3c.1', 'app (uid 0, pid 4242): ls'],
      ['web-0.0f1e2d3c.2', 'app (uid 0, pid 4242): id'],
    ]);
  });

  it('writes a retried command once: remembered, or AlreadyExists after a restart', async () => {
    const { sink, write } = setup();
    await write([command(1, 'ls')]);
    await expect(write([command(1, 'ls')])).resolves.toEqual(['duplicate']);
    expect(sink.calls.create).toBe(1);
    const restarted = new EventsWriter({ sink, clock: new FakeClock(TEST_START) });
    await expect(restarted.write([commandEventOf(command(1, 'ls'))!])).resolves.toEqual(['duplicate']);
    expect(sink.list()).toHaveLength(1);
  });

  it('aggregates a repeated command into the count of its Event', async () => {
    const { sink, write } = setup();
    await write([command(1, 'make test'), command(2, 'make test'), command(3, 'make test')]);
    expect(sink.list()).toHaveLength(1);
    expect(sink.list()[0]).toMatchObject({ count: 3, lastTimestamp: new Date(command(3, '').time) });
  });

  it('folds what the rate limit holds back into one summary Event at the end of the window', async () => {
    const { sink, write, clock, writer } = setup({ rate: { burst: 3, perSecond: 1 }, foldWindowMs: 5_000 });
    const records = Array.from({ length: 10 }, (_, i) => command(i + 1, `echo ${i + 1}`));
    await expect(write(records)).resolves.toEqual(records.map(() => 'accepted'));
    expect(byReason(sink, 'ShellCommand')).toHaveLength(3);
    expect(byReason(sink, 'CommandsFolded')).toHaveLength(0);
    await clock.advance(5_000);
    const [summary] = byReason(sink, 'CommandsFolded');
    expect(summary?.message).toMatch(
      /^7 commands folded by the Event rate limit \(burst 3, 1\/s\): echo 4; echo 5;/,
    );
    expect(summary?.metadata.name).toBe('web-0.0f1e2d3c.4.folded');
    expect(writer.counters.get('folded')).toBe(7);
    // Tokens come back with time: Events again.
    await write([command(11, 'echo 11')]);
    expect(byReason(sink, 'ShellCommand')).toHaveLength(4);
  });

  it('limits each pod on its own', async () => {
    const { sink, write } = setup({ rate: { burst: 1, perSecond: 1 } });
    await write([command(1, 'a'), command(2, 'b', { pod: { namespace: 'shop', name: 'web-1', uid: 'u1' } })]);
    expect(byReason(sink, 'ShellCommand')).toHaveLength(2);
  });

  it('close() writes a pending summary at once', async () => {
    const { sink, write, writer } = setup({ rate: { burst: 1, perSecond: 0.001 }, foldWindowMs: 60_000 });
    await write([command(1, 'a'), command(2, 'b')]);
    await writer.close();
    expect(byReason(sink, 'CommandsFolded').map((e) => e.message)).toEqual([
      '1 command folded by the Event rate limit (burst 1, 0.001/s): b',
    ]);
  });

  it('retries a summary that could not be written, and counts one that never could', async () => {
    const { sink, write, clock, writer } = setup({
      rate: { burst: 1, perSecond: 0.001 },
      foldWindowMs: 1_000,
    });
    await write([command(1, 'a'), command(2, 'b')]);
    sink.failNext = { error: apiError(503, 'ServiceUnavailable'), times: 2 };
    await clock.advance(1_000);
    await clock.advance(10_000);
    expect(byReason(sink, 'CommandsFolded')).toHaveLength(1);
    await write([command(3, 'c'), command(4, 'd')]);
    sink.failNext = { error: apiError(503, 'ServiceUnavailable'), times: 100 };
    await clock.advance(60_000);
    expect(writer.counters.get('summariesFailed')).toBe(1);
  });

  it('reports a failed write as failed', async () => {
    const { sink, write } = setup();
    sink.failNext = { error: apiError(500, 'InternalError'), times: 1 };
    await expect(write([command(1, 'a')])).resolves.toEqual(['failed']);
    await expect(write([command(1, 'a')])).resolves.toEqual(['accepted']);
  });
});
