import { FileFactsCache, OverBudget, ResolveBudget } from './resolve-budget.js';

describe('ResolveBudget', () => {
  const limits = { deadlineMs: 100, maxFiles: 3, maxBytes: 1000, maxLookups: 5 };

  it('ends a resolution at the first limit reached, saying which', () => {
    const files = new ResolveBudget(limits, () => 0);
    for (let i = 0; i < 3; i++) files.file();
    expect(() => files.file()).toThrow(new OverBudget('opened more than 3 files (limit per resolution)'));

    const bytes = new ResolveBudget(limits, () => 0);
    bytes.bytes(600);
    // Refused before it is read: 64 MiB is never read to find out it is over.
    expect(() => bytes.bytes(600)).toThrow(/would read more than 1000 bytes .*600 read/);
    expect(bytes.spent.bytes).toBe(600);

    const lookups = new ResolveBudget(limits, () => 0);
    lookups.lookup(5);
    expect(() => lookups.lookup()).toThrow(/looked up more than 5 paths/);
  });

  it('ends a resolution past its deadline, on whatever it does next', () => {
    let now = 1000;
    const budget = new ResolveBudget(limits, () => now);
    budget.lookup();
    now = 1100;
    budget.file(); // at the deadline: still in time
    now = 1101;
    expect(() => budget.lookup()).toThrow(/took longer than 100 ms/);
    expect(() => budget.checkTime()).toThrow(OverBudget);
  });
});

describe('FileFactsCache', () => {
  const id = (ino: bigint, mtimeNs = 1n) => ({ dev: 1n, ino, size: 10n, mtimeNs, ctimeNs: 1n });

  it('knows a file by its inode and what changes with its content', () => {
    const cache = new FileFactsCache<string>();
    cache.set(id(1n), 'bash');
    expect(cache.get(id(1n))).toBe('bash');
    expect(cache.get(id(1n, 2n))).toBeUndefined(); // rewritten in place: not the same facts
    expect(cache.get(id(2n))).toBeUndefined();
    expect(cache.stats).toEqual({ hits: 1, misses: 2 });
  });

  it('keeps at most its bound, the least recently used going first', () => {
    const cache = new FileFactsCache<number>(2);
    cache.set(id(1n), 1);
    cache.set(id(2n), 2);
    cache.get(id(1n));
    cache.set(id(3n), 3);
    expect(cache.size).toBe(2);
    expect(cache.get(id(2n))).toBeUndefined();
    expect(cache.get(id(1n))).toBe(1);
    expect(cache.get(id(3n))).toBe(3);
  });
});
