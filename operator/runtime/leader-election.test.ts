/**
 * Leader election's state machine on a fake clock against an in-memory Lease that enforces resourceVersion
 * preconditions like the API server. The same scenarios run against a real API server in
 * leader-election.integration.test.ts; here time is exact, so the safety margins can be checked too.
 */
import { KubeError } from '../../common/kube/errors.js';
import { FakeClock, settle } from '../../test-support/fake-clock.js';
import { LeaderElector } from './leader-election.js';
import type { LeaseLock, LeaseRecord, LeaseSnapshot } from './lease-lock.js';

/** One stored Lease; each replica reaches it through its own view, which a test can cut off. */
class MemoryLease {
  stored: LeaseSnapshot | undefined;
  private rv = 0;
  writes = 0;

  view(): LeaseLock & { down: boolean } {
    const view = {
      down: false,
      description: 'test/leader',
      get: () => (view.down ? unreachable() : Promise.resolve(this.stored && structuredClone(this.stored))),
      create: (record: LeaseRecord) => {
        if (view.down) return unreachable();
        if (this.stored)
          return Promise.reject(new KubeError('already-exists', 409, 'AlreadyExists', 'exists'));
        return Promise.resolve(this.write(record));
      },
      update: (record: LeaseRecord, resourceVersion: string) => {
        if (view.down) return unreachable();
        if (this.stored?.resourceVersion !== resourceVersion) {
          return Promise.reject(new KubeError('conflict', 409, 'Conflict', 'the object has been modified'));
        }
        return Promise.resolve(this.write(record));
      },
    };
    return view;
  }

  private write(record: LeaseRecord): LeaseSnapshot {
    this.writes++;
    this.stored = { record: structuredClone(record), resourceVersion: String(++this.rv) };
    return structuredClone(this.stored);
  }
}

function unreachable(): Promise<never> {
  return Promise.reject(new KubeError('transient', undefined, undefined, 'ECONNREFUSED'));
}

const TIMING = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

function candidate(name: string, lease: MemoryLease, clock: FakeClock) {
  const lock = lease.view();
  const log: string[] = [];
  let signal: AbortSignal | undefined;
  const elector = new LeaderElector({
    ...TIMING,
    lock,
    identity: name,
    clock,
    random: () => 0,
    onStartedLeading: (s) => {
      signal = s;
      log.push('started');
    },
    onStoppedLeading: () => log.push('stopped'),
  });
  return { elector, lock, log, signal: () => signal };
}

/** Advances time in small steps, checking after each that at most one candidate leads. */
async function run(clock: FakeClock, ms: number, electors: LeaderElector[]): Promise<void> {
  for (let t = 0; t < ms; t += 100) {
    await clock.advance(100);
    expect(electors.filter((e) => e.isLeader()).length).toBeLessThanOrEqual(1);
  }
}

/** Time until `predicate` holds, advancing in small steps; fails after `limit`. */
async function timeUntil(clock: FakeClock, predicate: () => boolean, limit = 120_000): Promise<number> {
  const start = clock.now();
  while (!predicate()) {
    if (clock.now() - start > limit) throw new Error('condition never held');
    await clock.advance(100);
  }
  return clock.now() - start;
}

