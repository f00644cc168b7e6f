/**
 * Events on the audited Pod, as pure functions: which Event a command or exec record becomes (core/v1, the
 * kind `kubectl describe pod` lists), its message (under 1 KiB, cut with an ellipsis), the key under which
 * repeats of the same command are aggregated, and the summary of what the rate limit folded.
 *
 *   Normal  ShellCommand    app (uid 0, pid 4242): ls -la /
 *   Normal  ExecCommand     app (uid 0, pid 4300): /usr/bin/curl -s http://x
 *   Warning AuditAlert      curl-pipe-shell (high) in app (uid 0, pid 4242): curl x | sh
 *   Normal  CommandsFolded  37 commands folded by the Event rate limit (burst 25, 5/s): ls; id; ...
 *   Warning NotAudited      app is not audited: no readline in /bin/bash
 *   Warning AuditedLate     app was audited late (from 2026-03-01T10:00:00Z): earlier commands may be missing
 *
 * The last two carry, in the pod's namespace, what the cluster-scoped policy status leaves out (the status
 * counts coverage gaps; which container, and why, is the namespace's business).
 *
 * Messages are for people: what came from the container (the command, and for good measure every name) is
 * shown with its control and bidirectional formatting characters escaped (common/text/escape.ts), so a
 * backspace, a line feed or U+202E typed into a shell cannot make `kubectl describe pod` show another command
 * or a fake line. The AuditRecord keeps the exact bytes.
 */
import type { CoreV1Event } from '@kubernetes/client-node';
import type { Alert, CommandRecord, CoverageRecord, ExecRecord } from '../../api/records/v1.js';
import { SEVERITIES } from '../../api/v1alpha1/index.js';
import { ELLIPSIS, MAX_EVENT_NOTE_BYTES, excerpt } from '../../common/text/escape.js';
import { EVENT_COMPONENT } from '../../common/kube/identity.js';
import { displayText } from './sessions.js';
import { eventName } from './naming.js';
import type { RateLimit } from '../../common/token-bucket.js';

export const REASONS = {
  shell: 'ShellCommand',
  exec: 'ExecCommand',
  alert: 'AuditAlert',
  folded: 'CommandsFolded',
  notAudited: 'NotAudited',
  auditedLate: 'AuditedLate',
} as const;

/** What an Event needs to know about one command or exec record. */
export interface CommandEvent {
  node: string;
  boot: string;
  seq: number;
  time: string;
  namespace: string;
  pod: string;
  /** '' when unknown (then `kubectl describe pod`, which selects by uid, does not list the Event). */
  podUid: string;
  container: string;
  kind: 'shell' | 'exec';
  text: string;
  truncated: boolean;
  pid: number;
  uid?: number;
  alerts: Alert[];
}

/** undefined when the record has no pod to put an Event on. */
export function commandEventOf(record: CommandRecord | ExecRecord): CommandEvent | undefined {
  const namespace = record.pod?.namespace;
  const pod = record.pod?.name;
  if (!namespace || !pod) return undefined;
  return {
    node: record.node,
    boot: record.boot,
    seq: record.seq,
    time: record.time,
    namespace,
    pod,
    podUid: record.pod?.uid ?? '',
    container: record.container ?? record.containerId.slice(0, 12),
    kind: record.kind === 'command' ? 'shell' : 'exec',
    text: displayText(record),
    truncated: record.truncated,
    pid: record.pid,
    ...(record.uid !== undefined ? { uid: record.uid } : {}),
    alerts: record.alerts,
  };
}

const bySeverity = (a: Alert, b: Alert): number =>
  SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity);

export function eventKind(e: CommandEvent): { type: 'Normal' | 'Warning'; reason: string } {
  if (e.alerts.length > 0) return { type: 'Warning', reason: REASONS.alert };
  return { type: 'Normal', reason: e.kind === 'shell' ? REASONS.shell : REASONS.exec };
}

export function eventMessage(e: CommandEvent): string {
  const who = `${e.container} (${e.uid !== undefined ? `uid ${e.uid}, ` : ''}pid ${e.pid})`;
  const alerts = [...e.alerts]
    .sort(bySeverity)
    .map((a) => `${a.name} (${a.severity})`)
    .join(', ');
  const head = alerts ? `${alerts} in ${who}: ` : `${who}: `;
  const text = e.truncated ? `${e.text}${ELLIPSIS}` : e.text;
  return excerpt(head + text, MAX_EVENT_NOTE_BYTES, 'bytes');
}

/** Repeats of the same command (same pod, container, shell and text) aggregate into one Event. */
export function aggregateKey(e: CommandEvent): string {
  const { type, reason } = eventKind(e);
  return JSON.stringify([e.namespace, e.pod, e.podUid, type, reason, eventMessage(e)]);
}

export interface PodRef {
  namespace: string;
  pod: string;
  podUid: string;
  node: string;
}

export function podKey(p: PodRef): string {
  return JSON.stringify([p.namespace, p.pod, p.podUid]);
}

function involvedObject(p: PodRef, container?: string): CoreV1Event['involvedObject'] {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    namespace: p.namespace,
    name: p.pod,
    ...(p.podUid ? { uid: p.podUid } : {}),
    ...(container ? { fieldPath: `spec.containers{${container}}` } : {}),
  };
}

/** What sets one Event apart from another; the rest is the same for every Event the operator writes. */
interface EventParts {
  name: string;
  container?: string;
  type: string;
  reason: string;
  message: string;
  firstTimestamp: Date;
  lastTimestamp: Date;
}

