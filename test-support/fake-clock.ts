/**
 * A clock for tests: time stands still until `advance` moves it, firing the timers that fall due in order.
 * Not used in production code.
 */
import type { Clock, Timer } from '../common/clock.js';

interface Scheduled {
  at: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

export class FakeClock implements Clock {
  private readonly timers: Scheduled[] = [];
  private seq = 0;

  constructor(private time = 1_000_000) {}

  now(): number {
    return this.time;
  }

  setTimer(callback: () => void, ms: number): Timer {
    const entry: Scheduled = { at: this.time + Math.max(0, ms), seq: this.seq++, callback, cancelled: false };
    this.timers.push(entry);
    return { cancel: () => (entry.cancelled = true) };
  }

  /** Timers not yet fired nor cancelled. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, firing due timers one by one in time order; after each, lets promise
   * continuations run (so a timer that resolves a sleep sees the code after the sleep run, and timers it sets
   * are fired too if they fall due).
   */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    for (;;) {
      await settle();
      const next = this.nextDue(target);
      if (!next) break;
      this.time = next.at;
      next.cancelled = true;
      next.callback();
    }
    this.time = target;
    await settle();
  }

  private nextDue(target: number): Scheduled | undefined {
    let best: Scheduled | undefined;
    for (const t of this.timers) {
      if (t.cancelled || t.at > target) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    for (let i = this.timers.length - 1; i >= 0; i--) if (this.timers[i]!.cancelled) this.timers.splice(i, 1);
    return best;
  }
}

/** Lets pending promise continuations (and the ones they schedule) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
