import { KeyedTokenBuckets, TokenBucket } from './token-bucket.js';

describe('KeyedTokenBuckets', () => {
  it('allows a burst, then refills at the rate, per key', () => {
    let t = 0;
    const buckets = new KeyedTokenBuckets({ burst: 3, perSecond: 2 }, () => t);
    expect([1, 2, 3, 4].map(() => buckets.take('a'))).toEqual([true, true, true, false]);
    expect(buckets.take('b')).toBe(true);
    t += 499;
    expect(buckets.take('a')).toBe(false);
    t += 1;
    expect(buckets.take('a')).toBe(true);
    expect(buckets.take('a')).toBe(false);
    t += 10_000;
    expect(buckets.available('a')).toBe(3);
  });

  it('forgets buckets that are full again', () => {
    let t = 0;
    const buckets = new KeyedTokenBuckets({ burst: 2, perSecond: 1 }, () => t);
    buckets.take('a');
    buckets.take('b');
    buckets.take('b');
    t += 1000;
    buckets.sweep();
    expect(buckets.size).toBe(1);
    t += 1000;
    buckets.sweep();
    expect(buckets.size).toBe(0);
  });

  it('tells how long until a key has a token again', () => {
    let t = 0;
    const buckets = new KeyedTokenBuckets({ burst: 1, perSecond: 2 }, () => t);
    expect(buckets.retryAfterMs('a')).toBe(0);
    buckets.take('a');
    expect(buckets.retryAfterMs('a')).toBe(500);
    t += 200;
    expect(buckets.retryAfterMs('a')).toBe(300);
    t += 300;
    expect(buckets.retryAfterMs('a')).toBe(0);
  });
});

describe('TokenBucket', () => {
  it('reserves future tokens and says how long until each is there', () => {
    let t = 0;
    const bucket = new TokenBucket({ burst: 2, perSecond: 2 }, () => t);
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([
      0, 0, 500, 1000,
    ]);
    t += 1000;
    expect(bucket.reserve()).toBe(500);
  });

  it('refuses to take from an empty bucket, taking nothing', () => {
    let t = 0;
    const bucket = new TokenBucket({ burst: 1, perSecond: 1 }, () => t);
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
    expect(bucket.retryAfterMs()).toBe(1000);
    t += 1000;
    expect(bucket.take()).toBe(true);
  });

  it('refuses a limit that could never give a token', () => {
    expect(() => new TokenBucket({ burst: 0, perSecond: 1 }, () => 0)).toThrow();
    expect(() => new TokenBucket({ burst: 1, perSecond: 0 }, () => 0)).toThrow();
  });
});
