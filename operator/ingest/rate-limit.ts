/**
 * Token buckets by key: Events are limited per pod (events-writer.ts), TokenReviews per caller address
 * (auth.ts). `burst` tokens, refilled at `perSecond`. Pure but for the injected clock. Buckets that are full
 * again are forgotten (`sweep`), so the map only holds busy keys.
 */

export interface RateLimit {
  burst: number;
  perSecond: number;
}

export const DEFAULT_EVENT_RATE: RateLimit = { burst: 25, perSecond: 5 };

interface Bucket {
  tokens: number;
  at: number;
}

export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {}

  /** Takes one token for `key`; false when there is none (the caller folds). */
  take(key: string): boolean {
    const t = this.now();
    const b = this.refilled(key, t);
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    return true;
  }

  /** Tokens available now (for tests and metrics). */
  available(key: string): number {
    return this.refilled(key, this.now()).tokens;
  }

  /** Milliseconds until `key` has a token again (0 when it has one now). */
  retryAfterMs(key: string): number {
    const tokens = this.available(key);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / this.limit.perSecond) * 1000);
  }

  /** Forgets buckets that have refilled completely (nothing about them left to remember). */
  sweep(): void {
    const t = this.now();
    for (const key of [...this.buckets.keys()])
      if (this.refilled(key, t).tokens >= this.limit.burst) this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(key: string, t: number): Bucket {
    const b = this.buckets.get(key);
    if (!b) return { tokens: this.limit.burst, at: t };
    const elapsed = Math.max(0, t - b.at) / 1000;
    return { tokens: Math.min(this.limit.burst, b.tokens + elapsed * this.limit.perSecond), at: t };
  }
}
