/**
 * Whether a ContainerAuditPolicy can be applied, judged on what only the operator can check. The API server
 * refuses most bad input through the CRD schema and its CEL rules; what gets past it is named here, field by
 * field, for the policy's `Invalid` condition:
 *
 * - regular expressions the agent's engine refuses (a backreference, say): compileCommandRules;
 * - label selector keys and values that are not label syntax (the CRD only bounds their length): such a
 *   selector silently matches nothing, or with `NotIn` everything, so it is refused rather than guessed at;
 * - an object that fails our own zod schema, which the API server's schema makes impossible but which must
 *   not crash the operator (a CRD older than this operator, a hand-edited one).
 */
import type { z } from 'zod';
import { ContainerAuditPolicySpec } from '../../api/v1alpha1/containerauditpolicy.js';
import type { LabelSelector } from '../../api/v1alpha1/meta.js';
import { compileCommandRules } from '../../common/rules/command-rules.js';

export interface PolicyProblem {
  /** The field at fault, as the API server would name it: `spec.redact.patterns[0]`. */
  field: string;
  message: string;
}

export type SpecParse =
  { ok: true; spec: ContainerAuditPolicySpec } | { ok: false; problems: PolicyProblem[] };

/** Parses a spec as the API server stored it (defaults filled in); problems name the field under `spec`. */
export function parseSpec(raw: unknown): SpecParse {
  const parsed = ContainerAuditPolicySpec.safeParse(raw);
  if (parsed.success) return { ok: true, spec: parsed.data };
  return { ok: false, problems: parsed.error.issues.map(zodProblem) };
}

function zodProblem(issue: z.core.$ZodIssue): PolicyProblem {
  let field = 'spec';
  for (const part of issue.path) field += typeof part === 'number' ? `[${part}]` : `.${String(part)}`;
  return { field, message: issue.message };
}

/**
 * Judgements by the fields they depend on. Every reconcile judges every policy (overlaps need them all), and
 * compiling up to 128 patterns per policy each time would cost more than the rest of selection; the answer
 * depends on nothing but these fields.
 */
const judged = new Map<string, PolicyProblem[]>();
const MAX_JUDGED = 512;

/** Problems of a spec that passed the schema; empty when the policy can be applied. */
export function specProblems(spec: ContainerAuditPolicySpec): PolicyProblem[] {
  const { namespaceSelector, podSelector } = spec.selector;
  const key = JSON.stringify([namespaceSelector, podSelector, spec.redact, spec.alerts]);
  let problems = judged.get(key);
  if (problems === undefined) {
    const compiled = compileCommandRules(spec);
    problems = [
      ...selectorProblems(namespaceSelector, 'spec.selector.namespaceSelector'),
      ...selectorProblems(podSelector, 'spec.selector.podSelector'),
      ...(compiled.ok ? [] : compiled.errors),
    ];
    if (judged.size >= MAX_JUDGED) judged.clear();
    judged.set(key, problems);
  }
  return [...problems];
}

/** A DNS-1123 subdomain: the optional prefix of a label key. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** The name part of a label key, and (or empty) a label value. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Why `key` is not a label key (Kubernetes' qualified name), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)))
    return 'the prefix of a label key must be a DNS subdomain (lower-case letters, digits, dashes and dots)';
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name))
    return 'a label key must be at most 63 letters, digits, dashes, underscores and dots, starting and ending with a letter or digit, with an optional DNS subdomain prefix and a slash';
  return undefined;
}

/** Why `value` is not a label value, or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return 'a label value must be empty or at most 63 letters, digits, dashes, underscores and dots, starting and ending with a letter or digit';
}

export function selectorProblems(selector: LabelSelector, field: string): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const check = (at: string, problem: string | undefined, what: string): void => {
    if (problem !== undefined) problems.push({ field: at, message: `${problem} (${what})` });
  };
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    const at = `${field}.matchLabels[${JSON.stringify(key)}]`;
    check(at, labelKeyProblem(key), `key ${JSON.stringify(key)}`);
    check(at, labelValueProblem(value), `value ${JSON.stringify(value)}`);
  }
  (selector.matchExpressions ?? []).forEach((requirement, i) => {
    const at = `${field}.matchExpressions[${i}]`;
    check(`${at}.key`, labelKeyProblem(requirement.key), `key ${JSON.stringify(requirement.key)}`);
    (requirement.values ?? []).forEach((value, j) =>
      check(`${at}.values[${j}]`, labelValueProblem(value), `value ${JSON.stringify(value)}`),
    );
  });
  return problems;
}
