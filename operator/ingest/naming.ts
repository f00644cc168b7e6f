/**
 * Deterministic names and selection labels for what ingestion writes (operator/README.md, "AuditRecord names
 * are deterministic"). A retried or replayed report computes the same names as the first delivery, so it finds
 * what that delivery wrote instead of writing it twice.
 *
 *   AuditRecord  <pod>-<container>-<session pid | "exec">-<boot, first 8>-<part>[-<hash>]
 *   Event        <pod>.<boot, first 8>.<seq>[.<hash>]      (a summary of folded Events: <pod>.<boot 8>.<seq>.folded)
 *
 * Every part comes from the agent and may be anything: what is not a lower-case letter or digit (or a dot in
 * a pod name) is replaced, a name too long for the API server (253) has its pod name cut, and in both cases a
 * short hash of the untouched parts is appended, so two different sessions never share a name.
 */
import { createHash } from 'node:crypto';

/** Longest object name the API server takes (DNS subdomain). */
export const MAX_NAME = 253;
const MAX_LABEL_VALUE = 63;
const HASH_LENGTH = 8;

export const GROUP_PREFIX = 'containeraudit.io';

/** Labels on every AuditRecord, for `kubectl get ar -l ...` and for retention. Values: see labelValue(). */
export const RECORD_LABELS = {
  pod: `${GROUP_PREFIX}/pod`,
  podUid: `${GROUP_PREFIX}/pod-uid`,
  container: `${GROUP_PREFIX}/container`,
  node: `${GROUP_PREFIX}/node`,
  policy: `${GROUP_PREFIX}/policy`,
  sessionKind: `${GROUP_PREFIX}/session-kind`,
  managedBy: 'app.kubernetes.io/managed-by',
} as const;
export const MANAGED_BY = 'container-auditor';

export function shortHash(...parts: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, HASH_LENGTH);
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** One name segment: lower-case letters, digits and (inside) dashes. `changed` when it had to be altered. */
export function segment(raw: string): { text: string; changed: boolean } {
  const text = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '');
  return { text: text || 'x', changed: text !== raw };
}

/** A pod name is a DNS subdomain already; anything else is made into a segment. */
function podSegment(pod: string): { text: string; changed: boolean } {
  return DNS_SUBDOMAIN.test(pod) ? { text: pod, changed: false } : segment(pod);
}

/** Cuts a name part to `max` characters without leaving a dash or dot at its end. */
function cut(text: string, max: number): string {
  return text.slice(0, Math.max(1, max)).replace(/[-.]+$/, '') || 'x';
}

/** Joins parts after the pod name; appends the hash, cutting the pod name, when anything was altered. */
function compose(
  pod: string,
  rest: readonly { text: string; changed: boolean }[],
  separator: string,
  identity: readonly string[],
  forceHash: boolean,
): string {
  const podPart = podSegment(pod);
  const tail = rest.map((r) => r.text).join(separator);
  const plain = `${podPart.text}${separator}${tail}`;
  const altered = forceHash || podPart.changed || rest.some((r) => r.changed);
  if (!altered && plain.length <= MAX_NAME) return plain;
  const suffix = `${separator}${tail}${separator}${shortHash(...identity)}`;
  return `${cut(podPart.text, MAX_NAME - suffix.length)}${suffix}`;
}

export interface RecordNameParts {
  pod: string;
  container: string;
  kind: 'shell' | 'exec';
  /** The shell's host pid (shell sessions). */
  pid: number;
  boot: string;
  part: number;
  /**
   * Set when the plain name is already taken by another session (another pod of the same name, another
   * container instance): the hash of this value and the identity makes the name unique again.
   */
  disambiguator?: string;
}

export function recordName(p: RecordNameParts): string {
  const session = p.kind === 'shell' ? String(p.pid) : 'exec';
  const boot = segment(p.boot.slice(0, 8));
  const identity = [p.pod, p.container, session, p.boot, ...(p.disambiguator ? [p.disambiguator] : [])];
  return compose(
    p.pod,
    [segment(p.container), { text: session, changed: false }, boot, { text: String(p.part), changed: false }],
    '-',
    identity,
    p.disambiguator !== undefined,
  );
}

/** `<pod>.<boot 8>.<seq>`: a retried Event is an AlreadyExists, not a second Event. */
export function eventName(pod: string, boot: string, seq: number, suffix?: string): string {
  const parts = [segment(boot.slice(0, 8)), { text: String(seq), changed: false }];
  if (suffix) parts.push({ text: suffix, changed: false });
  return compose(pod, parts, '.', [pod, boot, String(seq), suffix ?? ''], false);
}

/**
 * A label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends). Values that do not fit are cut
 * and end in a hash; select such objects by the spec fields instead (`kubectl get ar` shows them).
 */
export function labelValue(raw: string): string {
  if (raw.length <= MAX_LABEL_VALUE && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(raw)) return raw;
  const hash = shortHash(raw);
  const body = raw
    .replace(/[^-A-Za-z0-9_.]/g, '-')
    .slice(0, MAX_LABEL_VALUE - HASH_LENGTH - 1)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return body ? `${body}-${hash}` : hash;
}
