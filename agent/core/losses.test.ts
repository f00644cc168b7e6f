import { containerRecord } from '../containers/testdata/container-record.js';
import type { ContainerAudit } from '../plan/plan.js';
import type { DropWindow } from '../records/line-limits.js';
import { captureLoss, monotonicToDate, rateLimitedLoss, wrapperDropsLoss } from './losses.js';

const now = new Date('2026-01-01T00:00:10.000Z');

describe('loss records', () => {
  it('hand-offs the wrapper dropped: one loss with the count and the window; none when nothing was dropped', () => {
    const since = new Date('2026-01-01T00:00:00.000Z');
    const until = new Date('2026-01-01T00:00:09.000Z');
    expect(wrapperDropsLoss(3, since, until, now)).toEqual({
      kind: 'loss',
      time: now.toISOString(),
      reason: 'handoffs-dropped',
      count: 3,
      since: since.toISOString(),
      until: until.toISOString(),
      detail:
        'the runc wrapper wrote no hand-off for 3 container start(s) or exec(s) (the agent was absent, or the spool was at its bound): those containers and execs may be unaudited',
    });
    expect(wrapperDropsLoss(0, since, until, now)).toBeUndefined();
    expect(wrapperDropsLoss(1, undefined, until, now)).not.toHaveProperty('since');
  });

  const window: DropWindow = {
    key: 'web',
    count: 7,
    lines: 7,
    execs: 0,
    byCause: { 'line-rate': 7, 'rule-time': 0, 'kernel-budget': 0 },
    kernelBytes: 0,
    sinceMs: Date.parse('2026-01-01T00:00:01.000Z'),
    untilMs: Date.parse('2026-01-01T00:00:02.000Z'),
  };

  it('rate-limited: names the container when still audited, by id alone when forgotten', () => {
    const audit = { policy: 'p' } as ContainerAudit;
    const web = containerRecord({ kind: 'container', containerName: 'web' }, { id: 'web' });
    expect(rateLimitedLoss(window, { container: web, audit }, 'seven over the rate', now)).toEqual({
      kind: 'loss',
      time: now.toISOString(),
      containerId: 'web',
      container: 'web',
      policy: 'p',
      reason: 'rate-limited',
      count: 7,
      since: '2026-01-01T00:00:01.000Z',
      until: '2026-01-01T00:00:02.000Z',
      detail: 'seven over the rate',
    });
    expect(rateLimitedLoss(window, undefined, 'd', now)).toMatchObject({ containerId: 'web' });
    expect(rateLimitedLoss(window, undefined, 'd', now)).not.toHaveProperty('container');
  });

  it('a probe’s loss: its window converted from monotonic time, its detail cut to the schema’s bound', () => {
    const toDate = (ns: bigint) => new Date(Number(ns / 1_000_000n));
    expect(
      captureLoss(
        { reason: 'kernel-lost-events', count: 5, fromNs: 1_000_000_000n, toNs: 2_000_000_000n },
        toDate,
        now,
      ),
    ).toEqual({
      kind: 'loss',
      time: now.toISOString(),
      reason: 'kernel-lost-events',
      count: 5,
      since: new Date(1000).toISOString(),
      until: new Date(2000).toISOString(),
    });
    const exited = captureLoss({ reason: 'bpftrace-exited', detail: 'x'.repeat(5000) }, toDate, now);
    expect(exited.detail).toHaveLength(2048);
    expect(Object.keys(exited)).toEqual(['kind', 'time', 'reason', 'detail']);
  });

  it('a monotonic time as wall time: as far before now as it is before the monotonic now', () => {
    expect(monotonicToDate(9_500_000_000n, 10_000_000_000n, 1_000_000)).toEqual(new Date(1_000_000 - 500));
    expect(monotonicToDate(10_000_000_000n, 10_000_000_000n, 1_000_000)).toEqual(new Date(1_000_000));
  });
});
