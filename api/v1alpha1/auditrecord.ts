/**
 * AuditRecord: namespaced, in the audited pod's namespace, one per shell (or exec) session. The operator
 * appends commands to `status.commands` in batches; a session longer than MAX_COMMANDS_PER_RECORD continues
 * in a next record (`spec.session.part` + 1). Records have no owner reference to the pod: they must outlive
 * it. Single source of truth for the kind, like containerauditpolicy.ts.
 *
 * The names `kubectl get auditrecords` shows in its columns (pod, container, node, policy) must have the shape
 * Kubernetes gives such names: the API server refuses anything else, so no column can carry control or
 * bidirectional formatting characters (they are the operator's to escape where it writes free text).
 */
import { z } from 'zod';
import { API_VERSION, DNS_LABEL, DNS_SUBDOMAIN, ObjectMeta, Timestamp } from './meta.js';
import { SEVERITIES } from './containerauditpolicy.js';

export const RECORD_KIND = 'AuditRecord';
export const RECORD_PLURAL = 'auditrecords';

/**
 * Bounds that keep one record well under etcd's 1.5 MiB object limit even at the largest maxCommandBytes
 * (the operator also cuts a record by encoded size).
 */
export const MAX_COMMANDS_PER_RECORD = 500;
/**
 * A recorded command's text: at most this many bytes of it (UTF-8 text is never longer in UTF-16 units than in
 * bytes). Equal to the largest maxCommandBytes a policy takes; only redaction (a marker longer than what it
 * replaced) or the quoting of an exec's argv can make a command longer, and the agent cuts those to this.
 */
export const MAX_COMMAND_TEXT = 65536;
/** base64 of MAX_COMMAND_TEXT bytes. */
export const MAX_COMMAND_BASE64 = Math.ceil(MAX_COMMAND_TEXT / 3) * 4;

/**
 * How long each part of a container's identity may be in an AuditRecord. The records an agent sends
 * (api/records/v1.ts) take the same bounds, so the agent cuts once, to these, and the operator copies.
 */
export const IDENTITY_LIMITS = {
  namespace: 253,
  podName: 253,
  podUid: 64,
  containerName: 63,
  containerId: 128,
  image: 1024,
  policy: 253,
} as const;

/** The command as recorded: shared with the wire record (api/records/v1.ts). */
export const CommandText = z.string().max(MAX_COMMAND_TEXT);
export const CommandBase64 = z.string().max(MAX_COMMAND_BASE64);

export const SESSION_KINDS = ['shell', 'exec'] as const;
export const RECORD_PHASES = ['Active', 'Closed'] as const;

export const RecordedCommand = z.strictObject({
  seq: z.number().int().min(0).describe("The agent's sequence number for this command (per node and boot)."),
  time: Timestamp.describe('When the command was entered (node clock).'),
  pid: z.number().int().min(0).describe('Host pid of the shell.'),
  nsPid: z.number().int().min(0).optional().describe("The shell's pid inside the container."),
  uid: z.number().int().min(0).optional().describe('uid of the process (as the node sees it), when known.'),
  command: CommandText.describe(
    'The command as typed (after redaction), exact when the bytes are valid UTF-8.',
  ),
  commandBase64: CommandBase64.optional().describe('The exact bytes, base64, when they are not valid UTF-8.'),
  truncated: z.boolean().default(false).describe('The command was longer than maxCommandBytes and was cut.'),
  redacted: z.boolean().default(false).describe('Part of the command was replaced by redaction.'),
  alert: z
    .strictObject({
      name: z.string().max(63).describe('The most severe alert rule that matched.'),
      severity: z.enum(SEVERITIES).describe('Its severity.'),
    })
    .optional()
    .describe('Set when an alert rule matched.'),
  alerts: z.array(z.string().max(63)).max(64).optional().describe('Every alert rule that matched.'),
});
export type RecordedCommand = z.infer<typeof RecordedCommand>;

