import { LineLimiter, TokenBucket } from './line-limits.js';

describe('TokenBucket', () => {
  it('starts full, refills at its rate up to its burst, and may be charged into debt', () => {
    const bucket = new TokenBucket(10, 5, 1000);
    expect(bucket.available(1000)).toBe(5);
    bucket.charge(5, 1000);
    expect(bucket.open(1000)).toBe(false);
    expect(bucket.available(1100)).toBeCloseTo(1); // 0.1 s at 10/s
    expect(bucket.available(60_000)).toBe(5); // never above the burst
    bucket.charge(20, 60_000); // one expensive piece of work: 15 in debt
    expect(bucket.available(60_000)).toBe(-15);
    expect(bucket.open(61_400)).toBe(false); // -1 after 1.4 s
    expect(bucket.open(61_600)).toBe(true); // +1 after 1.6 s
  });

  it('does not go back in time', () => {
    const bucket = new TokenBucket(10, 5, 1000);
    bucket.charge(5, 1000);
    expect(bucket.available(900)).toBe(0);
  });
});

describe('LineLimiter', () => {
  const limits = { linesPerSecond: 10, lineBurst: 20, ruleMsPerSecond: 100, ruleBurstMs: 200 };

  it('admits a burst of lines, then the sustained rate, and counts the rest as drops of that container', () => {
    const limiter = new LineLimiter(limits);
    let admitted = 0;
    // 100 lines at once: the burst.
    for (let i = 0; i < 100; i++) if (!limiter.admit('a', 'line', 0, 5000)) admitted++;
    expect(admitted).toBe(20);
    // Then one second at 100 lines/s: the rate (10 a second).
    for (let t = 10; t <= 1000; t += 10) if (!limiter.admit('a', 'line', t, 5000 + t)) admitted++;
    expect(admitted).toBe(30);
    // Another container is not affected.
    expect(limiter.admit('b', 'line', 1000, 6000)).toBeUndefined();
    const [window, ...others] = limiter.takeDrops();
    expect(others).toEqual([]);
    expect(window).toEqual({
      key: 'a',
      count: 170,
      lines: 170,
      execs: 0,
      byCause: { 'line-rate': 170, 'rule-time': 0, 'kernel-budget': 0 },
      kernelBytes: 0,
      sinceMs: 5000,
      untilMs: 6000,
    });
    expect(limiter.describe(window!)).toBe(
      '170 line(s) and 0 exec(s) of container a not processed: 170 over the line rate (10/s, burst 20)',
    );
    expect(limiter.takeDrops()).toEqual([]); // taken: the next window starts empty
  });

  it("reports lines the kernel dropped over its budget with the container's other drops", () => {
    const limiter = new LineLimiter(limits);
    for (let i = 0; i < 30; i++) limiter.admit('a', 'line', 0, 5000);
    limiter.droppedInKernel('a', 7, 28_000, 10, 5500);
    limiter.droppedInKernel('k', 1, 4096, 10, 5600);
    const [a, k] = limiter.takeDrops();
    expect(a).toMatchObject({
      count: 17,
      lines: 17,
      byCause: { 'line-rate': 10, 'kernel-budget': 7 },
      kernelBytes: 28_000,
      sinceMs: 5000,
      untilMs: 5500,
    });
    expect(limiter.describe(a!)).toBe(
      '17 line(s) and 0 exec(s) of container a not processed: 10 over the line rate (10/s, burst 20); ' +
        "7 (28000 bytes) dropped in the kernel over the container's readline event budget",
    );
    expect(k).toMatchObject({ key: 'k', count: 1, lines: 1, kernelBytes: 4096, sinceMs: 5600 });
    // The bytes tally may come before its lines: reported with them, never as a loss of no line.
    limiter.droppedInKernel('a', 0, 4000, 20, 7000);
    expect(limiter.takeDrops()).toEqual([]);
    limiter.droppedInKernel('a', 1, 0, 30, 7001);
    expect(limiter.takeDrops()).toMatchObject([{ key: 'a', count: 1, kernelBytes: 4000, sinceMs: 7000 }]);
  });

  it('holds a container whose lines cost much rule time to the budget, an expensive line taking it into debt', () => {
    const limiter = new LineLimiter(limits);
    // Lines of 16 ms each, as fast as they come (every 10 ms): the 200 ms burst, then 100 ms a second.
    let admitted = 0;
    for (let t = 0; t < 10_000; t += 10) {
      if (limiter.admit('a', 'line', t, t)) continue;
      admitted++;
      limiter.charge('a', 16, t);
    }
    // 10 s: 200 ms + 10 × 100 ms of rule time, 16 ms a line (the last may overdraw): 75 or 76 lines.
    expect(admitted).toBeGreaterThanOrEqual(75);
    expect(admitted).toBeLessThanOrEqual(76);
    const [window] = limiter.takeDrops();
    expect(window).toMatchObject({ count: 1000 - admitted, byCause: { 'rule-time': 1000 - admitted } });
    // One line of 500 ms (a long crafted line) is done, and then the container waits 3 s (the 300 ms debt
    // plus refilling) before the next.
    const heavy = new LineLimiter(limits);
    expect(heavy.admit('h', 'line', 0, 0)).toBeUndefined();
    heavy.charge('h', 500, 0);
    expect(heavy.admit('h', 'exec', 2900, 2900)).toBe('rule-time');
    expect(heavy.admit('h', 'exec', 3100, 3100)).toBeUndefined();
    expect(heavy.takeDrops()[0]).toMatchObject({ count: 1, lines: 0, execs: 1 });
  });

  it("hands over a forgotten container's drops, and starts it afresh if it comes back", () => {
    const limiter = new LineLimiter({ ...limits, lineBurst: 1 });
    expect(limiter.admit('a', 'line', 0, 0)).toBeUndefined();
    expect(limiter.admit('a', 'line', 0, 7)).toBe('line-rate');
    expect(limiter.forget('a')).toMatchObject({ key: 'a', count: 1, sinceMs: 7, untilMs: 7 });
    expect(limiter.takeDrops()).toEqual([]);
    expect(limiter.admit('a', 'line', 0, 0)).toBeUndefined();
  });
});
