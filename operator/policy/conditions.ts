/**
 * metav1.Condition bookkeeping, pure: a condition's `lastTransitionTime` moves only when its status flips, so
 * `kubectl describe` tells how long a policy has been Ready (or Degraded), not when the operator last
 * looked. Reason, message and observedGeneration follow the latest judgement.
 */
import type { Condition } from '../../api/v1alpha1/meta.js';

export const ConditionType = {
  ready: 'Ready',
  invalid: 'Invalid',
  degraded: 'Degraded',
} as const;

/** A condition as judged now, before its transition time is known. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'>;

/** RFC 3339 with whole seconds, as the API server writes metav1.Time. */
export function rfc3339(time: Date): string {
  return new Date(Math.floor(time.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * The conditions with `next` set: in place of the condition of its type (keeping that one's transition time
 * when the status is unchanged), or appended. The input is not modified.
 */
export function setCondition(
  conditions: readonly Condition[],
  next: ConditionUpdate,
  now: Date,
): Condition[] {
  const previous = conditions.find((c) => c.type === next.type);
  const lastTransitionTime =
    previous !== undefined && previous.status === next.status ? previous.lastTransitionTime : rfc3339(now);
  const condition: Condition = { ...next, lastTransitionTime };
  if (previous === undefined) return [...conditions, condition];
  return conditions.map((c) => (c === previous ? condition : c));
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
