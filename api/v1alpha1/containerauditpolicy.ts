/**
 * ContainerAuditPolicy: cluster-scoped. Says which containers are audited (selector), what is captured
 * (capture), what is hidden before a record leaves the node (redact), which commands raise alerts (alerts),
 * where records go (outputs) and how long they are to be kept (retention: not enforced yet).
 *
 * This file is the single source of truth for the kind: the TypeScript types are inferred from it and the
 * CRD in `charts/container-auditor/crds/` is generated from it (`make crds`).
 */
import { z } from 'zod';
import { API_VERSION, Condition, DNS_LABEL, LabelSelector, ObjectMeta, Timestamp } from './meta.js';
import { withRules } from './rules.js';

export const POLICY_KIND = 'ContainerAuditPolicy';
export const POLICY_PLURAL = 'containerauditpolicies';

export const MAX_COMMAND_BYTES_LIMIT = 65536;
export const DEFAULT_MAX_COMMAND_BYTES = 4096;
export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * A duration in whole seconds, minutes and hours, as Go and CEL write them: `720h`, `1h30m`, `90s`.
 * Exported so the operator parses exactly what the schema admits.
 */
export const DURATION_PATTERN = /^([0-9]{1,9}(h|m|s))+$/;
const DURATION_PATTERN_CEL = '^([0-9]{1,9}(h|m|s))+$';

/** Seconds in a duration string that matches DURATION_PATTERN. */
export function durationSeconds(duration: string): number {
  const unit = { h: 3600, m: 60, s: 1 } as const;
  let total = 0;
  for (const [, n, u] of duration.matchAll(/([0-9]+)(h|m|s)/g))
    total += Number(n) * unit[u as keyof typeof unit];
  return total;
}

const Duration = withRules(
  z.string().max(32).regex(DURATION_PATTERN, 'must be a duration in h, m and s units, such as 720h or 1h30m'),
  [
    {
      cel: `!self.matches('${DURATION_PATTERN_CEL}') || duration(self) >= duration('1m')`,
      check: (d) => !DURATION_PATTERN.test(d) || durationSeconds(d) >= 60,
      message: 'must be at least 1m',
    },
  ],
);

const Pattern = z
  .string()
  .min(1, 'must not be empty')
  .max(1024)
  .describe('A regular expression (RE2 syntax; no backreferences or lookaround).');

export const Selector = z
  .strictObject({
    namespaceSelector: LabelSelector.prefault({}).describe(
      'Namespaces whose pods are audited, by namespace labels. Empty selects every namespace.',
    ),
    podSelector: LabelSelector.prefault({}).describe(
      'Pods that are audited, by pod labels. Empty selects every pod in the selected namespaces.',
    ),
    containers: z
      .array(z.string().max(63).regex(DNS_LABEL, 'must be a container name (RFC 1123 label)'))
      .max(64)
      .default([])
      // listType=set: the API server itself refuses a name listed twice.
      .meta({ 'x-kubernetes-list-type': 'set' })
      .refine((names) => new Set(names).size === names.length, { message: 'container names must be unique' })
      .describe('Container names to audit in the selected pods. Empty audits every container.'),
  })
  .describe('Which containers the policy audits.');

export const Capture = withRules(
  z
    .strictObject({
      interactiveShells: z
        .boolean()
        .default(true)
        .describe("Record every line entered in Bash's readline (interactive shells)."),
      execs: z
        .boolean()
        .default(false)
        .describe('Record every program started in the container, with its arguments.'),
      maxCommandBytes: z
        .number()
        .int()
        .min(1)
        .max(MAX_COMMAND_BYTES_LIMIT)
        .default(DEFAULT_MAX_COMMAND_BYTES)
        .describe(
          `Bytes of each command kept exactly; longer commands are cut and marked truncated. 1 to ${MAX_COMMAND_BYTES_LIMIT}.`,
        ),
    })
    .describe('What is captured.'),
  [
    {
      cel: 'self.interactiveShells || self.execs',
      check: (c) => c.interactiveShells || c.execs,
      message: 'at least one of interactiveShells and execs must be true, or the policy captures nothing',
    },
  ],
);

