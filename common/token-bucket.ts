/**
 * Token buckets: `burst` tokens, refilled at `perSecond`. The one implementation of the product: the
 * operator limits Events per pod and TokenReviews per caller address with keyed buckets (`take` refuses when
 * empty), and caps its work queue's retry rate with one bucket whose `reserve` never refuses but says how
 * long until the reserved token is there (client-go's BucketRateLimiter). Pure but for the injected clock.
 */

export interface RateLimit {
  burst: number;
  perSecond: number;
}

interface BucketState {
  tokens: number;
  /** When `tokens` was computed (ms). */
  at: number;
}

function refilled(state: BucketState, limit: RateLimit, t: number): BucketState {
  const elapsed = Math.max(0, t - state.at) / 1000;
  return { tokens: Math.min(limit.burst, state.tokens + elapsed * limit.perSecond), at: t };
}

/** Milliseconds until `tokens` reaches 1 (0 when it is there). */
function untilOne(tokens: number, limit: RateLimit): number {
  return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / limit.perSecond) * 1000);
}

export class TokenBucket {
  private state: BucketState;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1))
      throw new Error('a token bucket needs perSecond > 0 and burst >= 1');
    this.state = { tokens: limit.burst, at: now() };
  }

  /** Takes a token; false (and nothing taken) when there is none. */
  take(): boolean {
    this.state = refilled(this.state, this.limit, this.now());
    if (this.state.tokens < 1) return false;
    this.state.tokens -= 1;
    return true;
  }

  /**
   * Reserves the next token, possibly one still to come (the bucket goes below zero), and returns how long
   * until it is there: 0 when one was available.
   */
  reserve(): number {
    this.state = refilled(this.state, this.limit, this.now());
    this.state.tokens -= 1;
    return this.state.tokens >= 0 ? 0 : Math.ceil((-this.state.tokens / this.limit.perSecond) * 1000);
  }

  /** Tokens available now. */
  available(): number {
    return refilled(this.state, this.limit, this.now()).tokens;
  }

  /** Milliseconds until a token is there (0 when there is one now). */
  retryAfterMs(): number {
    return untilOne(this.available(), this.limit);
  }
}

/** A bucket per key. Buckets full again are forgotten (`sweep`), so only busy keys are held. */
export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {}

  /** Takes one token for `key`; false when there is none (the caller folds or refuses). */
  take(key: string): boolean {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = new TokenBucket(this.limit, this.now);
      this.buckets.set(key, bucket);
    }
    return bucket.take();
  }

  /** Tokens available now (for tests and metrics). */
  available(key: string): number {
    return this.buckets.get(key)?.available() ?? this.limit.burst;
  }

  /** Milliseconds until `key` has a token again (0 when it has one now). */
  retryAfterMs(key: string): number {
    return this.buckets.get(key)?.retryAfterMs() ?? 0;
  }

  /** Forgets buckets that have refilled completely (nothing about them left to remember). */
  sweep(): void {
    for (const [key, bucket] of [...this.buckets])
      if (bucket.available() >= this.limit.burst) this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }
}
