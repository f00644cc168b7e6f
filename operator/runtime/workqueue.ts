/**
 * A de-duplicating work queue keyed by object (client-go's workqueue): reconcilers are level-triggered, so
 * ten changes to one policy while it waits are one reconcile, not ten. Ours because client-node has no work
 * queue (its informers call handlers per event), and a FIFO of events is what STYLE.md asks us to avoid.
 *
 * - A key queued twice is queued once (`dirty`).
 * - A key being processed is never handed out again until `done`; if it was added meanwhile, `done` queues
 *   it again, so the change is seen by a later run, never by a concurrent one.
 * - `addAfter` holds a key back (the earliest of several requests wins); `addRateLimited` does so by the
 *   rate limiter's delay for that key (per-item exponential backoff, optionally capped by a global bucket);
 *   `forget` resets that key's backoff after a success.
 * - `shutdown` refuses new keys, drops the held-back ones, hands out what is queued and resolves once the
 *   queue is empty and nothing is being processed.
 */
import { LogField, type Logger } from '../../common/logging.js';
import { describeError } from '../../common/kube/errors.js';
import { type Clock, type Timer, realClock } from '../../common/clock.js';
import type { Counter, Gauge, MetricsRegistry } from './metrics.js';
import { ItemExponentialRateLimiter, type RateLimiter } from './rate-limiter.js';

export interface WorkQueueOptions {
  /** Names the queue in logs and metrics. */
  name: string;
  clock?: Clock;
  /** Defaults to per-item exponential backoff from 5 ms to 5 min. */
  rateLimiter?: RateLimiter;
  metrics?: MetricsRegistry;
}

export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly rateLimiter: RateLimiter;
  /** Keys waiting to be handed out, in order. Each is also in `dirty`. */
  private readonly queue: string[] = [];
  /** Keys that need processing: queued, or added again while being processed. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { at: number; timer: Timer }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;
  private drained: (() => void)[] = [];
  private readonly depthGauge?: Gauge;
  private readonly addsCounter?: Counter;
  private readonly retriesCounter?: Counter;

  constructor(options: WorkQueueOptions) {
    this.name = options.name;
    this.clock = options.clock ?? realClock;
    this.rateLimiter = options.rateLimiter ?? new ItemExponentialRateLimiter();
    const m = options.metrics;
    this.depthGauge = m?.gauge('container_auditor_workqueue_depth', 'Keys waiting in the work queue.', [
      'name',
    ]);
    this.addsCounter = m?.counter('container_auditor_workqueue_adds_total', 'Keys added to the work queue.', [
      'name',
    ]);
    this.retriesCounter = m?.counter(
      'container_auditor_workqueue_retries_total',
      'Keys put back in the work queue after a failure.',
      ['name'],
    );
    this.depthGauge?.labels({ name: this.name }).set(0);
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    this.addsCounter?.labels({ name: this.name }).inc();
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    // Queued again by `done`, after the run in progress.
    if (this.processing.has(key)) return;
    this.queue.push(key);
    this.changed();
    this.handOut();
  }

  /** Adds `key` after `ms`; a key already held back keeps the earlier of the two times. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const held = this.delayed.get(key);
    if (held && held.at <= at) return;
    held?.timer.cancel();
    const timer = this.clock.setTimer(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, timer });
  }

  /** Adds `key` after its backoff: call when processing it failed. */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.retriesCounter?.labels({ name: this.name }).inc();
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** `key` succeeded: its backoff starts over. Does not remove it from the queue. */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  /** Consecutive failures of `key` since it was last forgotten. */
  numRequeues(key: string): number {
    return this.rateLimiter.failures(key);
  }

  /** The next key to process, once there is one; undefined once the queue is shut down and drained. */
  get(): Promise<string | undefined> {
    const key = this.take();
    if (key !== undefined) return Promise.resolve(key);
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Processing `key` ended (either way). Must follow every `get` that returned a key. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    if (this.dirty.has(key)) {
      this.queue.push(key);
      this.changed();
      this.handOut();
    }
    this.checkDrained();
  }

  /** Keys waiting to be handed out. */
  len(): number {
    return this.queue.length;
  }

  /** Keys held back by `addAfter`/`addRateLimited`. */
  delayedCount(): number {
    return this.delayed.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) timer.cancel();
    this.delayed.clear();
    const done = new Promise<void>((resolve) => this.drained.push(resolve));
    this.handOut();
    this.checkDrained();
    return done;
  }

  private take(): string | undefined {
    const key = this.queue.shift();
    if (key === undefined) return undefined;
    this.dirty.delete(key);
    this.processing.add(key);
    this.changed();
    return key;
  }

  private handOut(): void {
    while (this.waiters.length > 0) {
      const key = this.take();
      if (key === undefined && !this.shuttingDown) return;
      this.waiters.shift()!(key);
    }
  }

  private checkDrained(): void {
    if (!this.shuttingDown || this.queue.length > 0 || this.processing.size > 0) return;
    const waiting = this.drained;
    this.drained = [];
    for (const resolve of waiting) resolve();
  }

  private changed(): void {
    this.depthGauge?.labels({ name: this.name }).set(this.queue.length);
  }
}

/** Thrown by a handler for a failure that retrying cannot fix: the key is dropped, not retried. */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
}

/** What a handler may ask for after a success: to be run again later (e.g. to expire something). */
export type WorkResult = void | { requeueAfterMs: number };

export type WorkHandler = (key: string) => WorkResult | Promise<WorkResult>;

/**
 * Runs `count` workers over the queue until it is shut down and drained. A handler that resolves has its
 * key's backoff forgotten; one that throws has its key retried with backoff, unless it threw a
 * TerminalError.
 */
export async function runWorkers(
  queue: WorkQueue,
  count: number,
  handler: WorkHandler,
  logger?: Logger,
): Promise<void> {
  const worker = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        const result = await handler(key);
        queue.forget(key);
        if (result && result.requeueAfterMs >= 0) queue.addAfter(key, result.requeueAfterMs);
      } catch (error) {
        if (error instanceof TerminalError) {
          queue.forget(key);
          logger?.error('Work item failed for good, not retrying', {
            [LogField.queue]: queue.name,
            [LogField.key]: key,
            [LogField.error]: error.message,
          });
        } else {
          logger?.warn('Work item failed, retrying with backoff', {
            [LogField.queue]: queue.name,
            [LogField.key]: key,
            [LogField.count]: queue.numRequeues(key) + 1,
            [LogField.error]: describeError(error),
          });
          queue.addRateLimited(key);
        }
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: count }, worker));
}
