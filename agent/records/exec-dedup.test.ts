import { ExecDedup } from './exec-dedup.js';

describe('one exec record per program start', () => {
  it('records the first of the runtime hand-off and the kernel event, in either order, and drops its twin', () => {
    const dedup = new ExecDedup();
    expect(dedup.admit('c1', 40, '/bin/echo', 'kernel', 0)).toBe(true);
    expect(dedup.admit('c1', 40, '/bin/echo', 'runtime', 5)).toBe(false);
    expect(dedup.admit('c1', 41, 'cat', 'runtime', 10)).toBe(true);
    expect(dedup.admit('c1', 41, 'cat', 'kernel', 12)).toBe(false);
    expect(dedup.size).toBe(0);
  });

  it('keeps programs that only look alike: other container, other pid, other program, same source', () => {
    const dedup = new ExecDedup();
    expect(dedup.admit('c1', 40, 'sh', 'runtime', 0)).toBe(true);
    expect(dedup.admit('c2', 40, 'sh', 'kernel', 0)).toBe(true);
    expect(dedup.admit('c1', 41, 'sh', 'kernel', 0)).toBe(true);
    expect(dedup.admit('c1', 40, 'ls', 'kernel', 0)).toBe(true);
    // Two kernel execs of one pid (a shell that execs itself again) are two programs.
    expect(dedup.admit('c1', 41, 'sh', 'kernel', 1)).toBe(true);
  });

  it('a twin cancels one claim only: the same pid exec-ing the same program again is recorded', () => {
    const dedup = new ExecDedup();
    expect(dedup.admit('c1', 40, 'sh', 'runtime', 0)).toBe(true);
    expect(dedup.admit('c1', 40, 'sh', 'kernel', 1)).toBe(false); // the hand-off's own program
    expect(dedup.admit('c1', 40, 'sh', 'kernel', 2)).toBe(true); // `exec sh` inside it
  });

  it('forgets claims after their time, so a late twin is recorded rather than lost', () => {
    const dedup = new ExecDedup(1_000);
    expect(dedup.admit('c1', 40, 'cat', 'runtime', 0)).toBe(true);
    expect(dedup.size).toBe(1);
    expect(dedup.admit('c1', 40, 'cat', 'kernel', 1_001)).toBe(true);
    expect(dedup.admit('c9', 1, 'x', 'kernel', 5_000)).toBe(true);
    expect(dedup.size).toBe(1);
  });

  it('keys on a bounded part of the first argument', () => {
    const dedup = new ExecDedup();
    const long = 'a'.repeat(10_000);
    expect(dedup.admit('c1', 40, long, 'runtime', 0)).toBe(true);
    expect(dedup.admit('c1', 40, `${long.slice(0, 256)}cut-elsewhere`, 'kernel', 1)).toBe(false);
  });

  it('holds one claim per exec of the last ttl, however many a container makes (a fork-and-exec flood)', () => {
    const dedup = new ExecDedup(1_000);
    for (let i = 0; i < 200_000; i++)
      dedup.admit('flood', 1000 + (i % 50_000), '/bin/true', 'kernel', i / 10);
    // 10 execs per ms, a 1 s ttl: the last 10,000 are held, no more.
    expect(dedup.size).toBeLessThanOrEqual(10_010);
    expect(dedup.size).toBeGreaterThanOrEqual(9_990);
    // A twin of a recent one is still found; one of an expired one is recorded.
    expect(dedup.admit('flood', 1000 + (199_999 % 50_000), '/bin/true', 'runtime', 19_999.95)).toBe(false);
    expect(dedup.admit('flood', 1000, '/bin/true', 'runtime', 19_999.95)).toBe(true);
  });
});
