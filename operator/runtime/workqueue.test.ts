import { FakeClock, settle } from '../../test-support/fake-clock.js';
import { MetricsRegistry } from './metrics.js';
import { ItemExponentialRateLimiter, MaxOfRateLimiter, TokenBucketRateLimiter } from './rate-limiter.js';
import { TerminalError, WorkQueue, runWorkers } from './workqueue.js';

function queue(clock = new FakeClock(), baseMs = 10, maxMs = 1_000) {
  return new WorkQueue({ name: 'test', clock, rateLimiter: new ItemExponentialRateLimiter(baseMs, maxMs) });
}

/** The keys a queue hands out without waiting, each marked done. */
async function drainNow(q: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (q.len() > 0) {
    const key = (await q.get())!;
    keys.push(key);
    q.done(key);
  }
  return keys;
}

describe('WorkQueue', () => {
  it('hands out keys in order, each once however often it was added', async () => {
    const q = queue();
    for (const key of ['a', 'b', 'a', 'c', 'b', 'a']) q.add(key);
    expect(q.len()).toBe(3);
    expect(await drainNow(q)).toEqual(['a', 'b', 'c']);
  });

  it('does not hand out a key while it is processed; one re-added meanwhile comes back after done', async () => {
    const q = queue();
    q.add('a');
    const first = await q.get();
    expect(first).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.len()).toBe(0);

    let second: string | undefined;
    void q.get().then((key) => (second = key));
    await settle();
    expect(second).toBeUndefined();

    q.done('a');
    await settle();
    expect(second).toBe('a');
    q.done('a');
    expect(q.len()).toBe(0);
  });

  it('wakes a waiting getter when a key arrives', async () => {
    const q = queue();
    const got = q.get();
    q.add('x');
    expect(await got).toBe('x');
  });

  it('addAfter holds a key back until its time; the earlier of two requests wins', async () => {
    const clock = new FakeClock();
    const q = queue(clock);
    q.addAfter('a', 100);
    q.addAfter('a', 50);
    q.addAfter('a', 200);
    q.addAfter('b', 0);
    expect(await drainNow(q)).toEqual(['b']);
    await clock.advance(49);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(await drainNow(q)).toEqual(['a']);
    await clock.advance(1_000);
    expect(q.len()).toBe(0);
    expect(q.delayedCount()).toBe(0);
  });

  it('addRateLimited backs off exponentially per key, up to the cap; forget starts over', async () => {
    const clock = new FakeClock();
    const q = queue(clock, 10, 50);
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = clock.now();
      q.addRateLimited('a');
      while (q.len() === 0) await clock.advance(1);
      delays.push(clock.now() - start);
      await drainNow(q);
    }
    expect(delays).toEqual([10, 20, 40, 50, 50]);
    expect(q.numRequeues('a')).toBe(5);
    expect(q.numRequeues('b')).toBe(0);

    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
    q.addRateLimited('a');
    await clock.advance(9);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(1);
  });

  it('shutdown refuses new keys, drops held-back ones, drains the rest and then returns undefined', async () => {
    const clock = new FakeClock();
    const q = queue(clock);
    q.add('a');
    q.add('b');
    q.addAfter('later', 10);
    const a = await q.get();

    let drained = false;
    const shutdown = q.shutdown().then(() => (drained = true));
    q.add('c');
    await clock.advance(100);
    expect(q.len()).toBe(1);

    expect(await q.get()).toBe('b');
    q.done('b');
    await settle();
    expect(drained).toBe(false); // 'a' is still being processed
    q.done(a!);
    await shutdown;
    expect(drained).toBe(true);
    expect(await q.get()).toBeUndefined();
  });

  it('shutdown lets a key re-added during its processing run again before it resolves', async () => {
    const q = queue();
    q.add('a');
    const a = await q.get();
    q.add('a');
    const shutdown = q.shutdown();
    q.done(a!);
    expect(await q.get()).toBe('a');
    q.done('a');
    await shutdown;
  });

  it('reports depth, adds and retries as metrics', async () => {
    const registry = new MetricsRegistry();
    const clock = new FakeClock();
    const q = new WorkQueue({ name: 'policies', clock, metrics: registry });
    q.add('a');
    q.add('a');
    q.add('b');
    expect(await registry.metrics()).toContain('container_auditor_workqueue_depth{name="policies"} 2\n');
    expect(await registry.metrics()).toContain('container_auditor_workqueue_adds_total{name="policies"} 3\n');
    await drainNow(q);
    q.addRateLimited('a');
    expect(await registry.metrics()).toContain('container_auditor_workqueue_depth{name="policies"} 0\n');
    expect(await registry.metrics()).toContain(
      'container_auditor_workqueue_retries_total{name="policies"} 1\n',
    );
  });
});