export const Redact = z
  .strictObject({
    builtins: z
      .boolean()
      .default(true)
      .describe(
        'Redact the built-in secret shapes: passwords in flags, tokens, keys, connection strings. Redaction happens on the node.',
      ),
    patterns: z
      .array(Pattern)
      .max(64)
      .default([])
      .describe('Extra regular expressions; every match is replaced before the record leaves the node.'),
  })
  .describe('What is hidden before records leave the node.');

export const AlertRule = z
  .strictObject({
    name: z
      .string()
      .max(63)
      .regex(DNS_LABEL, 'must be lower-case letters, digits and dashes (RFC 1123 label)')
      .describe('Name of the rule, unique within the policy; shown on the record and the Warning Event.'),
    pattern: Pattern.describe('A regular expression matched against each command (RE2 syntax).'),
    severity: z.enum(SEVERITIES).default('medium').describe('low, medium, high or critical.'),
  })
  .describe('A command that deserves a Warning Event and a flag on its record.');

export const Outputs = withRules(
  z
    .strictObject({
      events: z.boolean().default(true).describe('Write Kubernetes Events on the audited Pod.'),
      auditRecords: z.boolean().default(true).describe('Write AuditRecord resources, one per session.'),
    })
    .describe('Where records go.'),
  [
    {
      cel: 'self.events || self.auditRecords',
      check: (o) => o.events || o.auditRecords,
      message: 'at least one of events and auditRecords must be true, or nothing is recorded',
    },
  ],
);

export const Retention = z
  .strictObject({
    maxAge: Duration.default('720h').describe(
      'How long AuditRecords are to be kept after their last command, in h, m and s units (e.g. 720h). At least 1m. Not enforced yet: this version deletes no AuditRecord.',
    ),
  })
  .describe('How long records are to be kept (accepted and validated, not enforced yet).');

export const ContainerAuditPolicySpec = z
  .strictObject({
    selector: Selector.prefault({}),
    capture: Capture.prefault({}),
    redact: Redact.prefault({}),
    alerts: z
      .array(AlertRule)
      .max(64)
      .default([])
      // listType=map keyed by name: the API server itself refuses two alerts with the same name.
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .refine((alerts) => new Set(alerts.map((a) => a.name)).size === alerts.length, {
        message: 'alert names must be unique within the policy',
      })
      .describe('Commands that raise alerts.'),
    outputs: Outputs.prefault({}),
    retention: Retention.prefault({}),
    suspend: z.boolean().default(false).describe('Stop capturing without deleting the policy.'),
  })
  .describe('What the policy audits and how.');
export type ContainerAuditPolicySpec = z.infer<typeof ContainerAuditPolicySpec>;

export const NodeStatus = z
  .strictObject({
    name: z.string().describe('Node name.'),
    planVersion: z.string().optional().describe('Version of the plan the agent last applied.'),
    auditedContainers: z.number().int().min(0).optional().describe('Containers audited on this node.'),
    probesAttached: z.number().int().min(0).optional().describe('Distinct uprobes attached by the agent.'),
    lastReportTime: Timestamp.optional().describe('When the agent last reported.'),
    errors: z.array(z.string().max(1024)).max(16).optional().describe('Errors the agent reported.'),
  })
  .describe('State of one node.');

export const ContainerAuditPolicyStatus = z
  .strictObject({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The .metadata.generation this status describes.'),
    conditions: z
      .array(Condition)
      .max(16)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Ready, Invalid and Degraded.'),
    matchedPods: z.number().int().min(0).optional().describe('Pods the selector matches.'),
    auditedContainers: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Containers being audited (selected and running through the audit runtime).'),
    unauditablePods: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Selected pods that cannot be audited because they do not use the audit RuntimeClass.'),
    nodes: z
      .array(NodeStatus)
      .max(5000)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Per-node state of the plan and the probes.'),
    commandsRecorded: z.number().int().min(0).optional().describe('Commands recorded under this policy.'),
    lastCommandTime: Timestamp.optional().describe('When the last command was recorded.'),
  })
  .describe('What the operator observed; written by the operator only.');
export type ContainerAuditPolicyStatus = z.infer<typeof ContainerAuditPolicyStatus>;

export const ContainerAuditPolicy = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(POLICY_KIND),
  metadata: ObjectMeta,
  spec: ContainerAuditPolicySpec,
  status: ContainerAuditPolicyStatus.optional(),
});
export type ContainerAuditPolicy = z.infer<typeof ContainerAuditPolicy>;
