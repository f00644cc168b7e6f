/**
 * How long a failed item waits before its next try (client-go's workqueue rate limiters): per item, an
 * exponential delay that grows with its consecutive failures and resets when it succeeds (`forget`);
 * optionally, for all items together, a token bucket (common/token-bucket.ts) that caps the retry rate, so that a mass failure (the
 * API server down) does not turn into a retry storm when it comes back.
 */
import { backoffDelay } from '../../common/backoff.js';
import type { Clock } from '../../common/clock.js';
import { TokenBucket } from '../../common/token-bucket.js';

export interface RateLimiter {
  /** The delay before `key`'s next try; counts a failure. */
  when(key: string): number;
  /** `key` succeeded: its next failure starts from the shortest delay again. */
  forget(key: string): void;
  /** Consecutive failures counted for `key`. */
  failures(key: string): number;
}

/** baseMs × 2^failures, capped at maxMs (common/backoff.ts). No jitter: items fail independently, and tests stay exact. */
export class ItemExponentialRateLimiter implements RateLimiter {
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly baseMs = 5,
    private readonly maxMs = 300_000,
  ) {}

  when(key: string): number {
    const failures = this.counts.get(key) ?? 0;
    this.counts.set(key, failures + 1);
    return backoffDelay({ initialMs: this.baseMs, maxMs: this.maxMs, factor: 2, jitter: 0 }, failures);
  }

  forget(key: string): void {
    this.counts.delete(key);
  }

  failures(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/**
 * `qps` tries per second with bursts of `burst`. `when` reserves a token, possibly a future one, and returns
 * how long until it is there; it never refuses.
 */
export class TokenBucketRateLimiter implements RateLimiter {
  private readonly bucket: TokenBucket;

  constructor(qps: number, burst: number, clock: Clock) {
    this.bucket = new TokenBucket({ burst, perSecond: qps }, () => clock.now());
  }

  when(): number {
    return this.bucket.reserve();
  }

  forget(): void {}

  failures(): number {
    return 0;
  }
}

/** The longest delay any of the limiters asks for. */
export class MaxOfRateLimiter implements RateLimiter {
  private readonly limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.limiters) l.forget(key);
  }

  failures(key: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.failures(key)));
  }
}
