/** Kubernetes shapes shared by both kinds: object metadata, label selectors, conditions. */
import { z } from 'zod';
import { withRules } from './rules.js';

export const GROUP = 'containeraudit.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** RFC 1123 label, as Kubernetes uses for container names. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** RFC 1123 subdomain, as Kubernetes uses for pod, node and most object names. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** RFC 3339 timestamp as the API server writes it. */
export const Timestamp = z.iso.datetime({ offset: true });

/**
 * Object metadata as we read it. Loose: the API server owns it and adds fields; the CRD leaves it to the
 * server's own validation.
 */
export const ObjectMeta = z.looseObject({
  name: z.string().optional(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.string().optional(),
});

export const LABEL_SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

export const LabelSelectorRequirement = withRules(
  z.strictObject({
    key: z.string().min(1).max(317).describe('The label key the selector applies to.'),
    operator: z
      .enum(LABEL_SELECTOR_OPERATORS)
      .describe("How the key relates to the values: 'In', 'NotIn', 'Exists' or 'DoesNotExist'."),
    values: z
      .array(z.string().max(63))
      .max(64)
      .optional()
      .describe("Values for 'In' and 'NotIn' (at least one); empty for 'Exists' and 'DoesNotExist'."),
  }),
  [
    {
      cel: "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
      check: (r) => !['In', 'NotIn'].includes(r.operator) || (r.values?.length ?? 0) > 0,
      message: "operators 'In' and 'NotIn' need at least one value",
      fieldPath: '.values',
    },
    {
      cel: "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
      check: (r) => !['Exists', 'DoesNotExist'].includes(r.operator) || (r.values?.length ?? 0) === 0,
      message: "operators 'Exists' and 'DoesNotExist' take no values",
      fieldPath: '.values',
    },
  ],
);
export type LabelSelectorRequirement = z.infer<typeof LabelSelectorRequirement>;

/** metav1.LabelSelector: the requirements are ANDed; an empty selector matches everything. */
export const LabelSelector = z
  .strictObject({
    matchLabels: z
      .record(z.string(), z.string().max(63))
      .optional()
      .describe('Labels that must all be present with exactly these values.'),
    matchExpressions: z
      .array(LabelSelectorRequirement)
      .max(32)
      .optional()
      .describe('Set-based requirements; all must hold.'),
  })
  .describe('A Kubernetes label selector. Empty matches everything.');
export type LabelSelector = z.infer<typeof LabelSelector>;

export const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;

/** metav1.Condition. */
export const Condition = z.strictObject({
  type: z.string().min(1).max(316).describe('Condition type, e.g. Ready, Invalid, Degraded.'),
  status: z.enum(CONDITION_STATUSES).describe('True, False or Unknown.'),
  observedGeneration: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('The .metadata.generation the condition was computed from.'),
  lastTransitionTime: Timestamp.describe('When the status last changed.'),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
    .describe('UpperCamelCase machine-readable reason.'),
  message: z.string().max(32768).describe('Human-readable details.'),
});
export type Condition = z.infer<typeof Condition>;
