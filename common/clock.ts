/**
 * Time as a dependency: the work queue, the informers and leader election take a `Clock`, so their tests run
 * on a `FakeClock` (test-support/fake-clock.ts) that moves only when told, without real timers.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` once, `ms` from now (at once if `ms` <= 0, but never synchronously). */
  setTimer(callback: () => void, ms: number): Timer;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer(callback, ms) {
    const handle = setTimeout(callback, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
};

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects: the caller checks why it woke). */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const wake = () => {
      timer.cancel();
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const timer = clock.setTimer(wake, ms);
    signal?.addEventListener('abort', wake, { once: true });
  });
}
