/**
 * Exponential backoff with jitter: initial × factor^attempt, capped, then stretched by up to `jitter` of
 * itself so that replicas (or informers) that failed together do not retry in lockstep.
 */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** 0.5: each delay is drawn from [d, 1.5 d]. */
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
