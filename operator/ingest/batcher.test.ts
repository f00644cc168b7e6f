import { KeyedBatcher } from './batcher.js';
import { settle, TEST_START } from './testdata/fakes.js';
import { FakeClock } from '../../test-support/fake-clock.js';

function setup(windowMs = 500, maxItems = 3) {
  const clock = new FakeClock(TEST_START);
  const flushed: { key: string; items: number[]; at: number }[] = [];
  let gate: Promise<void> = Promise.resolve();
  const batcher = new KeyedBatcher<number, string>({
    windowMs,
    maxItems,
    clock,
    flush: async (key, items) => {
      flushed.push({ key, items, at: clock.now() });
      await gate;
      return items.map((i) => `done ${i}`);
    },
  });
  return {
    clock,
    flushed,
    batcher,
    hold: (p: Promise<void>): void => {
      gate = p;
    },
  };
}

describe('KeyedBatcher', () => {
  it('collects items of a key for the window and flushes them together', async () => {
    const { clock, flushed, batcher } = setup();
    const start = clock.now();
    const a = batcher.add('k', 1);
    await clock.advance(200);
    const b = batcher.add('k', 2);
    await clock.advance(299);
    expect(flushed).toEqual([]);
    await clock.advance(1);
    expect(flushed).toEqual([{ key: 'k', items: [1, 2], at: start + 500 }]);
    await expect(Promise.all([a, b])).resolves.toEqual(['done 1', 'done 2']);
    expect(batcher.size).toBe(0);
  });

  it('flushes at once when a batch is full', async () => {
    const { flushed, batcher } = setup();
    const all = [1, 2, 3].map((i) => batcher.add('k', i));
    await settle();
    expect(flushed).toHaveLength(1);
    await expect(Promise.all(all)).resolves.toHaveLength(3);
  });

  it('keeps keys apart', async () => {
    const { clock, flushed, batcher } = setup();
    void batcher.add('a', 1);
    void batcher.add('b', 2);
    await clock.advance(500);
    expect(flushed.map((f) => [f.key, f.items])).toEqual([
      ['a', [1]],
      ['b', [2]],
    ]);
  });

  it('runs one flush per key at a time; what came meanwhile goes in the next', async () => {
    const { clock, flushed, batcher, hold } = setup(500, 100);
    let release!: () => void;
    hold(new Promise((r) => (release = r)));
    const first = batcher.add('k', 1);
    await clock.advance(500);
    const second = batcher.add('k', 2);
    await clock.advance(1000);
    expect(flushed).toHaveLength(1);
    release();
    await expect(first).resolves.toBe('done 1');
    // Item 2 has waited its window already: it goes at once.
    await clock.advance(0);
    expect(flushed.map((f) => f.items)).toEqual([[1], [2]]);
    await expect(second).resolves.toBe('done 2');
  });

  it('fails every item of a batch whose flush throws, and goes on with the next', async () => {
    const clock = new FakeClock(TEST_START);
    let fail = true;
    const batcher = new KeyedBatcher<number, number>({
      windowMs: 10,
      maxItems: 10,
      clock,
      flush: (_key, items) => (fail ? Promise.reject(new Error('down')) : Promise.resolve(items)),
    });
    const a = batcher.add('k', 1);
    const rejected = expect(a).rejects.toThrow('down');
    await clock.advance(10);
    await rejected;
    fail = false;
    const b = batcher.add('k', 2);
    await clock.advance(10);
    await expect(b).resolves.toBe(2);
  });

  it('flushAll writes everything pending without waiting for the window', async () => {
    const { flushed, batcher } = setup(60_000, 100);
    const items = [batcher.add('a', 1), batcher.add('b', 2)];
    await batcher.flushAll();
    expect(flushed).toHaveLength(2);
    await expect(Promise.all(items)).resolves.toEqual(['done 1', 'done 2']);
  });
});
