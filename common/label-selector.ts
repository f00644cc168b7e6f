/**
 * Kubernetes label selector semantics (metav1.LabelSelector): every matchLabels pair and every
 * matchExpressions requirement must hold; an empty selector matches everything. Pure; shared by the operator
 * (pods and namespaces from informers) and the standalone agent (what CRI annotations tell).
 */
import type { LabelSelector } from '../api/v1alpha1/meta.js';

export type Labels = Readonly<Record<string, string>>;

function has(labels: Labels, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(labels, key);
}

export function matchesSelector(selector: LabelSelector, labels: Labels): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!has(labels, key) || labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const present = has(labels, key);
    const ok =
      operator === 'In'
        ? present && values.includes(labels[key]!)
        : operator === 'NotIn'
          ? !present || !values.includes(labels[key]!)
          : operator === 'Exists'
            ? present
            : !present;
    if (!ok) return false;
  }
  return true;
}

/** The label keys a selector looks at. */
export function selectorKeys(selector: LabelSelector): string[] {
  return [
    ...new Set([
      ...Object.keys(selector.matchLabels ?? {}),
      ...(selector.matchExpressions ?? []).map((r) => r.key),
    ]),
  ];
}

export function isEmptySelector(selector: LabelSelector): boolean {
  return selectorKeys(selector).length === 0;
}
