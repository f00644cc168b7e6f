/**
 * Leader election on a Lease, as client-go does it. Ours because client-node (2.x) has none; the rules are
 * client-go's, tested on a fake clock.
 *
 * Every candidate reads the lease each retry period. A lease held by another is left alone until it has not
 * changed for its lease duration, measured on our own clock from when we saw it change (never from its
 * renewTime: the holder's clock may be off). A free (released), expired or absent lease is taken by a write
 * conditioned on the resourceVersion read, so of two candidates at most one succeeds. The leader renews each
 * retry period; if no renewal has succeeded for the renew deadline (shorter than the lease duration), it
 * stops leading before anyone else may start.
 *
 * A graceful `stop` aborts the leader's work, waits for it to wind down, then releases the lease (empty
 * holder) so that another replica takes over at its next retry instead of after the lease duration.
 * `stop({ release: false })` just stops renewing, as a crash would.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { describeError } from '../../common/kube/errors.js';
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { type Clock, realClock, sleep } from '../../common/clock.js';
import { KubeLeaseLock, type LeaseLock, type LeaseRecord, type LeaseSnapshot } from './lease-lock.js';
import type { Gauge, MetricsRegistry } from './metrics.js';

export interface LeaderElectionOptions {
  lock: LeaseLock;
  /** Defaults to hostname_pid_random: unique even for two processes in one pod. */
  identity?: string;
  /** How long a lease stays valid without renewal (default 15 s). */
  leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up leading (default 10 s). */
  renewDeadlineMs?: number;
  /** How often candidates try to acquire and the leader renews (default 2 s). */
  retryPeriodMs?: number;
  /**
   * Called on becoming leader. `signal` aborts when leadership ends. The returned promise, if any, stands
   * for the work: it should settle once the work has stopped after the abort (a graceful stop waits for it
   * before releasing the lease), and if it settles while still leading, the work has ended on its own: the
   * lease is released for another replica (or this one, later) to lead.
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Called after leading ends (lost, or stopped and released). */
  onStoppedLeading?: () => void;
  /** Called when the lease is seen with a new holder ('' when released). */
  onNewLeader?: (identity: string) => void;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
  metrics?: MetricsRegistry;
}

/** Candidates spread their attempts over [retry, 1.2 × retry] so that they do not collide each time. */
const RETRY_JITTER = 0.2;

