/**
 * What an agent records: one JSON object per command, exec, coverage change or loss. The standalone agent
 * writes them one per line; in cluster mode they are what the agent reports to the operator. This schema is
 * the contract both sides validate against, so it lives with the API rather than in the agent.
 *
 * Every record carries the agent's `boot` (random per agent start) and a `seq` increasing within that boot:
 * (node, boot, seq) identifies a record, which is what lets a receiver drop a batch it already has.
 */
import { z } from 'zod';
import { CommandBase64, CommandText, IDENTITY_LIMITS } from '../v1alpha1/auditrecord.js';
import { SEVERITIES } from '../v1alpha1/containerauditpolicy.js';
import { Timestamp } from '../v1alpha1/meta.js';
import { execLineFits } from './text.js';

export const RECORD_KINDS = ['command', 'exec', 'coverage', 'loss'] as const;

const Pid = z.number().int().min(1).max(4194304);

const Header = {
  seq: z.number().int().min(1).describe('Increasing per agent boot.'),
  boot: z.string().min(1).max(64).describe('Random id of the agent process that wrote the record.'),
  time: Timestamp.describe('When it happened (node clock).'),
  node: z.string().min(1).max(253),
};

/**
 * Which container a record is about, as far as the node knows (CRI annotations), within the bounds an
 * AuditRecord takes (IDENTITY_LIMITS): the agent cuts to them (agent/records/build.ts), the operator copies.
 */
const ContainerRef = {
  containerId: z.string().min(1).max(IDENTITY_LIMITS.containerId),
  pod: z
    .strictObject({
      namespace: z.string().max(IDENTITY_LIMITS.namespace).optional(),
      name: z.string().max(IDENTITY_LIMITS.podName).optional(),
      uid: z.string().max(IDENTITY_LIMITS.podUid).optional(),
    })
    .optional(),
  container: z.string().max(IDENTITY_LIMITS.containerName).optional().describe('Container name.'),
  image: z.string().max(IDENTITY_LIMITS.image).optional(),
  policy: z
    .string()
    .max(IDENTITY_LIMITS.policy)
    .optional()
    .describe('The policy that audits this container.'),
};

export const Alert = z.strictObject({ name: z.string().max(63), severity: z.enum(SEVERITIES) });
export type Alert = z.infer<typeof Alert>;

export const CommandRecord = z.strictObject({
  kind: z.literal('command'),
  ...Header,
  ...ContainerRef,
  pid: Pid.describe("The shell's pid on the host."),
  nsPid: Pid.optional().describe("The shell's pid in the container's pid namespace."),
  uid: z.number().int().min(0).max(0xffffffff),
  command: CommandText.describe(
    'Exact text when the bytes are UTF-8 (after redaction): api/records/text.ts.',
  ),
  commandBase64: CommandBase64.optional().describe('The exact bytes (after redaction) when not UTF-8.'),
  truncated: z.boolean(),
  redacted: z.boolean(),
  alerts: z.array(Alert),
});
export type CommandRecord = z.infer<typeof CommandRecord>;

export const EXEC_SOURCES = ['kernel', 'runtime'] as const;

export const ExecRecord = z
  .strictObject({
    kind: z.literal('exec'),
    ...Header,
    ...ContainerRef,
    source: z
      .enum(EXEC_SOURCES)
      .describe(
        'kernel: seen by the exec probe; runtime: a `runc exec` (kubectl exec) handed off by the wrapper.',
      ),
    pid: Pid,
    ppid: Pid.optional(),
    nsPid: Pid.optional(),
    uid: z.number().int().min(0).max(0xffffffff).optional(),
    path: z.string().optional().describe('The file executed (kernel), when known.'),
    pathBase64: z.string().optional().describe('The exact bytes of the path when not UTF-8.'),
    argv: z.array(z.string()).describe('Arguments, exact when UTF-8 (after redaction).'),
    argvBase64: z
      .array(z.string())
      .optional()
      .describe('The exact bytes of each argument when any is not UTF-8.'),
    truncated: z.boolean(),
    redacted: z.boolean(),
    alerts: z.array(Alert),
  })
  .refine((r) => execLineFits(r.argv, r.argvBase64), {
    message: 'argv as one quoted command line (api/records/text.ts) must fit an AuditRecord',
    path: ['argv'],
  });
export type ExecRecord = z.infer<typeof ExecRecord>;

export const COVERAGE_STATUSES = ['covered', 'gap'] as const;

export const CoverageRecord = z.strictObject({
  kind: z.literal('coverage'),
  ...Header,
  ...ContainerRef,
  status: z.enum(COVERAGE_STATUSES),
  bash: z.string().optional().describe('The shell in the container this is about.'),
  target: z.string().optional().describe('Host path of the file probed for readline.'),
  via: z.enum(['bash', 'libreadline']).optional(),
  reason: z.string().optional().describe('Why it cannot be audited (gap), or how it came to be covered.'),
  coveredFrom: Timestamp.optional().describe('Commands are captured from this time on.'),
  late: z
    .boolean()
    .optional()
    .describe('Covered only after the container may have started running: earlier commands may be missing.'),
});
export type CoverageRecord = z.infer<typeof CoverageRecord>;

export const LOSS_REASONS = [
  'bpftrace-exited',
  'kernel-lost-events',
  'incomplete-line',
  'incomplete-exec',
  'queue-full',
  'agent-down',
  'rate-limited',
  // The runc wrapper wrote no hand-off (the agent absent, or its spool at the bound): containers started and
  // execs run then may be unaudited. `count` is the number of hand-offs.
  'handoffs-dropped',
] as const;

export const LossRecord = z.strictObject({
  kind: z.literal('loss'),
  ...Header,
  // A loss of one container (rate-limited) names it; losses of the whole node (bpftrace, queue) do not.
  ...ContainerRef,
  containerId: ContainerRef.containerId.optional(),
  reason: z.enum(LOSS_REASONS),
  count: z.number().int().min(0).optional().describe('Events or lines lost, when known.'),
  since: Timestamp.optional().describe('Start of the window in which nothing was captured.'),
  until: Timestamp.optional(),
  detail: z.string().max(2048).optional(),
});
export type LossRecord = z.infer<typeof LossRecord>;

export const AgentRecord = z.discriminatedUnion('kind', [
  CommandRecord,
  ExecRecord,
  CoverageRecord,
  LossRecord,
]);
export type AgentRecord = z.infer<typeof AgentRecord>;

/** A record before the sink stamps it: seq, boot and node are the sink's. */
export type UnstampedRecord = AgentRecord extends infer R
  ? R extends AgentRecord
    ? Omit<R, 'seq' | 'boot' | 'node'>
    : never
  : never;
