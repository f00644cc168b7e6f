/**
 * What became of one record handed to a writer, and which API failures are worth retrying.
 *
 *   accepted    written now
 *   duplicate   an earlier delivery wrote it
 *   failed      not written for now (a transient failure): the agent sends it again
 *   {lost}      never to be written (a permanent failure): counted, reported, and acknowledged to the agent
 *
 * `writeFailure` sorts an API failure of a write: permanent ones are a deleted or terminating namespace,
 * forbidden, invalid and too large; everything else (429, 5xx, time-outs, broken connections, an answer we do
 * not know) is retried. The generic sorting of API errors (not found, conflict, transient) is
 * common/kube/errors.ts's; this is what it means for a write of ingestion. Permanent failures of the target (namespace gone, forbidden) hold for everything bound
 * for it; those of the content (invalid, too large) for that write, so a smaller one may still pass.
 */
import { ApiException } from '@kubernetes/client-node';
import type { RejectionReason } from '../../api/agentapi/v1.js';
import { classifyError } from '../../common/kube/errors.js';

/** The reasons a write can fail for good (a subset of the wire's rejection reasons). */
export type WriteLossReason = Extract<
  RejectionReason,
  'namespace-gone' | 'forbidden' | 'invalid' | 'too-large'
>;

export interface Lost {
  lost: RejectionReason;
}

export type WriteOutcome = 'accepted' | 'duplicate' | 'failed' | Lost;

export const lost = (reason: RejectionReason): Lost => ({ lost: reason });

export function isLost(outcome: WriteOutcome | undefined): outcome is Lost {
  return typeof outcome === 'object';
}

export type WriteFailure =
  { permanent: false } | { permanent: true; reason: WriteLossReason; scope: 'target' | 'content' };

interface StatusDetails {
  kind?: string;
  causes: string[];
}

/** `details` of the Status an ApiException carries (which kind of object was missing, the causes' reasons). */
function statusDetails(error: unknown): StatusDetails {
  if (!(error instanceof ApiException) || typeof error.body !== 'string') return { causes: [] };
  try {
    const status = JSON.parse(error.body) as { details?: { kind?: unknown; causes?: unknown } };
    const details = status.details ?? {};
    const causes = Array.isArray(details.causes)
      ? details.causes.flatMap((c: { reason?: unknown }) => (typeof c?.reason === 'string' ? [c.reason] : []))
      : [];
    return { ...(typeof details.kind === 'string' ? { kind: details.kind } : {}), causes };
  } catch {
    return { causes: [] };
  }
}

/**
 * How the API server says an object is too large for etcd (a 500): etcd's own refusal past its
 * --max-request-bytes (1.5 MiB by default), and the gRPC client's past its send limit (2 MiB).
 */
const TOO_LARGE =
  /etcdserver: request is too large|ResourceExhausted.*larger than max|request entity too large/i;

/** Whether a failed write is worth retrying, and if not why (see the module comment). */
export function writeFailure(error: unknown): WriteFailure {
  const e = classifyError(error);
  const details = statusDetails(error);
  const namespaceGone =
    details.kind === 'namespaces' ||
    details.causes.includes('NamespaceTerminating') ||
    /because it is being terminated/.test(e.detail);
  if (e.code === 404 && details.kind === 'namespaces')
    return { permanent: true, reason: 'namespace-gone', scope: 'target' };
  if (e.code === 403)
    return namespaceGone
      ? { permanent: true, reason: 'namespace-gone', scope: 'target' }
      : { permanent: true, reason: 'forbidden', scope: 'target' };
  if (e.code === 413 || (e.code !== undefined && e.code >= 500 && TOO_LARGE.test(e.detail)))
    return { permanent: true, reason: 'too-large', scope: 'content' };
  if (e.code === 400 || e.code === 422) return { permanent: true, reason: 'invalid', scope: 'content' };
  return { permanent: false };
}
