import { Backoff, backoffDelay } from './backoff.js';

describe('backoffDelay', () => {
  const policy = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };

  it('grows by the factor up to its ceiling, stretched by up to the jitter', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect([0, 1, 4].map((n) => backoffDelay(policy, n, () => 1))).toEqual([150, 300, 1500]);
  });

  it('stays finite for any attempt', () => {
    expect(backoffDelay(policy, 10_000, () => 0)).toBe(1000);
  });
});

describe('Backoff', () => {
  it('counts failures in a row and starts over on reset', () => {
    // jitter 1: each delay drawn from [d, 2 d] (the agent's retries of the operator).
    const low = new Backoff({ initialMs: 50, maxMs: 500, factor: 2, jitter: 1 }, () => 0);
    expect([low.next(), low.next(), low.next(), low.next(), low.next(), low.next()]).toEqual([
      50, 100, 200, 400, 500, 500,
    ]);
    expect(low.attempts).toBe(6);
    low.reset();
    expect(low.attempts).toBe(0);
    expect(low.next()).toBe(50);
    const high = new Backoff({ initialMs: 50, maxMs: 500, factor: 2, jitter: 1 }, () => 1);
    expect([high.next(), high.next()]).toEqual([100, 200]);
  });
});
