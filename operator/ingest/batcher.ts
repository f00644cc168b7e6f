/**
 * A keyed batcher: items added under one key are collected for a flush window (from the first pending item)
 * and handed to `flush` together, or at once when `maxItems` are pending. At most one flush runs per key;
 * items that arrive meanwhile wait for the next one. Each `add` resolves with its own item's result, so a
 * caller can await exactly what it handed in. Time is injected (common/clock.ts).
 */
import { type Clock, type Timer, realClock } from '../../common/clock.js';

export interface BatcherOptions<T, R> {
  windowMs: number;
  maxItems: number;
  /** One result per item, in order. Throwing fails every item of the batch. */
  flush: (key: string, items: T[]) => Promise<R[]>;
  clock?: Clock;
}

interface Pending<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

interface Slot<T, R> {
  pending: Pending<T, R>[];
  firstAt: number;
  timer?: Timer;
  running?: Promise<void>;
}

export class KeyedBatcher<T, R> {
  private readonly slots = new Map<string, Slot<T, R>>();
  private readonly clock: Clock;

  constructor(private readonly options: BatcherOptions<T, R>) {
    this.clock = options.clock ?? realClock;
  }

  add(key: string, item: T): Promise<R> {
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { pending: [], firstAt: this.clock.now() };
      this.slots.set(key, slot);
    }
    if (slot.pending.length === 0) slot.firstAt = this.clock.now();
    const promise = new Promise<R>((resolve, reject) => slot.pending.push({ item, resolve, reject }));
    this.arm(key, slot);
    return promise;
  }

  /** Whether `key` has items waiting or a flush running. */
  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** Keys with items waiting or a flush running. */
  get size(): number {
    return this.slots.size;
  }

  /** Flushes everything now and waits until nothing is pending (shutdown). */
  async flushAll(): Promise<void> {
    while (this.slots.size > 0) {
      await Promise.all(
        [...this.slots.entries()].map(([key, slot]) => {
          slot.timer?.cancel();
          slot.timer = undefined;
          return slot.running ?? this.run(key, slot);
        }),
      );
    }
  }

  private arm(key: string, slot: Slot<T, R>): void {
    if (slot.running || slot.pending.length === 0) return;
    if (slot.pending.length >= this.options.maxItems) {
      slot.timer?.cancel();
      slot.timer = undefined;
      void this.run(key, slot);
      return;
    }
    if (slot.timer) return;
    const delay = Math.max(0, slot.firstAt + this.options.windowMs - this.clock.now());
    slot.timer = this.clock.setTimer(() => {
      slot.timer = undefined;
      void this.run(key, slot);
    }, delay);
  }

  private run(key: string, slot: Slot<T, R>): Promise<void> {
    if (slot.running) return slot.running;
    const batch = slot.pending.splice(0, this.options.maxItems);
    slot.running = (async () => {
      try {
        const results = await this.options.flush(
          key,
          batch.map((p) => p.item),
        );
        batch.forEach((p, i) => p.resolve(results[i] as R));
      } catch (e) {
        for (const p of batch) p.reject(e);
      } finally {
        slot.running = undefined;
        if (slot.pending.length === 0) {
          if (this.slots.get(key) === slot) this.slots.delete(key);
        } else {
          // Items that came during the flush have waited already: their window runs from their arrival.
          this.arm(key, slot);
        }
      }
    })();
    return slot.running;
  }
}