export function defaultIdentity(): string {
  return `${hostname()}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

type Attempt = 'acquired' | 'held-by-other' | 'failed';

export class LeaderElector {
  readonly identity: string;
  private readonly lock: LeaseLock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly stopping = new AbortController();
  private release = true;
  private leading = false;
  private running: Promise<void> | undefined;
  /** The lease as last seen, and when (our clock) it was last seen to change. */
  private observed: LeaseSnapshot | undefined;
  private observedAt = 0;
  private readonly leaderGauge?: Gauge;

  constructor(private readonly options: LeaderElectionOptions) {
    this.lock = options.lock;
    this.identity = options.identity ?? defaultIdentity();
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!(this.retryPeriodMs * (1 + RETRY_JITTER) < this.renewDeadlineMs)) {
      throw new Error(
        'leader election: the retry period (with jitter) must be shorter than the renew deadline',
      );
    }
    if (!(this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new Error('leader election: the renew deadline must be shorter than the lease duration');
    }
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.logger = (options.logger ?? silentLogger()).child({
      [LogField.lease]: this.lock.description,
      [LogField.identity]: this.identity,
    });
    this.leaderGauge = options.metrics?.gauge(
      'container_auditor_leader',
      'Whether this replica holds the leader lease.',
      ['lease'],
    );
    this.leaderGauge?.labels({ lease: this.lock.description }).set(0);
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (this.running || this.stopping.signal.aborted) return;
    this.running = this.run();
  }

  /**
   * Stops campaigning. A leader stops leading: its work is aborted and awaited, then, unless `release` is
   * false, the lease is released.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.release = options.release ?? true;
    this.stopping.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      if (!(await this.acquire())) break;
      const ended = await this.lead();
      // Not straight back: after a loss, the lease is another's for now; after the work ended on its own,
      // a healthy replica should get the lease first, and a crashing one must not hammer the API.
      const pause = ended === 'lost' ? this.retryPeriodMs : ended === 'work-ended' ? this.leaseDurationMs : 0;
      await sleep(this.clock, pause, this.stopping.signal);
    }
  }

  /** Tries every retry period (jittered) until the lease is ours; false if stopped first. */
  private async acquire(): Promise<boolean> {
    while (!this.stopping.signal.aborted) {
      if ((await this.tryAcquireOrRenew()) === 'acquired') {
        if (!this.stopping.signal.aborted) return true;
        // Stopped while the write was on its way: hand back what we just took.
        if (this.release) await this.releaseLease();
        return false;
      }
      const wait = this.retryPeriodMs * (1 + RETRY_JITTER * this.random());
      await sleep(this.clock, wait, this.stopping.signal);
    }
    return false;
  }

  private async lead(): Promise<'stopped' | 'lost' | 'work-ended'> {
    this.leading = true;
    this.leaderGauge?.labels({ lease: this.lock.description }).set(1);
    this.logger.info('Started leading');
    const work = new AbortController();
    const workEnded = new AbortController();
    let started: void | Promise<void>;
    try {
      started = this.options.onStartedLeading(work.signal);
    } catch (error) {
      started = Promise.reject(error instanceof Error ? error : new Error(describeError(error)));
    }
    const finished = Promise.resolve(started).catch((error: unknown) =>
      this.logger.error('Leader work failed', { [LogField.error]: describeError(error) }),
    );
    // Work that ends on its own (it crashed) must not leave a leader that does nothing holding the lease.
    if (started instanceof Promise) void finished.then(() => workEnded.abort());
    const wake = AbortSignal.any([this.stopping.signal, workEnded.signal]);

    let lastRenewal = this.clock.now();
    let lost: string | undefined;
    while (!wake.aborted) {
      // Wake at the next retry, or at the deadline if that comes first: leadership must end on time.
      const deadline = lastRenewal + this.renewDeadlineMs;
      await sleep(this.clock, Math.min(this.retryPeriodMs, deadline - this.clock.now()), wake);
      if (wake.aborted) break;
      const attemptAt = this.clock.now();
      const remaining = deadline - attemptAt;
      if (remaining <= 0) {
        lost = `no renewal for ${this.renewDeadlineMs} ms`;
        break;
      }
      const outcome = await this.withTimeout(this.tryAcquireOrRenew(), remaining);
      if (outcome === 'acquired') lastRenewal = attemptAt;
      else if (outcome === 'held-by-other') {
        lost = `the lease is held by ${this.observed?.record.holderIdentity}`;
        break;
      }
    }

    this.leading = false;
    this.leaderGauge?.labels({ lease: this.lock.description }).set(0);
    work.abort();
    if (lost === undefined) {
      // Stopped, or the work ended: let the work finish before anyone else may start, then hand over.
      const byStop = this.stopping.signal.aborted;
      await finished;
      const release = byStop ? this.release : true;
      if (release) await this.releaseLease();
      const reason = byStop ? 'stopped' : 'the leader work ended';
      this.logger.info('Stopped leading', { [LogField.reason]: release ? `${reason}, released` : reason });
      this.notify('onStoppedLeading', () => this.options.onStoppedLeading?.());
      return byStop ? 'stopped' : 'work-ended';
    }
    // Told at once (the lease may be another's within moments); campaigning again waits for the work to
    // end, so that one process never runs two generations of it side by side.
    this.logger.warn('Lost leadership', { [LogField.reason]: lost });
    this.notify('onStoppedLeading', () => this.options.onStoppedLeading?.());
    await finished;
    return 'lost';
  }

  /** A callback that throws is logged: it must not end the election loop. */
  private notify(name: string, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.logger.error('Leader election callback failed', {
        [LogField.detail]: name,
        [LogField.error]: describeError(error),
      });
    }
  }

  /** `attempt`, or 'failed' if it has not settled within `ms` (it is then left to finish unheeded). */
  private async withTimeout(attempt: Promise<Attempt>, ms: number): Promise<Attempt> {
    let timer: { cancel(): void } | undefined;
    const timeout = new Promise<Attempt>(
      (resolve) => (timer = this.clock.setTimer(() => resolve('failed'), ms)),
    );
    try {
      return await Promise.race([attempt, timeout]);
    } finally {
      timer?.cancel();
    }
  }

  private observe(snapshot: LeaseSnapshot, now: number): void {
    if (snapshot.resourceVersion === this.observed?.resourceVersion) return;
    const previousHolder = this.observed?.record.holderIdentity;
    this.observed = snapshot;
    this.observedAt = now;
    const holder = snapshot.record.holderIdentity;
    if (holder !== previousHolder) {
      if (holder !== this.identity) this.logger.info('New leader observed', { [LogField.holder]: holder });
      this.notify('onNewLeader', () => this.options.onNewLeader?.(holder));
    }
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
    const now = this.clock.now();
    const leaseDurationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    try {
      const current = await this.lock.get();
      if (!current) {
        const created = await this.lock.create({
          holderIdentity: this.identity,
          leaseDurationSeconds,
          acquireTime: new Date(now),
          renewTime: new Date(now),
          leaseTransitions: 0,
        });
        this.observe(created, now);
        return 'acquired';
      }
      this.observe(current, now);
      const held = current.record;
      const ours = held.holderIdentity === this.identity;
      if (!ours && held.holderIdentity !== '') {
        const durationMs = (held.leaseDurationSeconds || leaseDurationSeconds) * 1000;
        if (this.observedAt + durationMs > now) return 'held-by-other';
      }
      const next: LeaseRecord = {
        holderIdentity: this.identity,
        leaseDurationSeconds,
        acquireTime: ours ? held.acquireTime : new Date(now),
        renewTime: new Date(now),
        leaseTransitions: ours ? held.leaseTransitions : held.leaseTransitions + 1,
      };
      this.observe(await this.lock.update(next, current.resourceVersion), now);
      return 'acquired';
    } catch (error) {
      // Conflict or AlreadyExists: another replica wrote first. Anything else: the API is unreachable.
      this.logger.debug('Lease not acquired', { [LogField.error]: describeError(error) });
      return 'failed';
    }
  }

  private async releaseLease(): Promise<void> {
    try {
      const current = await this.lock.get();
      if (!current || current.record.holderIdentity !== this.identity) return;
      const now = new Date(this.clock.now());
      await this.lock.update(
        {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: current.record.leaseTransitions,
        },
        current.resourceVersion,
      );
    } catch (error) {
      // The lease then expires by itself; the next leader only waits longer.
      this.logger.warn('Could not release the lease', { [LogField.error]: describeError(error) });
    }
  }
}

export interface KubeLeaderElectionOptions extends Omit<LeaderElectionOptions, 'lock'> {
  namespace: string;
  name: string;
}

/** A LeaderElector on the Lease `namespace/name` (created on first acquisition), not yet started. */
export function createLeaderElector(kc: KubeConfig, options: KubeLeaderElectionOptions): LeaderElector {
  const { namespace, name, ...rest } = options;
  return new LeaderElector({ ...rest, lock: new KubeLeaseLock(kc, namespace, name) });
}