describe('LeaderElector', () => {
  it('lets exactly one of two candidates lead, and it keeps renewing', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const a = candidate('a', lease, clock);
    const b = candidate('b', lease, clock);
    a.elector.start();
    b.elector.start();
    await run(clock, 60_000, [a.elector, b.elector]);
    expect([a.elector.isLeader(), b.elector.isLeader()].sort()).toEqual([false, true]);
    expect(lease.stored?.record.holderIdentity).toBe(a.elector.isLeader() ? 'a' : 'b');
    expect(lease.writes).toBeGreaterThan(20); // renewed every retry period
    await a.elector.stop();
    await b.elector.stop();
  });

  it('on a graceful stop, releases the lease and the other takes over at its next retry', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const a = candidate('a', lease, clock);
    const b = candidate('b', lease, clock);
    a.elector.start();
    await settle();
    b.elector.start();
    await run(clock, 5_000, [a.elector, b.elector]);
    expect(a.elector.isLeader()).toBe(true);

    await a.elector.stop();
    expect(a.signal()?.aborted).toBe(true);
    expect(a.log).toEqual(['started', 'stopped']);
    expect(lease.stored?.record.holderIdentity).toBe('');
    const takeover = await timeUntil(clock, () => b.elector.isLeader());
    expect(takeover).toBeLessThanOrEqual(TIMING.retryPeriodMs * 1.2 + 100);
    expect(lease.stored?.record).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await b.elector.stop();
  });

  it('when the leader just stops renewing, the other waits out the lease duration, not less', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const a = candidate('a', lease, clock);
    const b = candidate('b', lease, clock);
    a.elector.start();
    await settle();
    b.elector.start();
    await run(clock, 5_000, [a.elector, b.elector]);

    await a.elector.stop({ release: false });
    expect(lease.stored?.record.holderIdentity).toBe('a');
    const takeover = await timeUntil(clock, () => b.elector.isLeader());
    // b saw a's last renewal at most one retry period before a stopped.
    expect(takeover).toBeGreaterThanOrEqual(TIMING.leaseDurationMs - TIMING.retryPeriodMs * 1.2);
    expect(takeover).toBeLessThanOrEqual(TIMING.leaseDurationMs + TIMING.retryPeriodMs * 1.2 + 100);
    await b.elector.stop();
  });

  it('a leader cut off from the API stops leading at its renew deadline, before the lease can expire', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const a = candidate('a', lease, clock);
    const b = candidate('b', lease, clock);
    a.elector.start();
    await settle();
    b.elector.start();
    await run(clock, 5_000, [a.elector, b.elector]);

    a.lock.down = true;
    const cutAt = clock.now();
    const stepDown = await timeUntil(clock, () => !a.elector.isLeader());
    expect(stepDown).toBeLessThanOrEqual(TIMING.renewDeadlineMs);
    expect(a.signal()?.aborted).toBe(true);
    expect(a.log).toEqual(['started', 'stopped']);

    // b only takes over once the lease expired, well after a stopped.
    await timeUntil(clock, () => b.elector.isLeader());
    expect(clock.now() - cutAt).toBeGreaterThanOrEqual(TIMING.leaseDurationMs - TIMING.retryPeriodMs * 1.2);

    // Back online, a finds the lease held and stays a follower.
    a.lock.down = false;
    await run(clock, 30_000, [a.elector, b.elector]);
    expect(a.elector.isLeader()).toBe(false);
    expect(b.elector.isLeader()).toBe(true);
    await a.elector.stop();
    await b.elector.stop();
  });

  it('waits for the leader work to wind down before releasing the lease', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    let finish: () => void = () => {};
    const elector = new LeaderElector({
      ...TIMING,
      lock: lease.view(),
      identity: 'a',
      clock,
      onStartedLeading: (signal) =>
        new Promise<void>((resolve) => signal.addEventListener('abort', () => (finish = resolve))),
    });
    elector.start();
    await clock.advance(100);
    expect(elector.isLeader()).toBe(true);

    let stopped = false;
    const stopping = elector.stop().then(() => (stopped = true));
    await settle();
    expect(elector.isLeader()).toBe(false);
    expect(lease.stored?.record.holderIdentity).toBe('a'); // the work has not ended yet
    expect(stopped).toBe(false);
    finish();
    await stopping;
    expect(lease.stored?.record.holderIdentity).toBe('');
  });

  it('gives up the lease when the leader work ends on its own, so that another replica can do it', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const stopped: string[] = [];
    const crashing = new LeaderElector({
      ...TIMING,
      lock: lease.view(),
      identity: 'crashing',
      clock,
      random: () => 0,
      onStartedLeading: () => Promise.reject(new Error('informer never synced')),
      onStoppedLeading: () => stopped.push('crashing'),
    });
    crashing.start();
    await clock.advance(100);
    const b = candidate('b', lease, clock);
    b.elector.start();
    const takeover = await timeUntil(clock, () => b.elector.isLeader());
    expect(takeover).toBeLessThanOrEqual(TIMING.retryPeriodMs * 1.2 + 100);
    expect(stopped).toEqual(['crashing']);
    await crashing.stop();
    await b.elector.stop();
  });

  it('refuses timings that could let two replicas lead', () => {
    const lock = new MemoryLease().view();
    const onStartedLeading = () => {};
    expect(
      () => new LeaderElector({ lock, onStartedLeading, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }),
    ).toThrow(/renew deadline must be shorter than the lease duration/);
    expect(
      () => new LeaderElector({ lock, onStartedLeading, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }),
    ).toThrow(/retry period/);
  });
});
