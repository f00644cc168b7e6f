/**
 * Two LeaderElectors on one real Lease: only one leads; a graceful stop hands over fast (long before the
 * lease could expire); a leader that just stops renewing is replaced after the lease duration, never
 * before. Timings are short so the tier stays fast; assertions use generous deadlines, and the one lower
 * bound is the safety property itself.
 */
import { randomBytes } from 'node:crypto';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { testKubeConfig } from '../../e2e/support/cluster.js';
import {
  type KubeLeaderElectionOptions,
  type LeaderElector,
  createLeaderElector,
} from './leader-election.js';

const NAMESPACE = 'default';
const kc = testKubeConfig();
const leases = kc.makeApiClient(CoordinationV1Api);
const electors: LeaderElector[] = [];

async function eventually(what: string, predicate: () => boolean, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Counts replicas leading at once, from their own callbacks; `most` is the worst seen. */
class LeadershipMonitor {
  leading = 0;
  most = 0;

  started(signal: AbortSignal): void {
    this.leading++;
    this.most = Math.max(this.most, this.leading);
    signal.addEventListener('abort', () => this.leading--);
  }
}

function pair(
  timing: Pick<KubeLeaderElectionOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>,
) {
  const name = `leader-${randomBytes(3).toString('hex')}`;
  const monitor = new LeadershipMonitor();
  const make = () => {
    const elector = createLeaderElector(kc, {
      namespace: NAMESPACE,
      name,
      ...timing,
      onStartedLeading: (signal) => monitor.started(signal),
    });
    electors.push(elector);
    return elector;
  };
  const [a, b] = [make(), make()];
  a.start();
  b.start();
  return { name, monitor, a, b };
}

async function holder(name: string): Promise<string | undefined> {
  const lease = await leases.readNamespacedLease({ namespace: NAMESPACE, name });
  return lease.spec?.holderIdentity;
}

afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
});

describe('LeaderElector on a real Lease', () => {
  it('lets one of two replicas lead, and records it in the Lease', async () => {
    const { name, monitor, a, b } = pair({
      leaseDurationMs: 4_000,
      renewDeadlineMs: 2_500,
      retryPeriodMs: 500,
    });
    await eventually('a replica leads', () => a.isLeader() || b.isLeader());
    const leader = a.isLeader() ? a : b;
    // Over several renewals, the leader stays and the other never joins it.
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      expect(Number(a.isLeader()) + Number(b.isLeader())).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(leader.isLeader()).toBe(true);
    expect(monitor.most).toBe(1);
    expect(await holder(name)).toBe(leader.identity);
    const lease = await leases.readNamespacedLease({ namespace: NAMESPACE, name });
    // MicroTime, as the API server stores it (client-node hands it back as a string).
    expect(String(lease.spec?.renewTime)).toMatch(/\.\d{6}Z$/);
  });

  it('hands over quickly when the leader stops gracefully and releases the lease', async () => {
    // A one-minute lease: a takeover within the deadline below can only come from the release.
    const { name, monitor, a, b } = pair({
      leaseDurationMs: 60_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 500,
    });
    await eventually('a replica leads', () => a.isLeader() || b.isLeader());
    const [leader, other] = a.isLeader() ? [a, b] : [b, a];
    await leader.stop();
    expect(leader.isLeader()).toBe(false);
    await eventually('the other replica leads', () => other.isLeader(), 15_000);
    expect(await holder(name)).toBe(other.identity);
    expect(monitor.most).toBe(1);
    const lease = await leases.readNamespacedLease({ namespace: NAMESPACE, name });
    expect(lease.spec?.leaseTransitions).toBe(1);
  });

  it('waits out the lease duration when the leader stops renewing without releasing', async () => {
    const timing = { leaseDurationMs: 4_000, renewDeadlineMs: 2_500, retryPeriodMs: 500 };
    const { name, monitor, a, b } = pair(timing);
    await eventually('a replica leads', () => a.isLeader() || b.isLeader());
    const [leader, other] = a.isLeader() ? [a, b] : [b, a];
    // Let the follower see a few renewals first.
    await new Promise((resolve) => setTimeout(resolve, 1_500));

    const killedAt = Date.now();
    await leader.stop({ release: false });
    expect(await holder(name)).toBe(leader.identity);
    await eventually('the other replica leads', () => other.isLeader(), 20_000);
    const waited = Date.now() - killedAt;
    // The follower saw the last renewal at most one (jittered) retry period before the leader stopped.
    expect(waited).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.retryPeriodMs * 1.2);
    expect(await holder(name)).toBe(other.identity);
    expect(monitor.most).toBe(1);
  });
});
