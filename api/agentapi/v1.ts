/**
 * The wire between an agent and the operator (HTTPS, JSON), in both directions:
 *
 *   GET  /v1/plan?node=N&version=V   the node's plan; a long poll: answers at once when the plan's version is
 *                                    not V, else when it changes, else after WAIT (200 with the same plan)
 *   POST /v1/reports                 a batch of records (api/records/v1.ts) and the agent's state
 *
 * Every request carries `Authorization: Bearer <projected ServiceAccount token>` with the audience
 * AGENT_TOKEN_AUDIENCE; the operator checks it with a TokenReview and binds it to the node it names. Answers:
 * 200 (done), 400 (malformed: nothing written), 401 (no or bad token), 403 (not the agent's ServiceAccount, or
 * another node's), 503 (not the leader, or not ready, or nothing could be written now: retry). Ingestion is
 * idempotent on (node, boot, seq).
 *
 * A report's records are judged one by one (ReportResponse): written now (`accepted`), written before
 * (`duplicates`), never to be written (`rejected`, each with its seq and reason: a permanent API error such as
 * a deleted namespace, or a record the node may not report, outside its plan), or not written for now
 * (`retry`: a transient API error). 200 when every record is done (accepted, duplicate or rejected); 207 when
 * some are done and the others, listed in `retry`, must be sent again; 503 when none could be written. An
 * agent acknowledges every record of a 200 or 207 answer except those in `retry`, which it sends again later
 * without holding back the records behind them; rejected records are losses it counts. An agent that does
 * not know 207 sends the whole report again, which is safe (idempotent).
 *
 * Single source of truth for both sides: the operator validates what it receives with these schemas, and so
 * does the agent.
 */
import { z } from 'zod';
import { AgentRecord } from '../records/v1.js';
import { Capture, Outputs, Redact, AlertRule } from '../v1alpha1/containerauditpolicy.js';
import { Timestamp } from '../v1alpha1/meta.js';

/** The audience of the agent's projected token: only this operator accepts such a token. */
export const AGENT_TOKEN_AUDIENCE = 'container-auditor.containeraudit.io';
export const PLAN_PATH = '/v1/plan';
export const REPORTS_PATH = '/v1/reports';
/** A long poll's longest wait before the operator answers with the unchanged plan. */
export const PLAN_WAIT_SECONDS = 30;
/** Bounds of one report: more records, or a larger body, are refused (400) rather than read. */
export const MAX_RECORDS_PER_REPORT = 1000;
export const MAX_REPORT_BYTES = 8 * 1024 * 1024;

const NodeName = z.string().min(1).max(253);

/** The rules one policy applies on the node. */
export const PlanRules = z.strictObject({
  capture: Capture,
  redact: Redact,
  alerts: z.array(AlertRule).max(64),
  outputs: Outputs,
});
export type PlanRules = z.infer<typeof PlanRules>;

/** One container the node must audit, named as the node knows it (CRI annotations). */
export const PlannedContainer = z.strictObject({
  podNamespace: z.string().max(253),
  podName: z.string().max(253),
  podUid: z.string().max(64),
  containerName: z.string().max(63),
  /** The policy whose rules apply (overlaps resolved by the operator: operator/README.md). */
  policy: z.string().max(253),
});
export type PlannedContainer = z.infer<typeof PlannedContainer>;

export const NodePlan = z.strictObject({
  node: NodeName,
  /** Opaque; changes whenever anything else in the plan does. */
  version: z.string().min(1).max(128),
  generatedAt: Timestamp,
  policies: z.record(z.string().max(253), PlanRules),
  containers: z.array(PlannedContainer).max(100_000),
});
export type NodePlan = z.infer<typeof NodePlan>;

/** What the agent tells about itself with each report: shown per node in the policies' status. */
export const AgentState = z.strictObject({
  planVersion: z.string().max(128).optional(),
  auditedContainers: z.number().int().min(0),
  probesAttached: z.number().int().min(0),
  /** Recent problems, newest last (bpftrace failures, coverage gaps, queue overflow). */
  errors: z.array(z.string().max(1024)).max(16),
  /** Records dropped because the agent's queue was full, since boot. */
  queueDropped: z.number().int().min(0).default(0),
});
export type AgentState = z.infer<typeof AgentState>;

export const Report = z
  .strictObject({
    node: NodeName,
    boot: z.string().min(1).max(64),
    state: AgentState.optional(),
    records: z.array(AgentRecord).max(MAX_RECORDS_PER_REPORT),
  })
  .superRefine((report, ctx) => {
    report.records.forEach((record, i) => {
      if (record.node !== report.node || record.boot !== report.boot)
        ctx.addIssue({
          code: 'custom',
          path: ['records', i],
          message: 'a record must carry the node and boot of its report',
        });
    });
  });
export type Report = z.infer<typeof Report>;

/**
 * Why the operator will never write a record (sending it again changes nothing):
 *
 *   namespace-gone  the pod's namespace is deleted or being deleted
 *   forbidden       the API server forbids the write (RBAC, an admission policy)
 *   invalid         the API server refuses the content (422)
 *   too-large       the record does not fit in an object even alone
 *   unattributed    the record names no pod (namespace, name, container): there is nowhere to write it
 *   not-planned     the node's plan does not name (and did not name recently) that pod uid and container
 *   wrong-policy    the node's plan names that container under another policy
 */
export const REJECTION_REASONS = [
  'namespace-gone',
  'forbidden',
  'invalid',
  'too-large',
  'unattributed',
  'not-planned',
  'wrong-policy',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export const Rejection = z.strictObject({
  seq: z.number().int().min(1),
  reason: z.enum(REJECTION_REASONS),
});
export type Rejection = z.infer<typeof Rejection>;

/** The answer to a report: 200 (every record done) or 207 (those in `retry` are not). */
export const ReportResponse = z.strictObject({
  /** Records written now. */
  accepted: z.number().int().min(0),
  /** Records already written by an earlier delivery of the same (node, boot, seq). */
  duplicates: z.number().int().min(0),
  /** Records that will never be written, and why: counted and reported by the operator. Absent when none. */
  rejected: z.array(Rejection).max(MAX_RECORDS_PER_REPORT).optional(),
  /** Seqs of records not written for now (207 only): the agent sends them again. Absent when none. */
  retry: z.array(z.number().int().min(1)).max(MAX_RECORDS_PER_REPORT).optional(),
});
export type ReportResponse = z.infer<typeof ReportResponse>;

export const ErrorResponse = z.strictObject({ error: z.string(), detail: z.string().optional() });
export type ErrorResponse = z.infer<typeof ErrorResponse>;
