/**
 * How long a failed item waits before its next try (client-go's workqueue rate limiters): per item, an
 * exponential delay that grows with its consecutive failures and resets when it succeeds (`forget`);
 * optionally, for all items together, a token bucket that caps the retry rate, so that a mass failure (the
 * API server down) does not turn into a retry storm when it comes back.
 */
import type { Clock } from '../../common/clock.js';

export interface RateLimiter {
  /** The delay before `key`'s next try; counts a failure. */
  when(key: string): number;
  /** `key` succeeded: its next failure starts from the shortest delay again. */
  forget(key: string): void;
  /** Consecutive failures counted for `key`. */
  failures(key: string): number;
}

/** baseMs × 2^failures, capped at maxMs. No jitter: items fail independently, and tests stay exact. */
export class ItemExponentialRateLimiter implements RateLimiter {
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly baseMs = 5,
    private readonly maxMs = 300_000,
  ) {}

  when(key: string): number {
    const failures = this.counts.get(key) ?? 0;
    this.counts.set(key, failures + 1);
    return Math.min(this.maxMs, this.baseMs * 2 ** failures);
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
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {
    if (!(qps > 0) || !(burst >= 1)) throw new Error('a token bucket needs qps > 0 and burst >= 1');
    this.tokens = burst;
    this.last = clock.now();
  }

  when(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
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
