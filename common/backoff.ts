/**
 * Exponential backoff with jitter, the one of the product: the operator's informers and work queue, the
 * agent's plan poll and reports. A delay is initial × factor^attempt, capped at max, then stretched by up to
 * `jitter` of itself (client-go's `wait.Backoff`), so that clients that failed together (replicas, informers,
 * the agents of every node after an operator restart) do not retry in lockstep.
 *
 * `backoffDelay` is the pure rule; `Backoff` counts the failures in a row for a loop that retries one thing.
 * Waiting is `sleep` of common/clock.ts.
 */
export interface BackoffPolicy {
  /** The shortest delay, after the first failure. */
  initialMs: number;
  /** The longest delay before jitter. */
  maxMs: number;
  factor: number;
  /** 0.5: each delay is drawn from [d, 1.5 d]; 0: no jitter. */
  jitter: number;
}

export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt));
  return Math.round(base * (1 + policy.jitter * random()));
}

/** The delays of one retry loop: longer with each failure in a row, from the start again after a success. */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt, after one more failure. */
  next(): number {
    return backoffDelay(this.policy, this.failures++, this.random);
  }

  reset(): void {
    this.failures = 0;
  }

  /** Failures in a row so far. */
  get attempts(): number {
    return this.failures;
  }
}