/** An Event on the pod `p` (on one of its containers, if named), from the agent on its node, written once. */
function podEvent(p: PodRef, e: EventParts): CoreV1Event {
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: e.name, namespace: p.namespace },
    involvedObject: involvedObject(p, e.container),
    type: e.type,
    reason: e.reason,
    message: e.message,
    source: { component: EVENT_COMPONENT, host: p.node },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: p.node,
    firstTimestamp: e.firstTimestamp,
    lastTimestamp: e.lastTimestamp,
    count: 1,
  };
}

export function commandEventBody(e: CommandEvent): CoreV1Event {
  const time = new Date(e.time);
  return podEvent(e, {
    name: eventName(e.pod, e.boot, e.seq),
    container: e.container,
    ...eventKind(e),
    message: eventMessage(e),
    firstTimestamp: time,
    lastTimestamp: time,
  });
}

/** A coverage record that tells of a problem (a gap, or audited late), as an Event on its pod. */
export interface CoverageEvent extends PodRef {
  boot: string;
  seq: number;
  time: string;
  container: string;
  late: boolean;
  /** The agent's words (a path, often): shown escaped, in the pod's namespace only. */
  reason?: string;
  coveredFrom?: string;
}

/** undefined when the record tells of no problem, or names no pod to put an Event on. */
export function coverageEventOf(r: CoverageRecord): CoverageEvent | undefined {
  const namespace = r.pod?.namespace;
  const pod = r.pod?.name;
  if (!namespace || !pod || !r.container) return undefined;
  if (r.status !== 'gap' && !r.late) return undefined;
  return {
    namespace,
    pod,
    podUid: r.pod?.uid ?? '',
    node: r.node,
    boot: r.boot,
    seq: r.seq,
    time: r.time,
    container: r.container,
    late: r.status !== 'gap',
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
    ...(r.coveredFrom !== undefined ? { coveredFrom: r.coveredFrom } : {}),
  };
}

export function coverageMessage(e: CoverageEvent): string {
  const text = e.late
    ? `${e.container} was audited late${e.coveredFrom ? ` (from ${e.coveredFrom})` : ''}: earlier commands may be missing`
    : `${e.container} is not audited: ${e.reason || 'the agent gave no reason'}`;
  return excerpt(text, MAX_EVENT_NOTE_BYTES, 'bytes');
}

export function coverageEventBody(e: CoverageEvent): CoreV1Event {
  const time = new Date(e.time);
  return podEvent(e, {
    name: eventName(e.pod, e.boot, e.seq),
    container: e.container,
    type: 'Warning',
    reason: e.late ? REASONS.auditedLate : REASONS.notAudited,
    message: coverageMessage(e),
    firstTimestamp: time,
    lastTimestamp: time,
  });
}

/** What the rate limit folded for one pod during one folding window. */
export interface Fold extends PodRef {
  boot: string;
  /** The first folded record names the summary Event. */
  firstSeq: number;
  firstTime: string;
  lastTime: string;
  count: number;
  alerts: number;
  /** The first few folded commands, shown in the summary (escaped and cut). */
  samples: string[];
}

export const MAX_FOLD_SAMPLES = 10;
const SAMPLE_BYTES = 120;

export function startFold(e: CommandEvent): Fold {
  return {
    namespace: e.namespace,
    pod: e.pod,
    podUid: e.podUid,
    node: e.node,
    boot: e.boot,
    firstSeq: e.seq,
    firstTime: e.time,
    lastTime: e.time,
    count: 0,
    alerts: 0,
    samples: [],
  };
}

/** The fold with one more command counted in it (pure). */
export function addToFold(fold: Fold, e: CommandEvent): Fold {
  const later = Date.parse(e.time) > Date.parse(fold.lastTime);
  return {
    ...fold,
    lastTime: later ? e.time : fold.lastTime,
    count: fold.count + 1,
    alerts: fold.alerts + (e.alerts.length > 0 ? 1 : 0),
    samples:
      fold.samples.length < MAX_FOLD_SAMPLES
        ? [...fold.samples, excerpt(e.text, SAMPLE_BYTES, 'bytes')]
        : fold.samples,
  };
}

/** The summary: counts, then as many whole samples as fit under MAX_EVENT_NOTE_BYTES (none is cut here). */
export function foldMessage(fold: Fold, limit: RateLimit): string {
  const what = `${fold.count} command${fold.count === 1 ? '' : 's'} folded`;
  const alerts = fold.alerts > 0 ? `, ${fold.alerts} with alerts` : '';
  const head = `${what}${alerts} by the Event rate limit (burst ${limit.burst}, ${limit.perSecond}/s): `;
  const more = '; ...';
  let shown = 0;
  let bytes = Buffer.byteLength(head) + Buffer.byteLength(more);
  for (const sample of fold.samples) {
    const add = Buffer.byteLength(sample) + (shown > 0 ? 2 : 0);
    if (bytes + add > MAX_EVENT_NOTE_BYTES) break;
    bytes += add;
    shown++;
  }
  return `${head}${fold.samples.slice(0, shown).join('; ')}${fold.count > shown ? more : ''}`;
}

export function foldEventBody(fold: Fold, limit: RateLimit): CoreV1Event {
  // One summary, written once (count 1): how many it stands for is in the message.
  return podEvent(fold, {
    name: eventName(fold.pod, fold.boot, fold.firstSeq, 'folded'),
    type: fold.alerts > 0 ? 'Warning' : 'Normal',
    reason: REASONS.folded,
    message: foldMessage(fold, limit),
    firstTimestamp: new Date(fold.firstTime),
    lastTimestamp: new Date(fold.lastTime),
  });
}