export const Loss = z.strictObject({
  reason: z
    .string()
    .max(256)
    .describe('Why: kernel ring buffer, queue overflow, agent down, attached late, ...'),
  count: z.number().int().min(0).describe('Commands (or events) lost, when known.'),
  since: Timestamp.optional().describe('Start of the window in which the loss happened.'),
  until: Timestamp.optional().describe('End of that window.'),
});

export const AuditRecordSpec = z
  .strictObject({
    pod: z
      .strictObject({
        name: z
          .string()
          .max(IDENTITY_LIMITS.podName)
          .regex(DNS_SUBDOMAIN, 'must be a pod name')
          .describe('Pod name.'),
        uid: z
          .string()
          .max(IDENTITY_LIMITS.podUid)
          .describe('Pod uid: tells apart two pods that had the same name.'),
      })
      .describe('The audited pod (in the namespace of this record).'),
    container: z
      .strictObject({
        name: z
          .string()
          .max(IDENTITY_LIMITS.containerName)
          .regex(DNS_LABEL, 'must be a container name')
          .describe('Container name in the pod.'),
        id: z.string().max(IDENTITY_LIMITS.containerId).describe('Container id in the runtime.'),
        image: z.string().max(IDENTITY_LIMITS.image).optional().describe('Image reference, when known.'),
      })
      .describe('The audited container.'),
    node: z
      .string()
      .max(253)
      .regex(DNS_SUBDOMAIN, 'must be a node name')
      .describe('Node the container runs on.'),
    policy: z
      .string()
      .max(IDENTITY_LIMITS.policy)
      .regex(DNS_SUBDOMAIN, 'must be a policy name')
      .describe('The ContainerAuditPolicy that selected the container.'),
    session: z
      .strictObject({
        kind: z.enum(SESSION_KINDS).describe('shell (an interactive Bash) or exec (programs started).'),
        pid: z.number().int().min(0).describe('Host pid of the session leader.'),
        nsPid: z.number().int().min(0).optional().describe('Its pid inside the container.'),
        start: Timestamp.describe('When the session started (its first record).'),
        part: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe('1 for the first record of a session; a long session continues in part 2, 3, ...'),
        bootId: z.string().max(64).optional().describe('The reporting agent boot, for de-duplication.'),
      })
      .describe('The shell or exec session this record belongs to.'),
  })
  .describe('Where the commands come from: pod, container, node, policy and session.');
export type AuditRecordSpec = z.infer<typeof AuditRecordSpec>;

export const AuditRecordStatus = z
  .strictObject({
    phase: z.enum(RECORD_PHASES).optional().describe('Active while the session runs, Closed after.'),
    commands: z
      .array(RecordedCommand)
      .max(MAX_COMMANDS_PER_RECORD)
      .optional()
      .describe(
        `Commands in order (at most ${MAX_COMMANDS_PER_RECORD}; the session continues in a next part).`,
      ),
    counts: z
      .strictObject({
        commands: z.number().int().min(0).default(0).describe('Commands in this record.'),
        alerts: z.number().int().min(0).default(0).describe('Commands that matched an alert rule.'),
        redacted: z.number().int().min(0).default(0).describe('Commands with redacted parts.'),
        truncated: z.number().int().min(0).default(0).describe('Commands cut at maxCommandBytes.'),
      })
      .optional()
      .describe('Counts over the commands of this record.'),
    lastCommandTime: Timestamp.optional().describe('Time of the last command in this record.'),
    losses: z.array(Loss).max(64).optional().describe('Commands known to be missing from this session.'),
  })
  .describe('The commands recorded so far, written by the operator.');
export type AuditRecordStatus = z.infer<typeof AuditRecordStatus>;

export const AuditRecord = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(RECORD_KIND),
  metadata: ObjectMeta,
  spec: AuditRecordSpec,
  status: AuditRecordStatus.optional(),
});
export type AuditRecord = z.infer<typeof AuditRecord>;