describe('rate limiters', () => {
  it('a token bucket lets a burst through, then spaces tries at its rate', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucketRateLimiter(2, 3, clock);
    expect([1, 2, 3, 4, 5].map(() => bucket.when())).toEqual([0, 0, 0, 500, 1000]);
    await clock.advance(10_000);
    expect(bucket.when()).toBe(0);
  });

  it('the combined limiter takes the longer delay, and forget resets the per-item part', () => {
    const clock = new FakeClock();
    const limiter = new MaxOfRateLimiter(
      new ItemExponentialRateLimiter(100, 10_000),
      new TokenBucketRateLimiter(1, 1, clock),
    );
    expect(limiter.when('a')).toBe(100);
    expect(limiter.when('b')).toBe(1000); // the bucket is empty
    expect(limiter.when('a')).toBe(2000);
    limiter.forget('a');
    expect(limiter.failures('a')).toBe(0);
  });
});

describe('runWorkers', () => {
  it('never runs one key concurrently with itself, and runs a key changed during its run again', async () => {
    const q = queue();
    const running = new Set<string>();
    const runs: string[] = [];
    let overlap = false;
    const releases: (() => void)[] = [];

    const workers = runWorkers(q, 3, async (key) => {
      if (running.has(key)) overlap = true;
      running.add(key);
      runs.push(key);
      await new Promise<void>((resolve) => releases.push(resolve));
      running.delete(key);
    });

    q.add('a');
    q.add('b');
    await settle();
    expect(runs).toEqual(['a', 'b']);
    q.add('a'); // changed while processed
    await settle();
    expect(runs).toEqual(['a', 'b']); // a free worker does not take it

    releases.shift()!(); // first run of a ends
    await settle();
    expect(runs).toEqual(['a', 'b', 'a']);

    const shutdown = q.shutdown();
    while (releases.length > 0) {
      releases.shift()!();
      await settle();
    }
    await shutdown;
    await workers;
    expect(overlap).toBe(false);
  });

  it('retries a failing key with backoff until it succeeds, then forgets its failures', async () => {
    const clock = new FakeClock();
    const q = queue(clock, 100, 10_000);
    const attempts: number[] = [];
    const workers = runWorkers(q, 1, () => {
      attempts.push(clock.now());
      if (attempts.length < 3) throw new Error('API unreachable');
    });
    q.add('a');
    await clock.advance(1_000);
    expect(attempts.map((t) => t - attempts[0]!)).toEqual([0, 100, 300]);
    expect(q.numRequeues('a')).toBe(0);
    await q.shutdown();
    await workers;
  });

  it('drops a key that failed with a TerminalError', async () => {
    const clock = new FakeClock();
    const q = queue(clock);
    let attempts = 0;
    const workers = runWorkers(q, 1, () => {
      attempts++;
      throw new TerminalError('the policy can never be valid');
    });
    q.add('a');
    await clock.advance(60_000);
    expect(attempts).toBe(1);
    expect(q.delayedCount()).toBe(0);
    await q.shutdown();
    await workers;
  });

  it('runs a key again after the delay its handler asks for', async () => {
    const clock = new FakeClock();
    const q = queue(clock);
    const runs: number[] = [];
    const workers = runWorkers(q, 1, () => {
      runs.push(clock.now());
      return runs.length === 1 ? { requeueAfterMs: 5_000 } : undefined;
    });
    q.add('a');
    await clock.advance(4_999);
    expect(runs).toHaveLength(1);
    await clock.advance(1);
    expect(runs).toHaveLength(2);
    await q.shutdown();
    await workers;
  });
});
