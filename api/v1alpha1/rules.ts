/**
 * A validation rule declared once and enforced twice: by the API server as a CEL rule in the generated CRD
 * (`x-kubernetes-validations`), and by zod in TypeScript (the agent's standalone policy files, the operator's
 * defensive parse). CEL cannot run in Node, so each rule carries both forms side by side; the shared table of
 * bad policies (`testdata/bad-policies.ts`) is run against both and proves they agree.
 */
import type { z } from 'zod';

export interface Rule<T> {
  /** CEL expression over `self`, evaluated by the API server. */
  cel: string;
  /** The same judgement in TypeScript. */
  check: (value: T) => boolean;
  /** Message shown by both; say what is wrong and what is allowed. */
  message: string;
  /** Relative field path (CEL `fieldPath`), so the server's error names the field, e.g. `.values`. */
  fieldPath?: string;
}

/** Attaches rules to a schema: zod refinements plus `x-kubernetes-validations` metadata for the CRD. */
export function withRules<S extends z.ZodType>(schema: S, rules: Rule<z.output<S>>[]): S {
  let refined = schema;
  for (const rule of rules) {
    const path = rule.fieldPath ? rule.fieldPath.replace(/^\./, '').split('.') : [];
    refined = refined.refine(rule.check, { message: rule.message, path });
  }
  return refined.meta({
    'x-kubernetes-validations': rules.map((r) => ({
      rule: r.cel,
      message: r.message,
      ...(r.fieldPath ? { fieldPath: r.fieldPath } : {}),
    })),
  });
}
