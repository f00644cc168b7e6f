/** Waiting in tests for something another process or the API server does. */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `probe` until it returns something other than `undefined` or `false`, and returns that; throws
 * "timed out waiting for WHAT" after `timeoutMs`. Polls often at first (10 ms) and less as time goes on (up to
 * every 250 ms), so a quick condition costs little latency and a slow one (a kubectl call) little load.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let interval = 10; ; interval = Math.min(250, interval * 1.5)) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(interval);
  }
}
