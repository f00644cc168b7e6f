/**
 * Sessions and what goes into an AuditRecord, as pure functions: which session a command or exec record
 * belongs to, the recorded form of a command, how much of a batch fits in a record, and the status that
 * follows from its commands.
 *
 * Sessions (operator/ingest/README.md):
 * - shell: one interactive Bash, identified by its host pid within one agent boot (the command record's pid);
 * - exec: every program started in one container (pod uid + container name) within one agent boot. Exec
 *   records are not tied to a shell, and the operator cannot follow process trees, so the container is the
 *   session; a restarted container continues the same exec session.
 * A record without pod namespace, pod name or container name cannot become an AuditRecord (sessionOf: undefined).
 */
import { execCommandLine, quoteArgv } from '../../api/records/text.js';
import type { CommandRecord, ExecRecord, Alert } from '../../api/records/v1.js';
import {
  API_VERSION,
  MAX_COMMANDS_PER_RECORD,
  RECORD_KIND,
  SEVERITIES,
  type AuditRecord,
  type AuditRecordSpec,
  type AuditRecordStatus,
  type RecordedCommand,
} from '../../api/v1alpha1/index.js';
import { storedBytes } from '../../api/stored-size.js';
import { MANAGED_BY, RECORD_LABELS, labelValue, recordName } from './naming.js';

type Loss = NonNullable<AuditRecordStatus['losses']>[number];

/**
 * An AuditRecord stays under this many bytes as the API server stores it (api/stored-size.ts, metadata and
 * managedFields included): etcd takes 1.5 MiB per request by default, which leaves half a MiB of margin.
 */
export const MAX_RECORD_BYTES = 1024 * 1024;
const MAX_LOSSES = 64;

export interface SessionIdentity {
  namespace: string;
  pod: string;
  /** '' when the node did not know it. */
  podUid: string;
  container: string;
  containerId: string;
  image?: string;
  node: string;
  boot: string;
  /** '' when the record named none. */
  policy: string;
  kind: 'shell' | 'exec';
  /** The shell's host pid; 0 for exec sessions (no single leader). */
  pid: number;
  nsPid?: number;
}

/**
 * The session a command or exec record belongs to; undefined without pod identity. Its fields are copied: the
 * record's schema (api/records/v1.ts) holds them to the AuditRecord's bounds, which the agent cut them to.
 */
export function sessionOf(record: CommandRecord | ExecRecord): SessionIdentity | undefined {
  const namespace = record.pod?.namespace;
  const pod = record.pod?.name;
  const container = record.container;
  if (!namespace || !pod || !container) return undefined;
  const shell = record.kind === 'command';
  return {
    namespace,
    pod,
    podUid: record.pod?.uid ?? '',
    container,
    containerId: record.containerId,
    ...(record.image !== undefined ? { image: record.image } : {}),
    node: record.node,
    boot: record.boot,
    policy: record.policy ?? '',
    kind: shell ? 'shell' : 'exec',
    pid: shell ? record.pid : 0,
    ...(shell && record.nsPid !== undefined ? { nsPid: record.nsPid } : {}),
  };
}

/** The in-memory key of a session: what tells two sessions apart (see the module comment). */
export function sessionKey(id: SessionIdentity): string {
  return JSON.stringify(
    id.kind === 'shell'
      ? [id.node, id.boot, id.namespace, id.pod, id.podUid, id.container, id.containerId, 'shell', id.pid]
      : [id.node, id.boot, id.namespace, id.pod, id.podUid, id.container, 'exec'],
  );
}

/** True when a stored record's spec belongs to this session (its name may be taken by another one). */
export function sameSession(spec: AuditRecordSpec, id: SessionIdentity): boolean {
  return (
    spec.pod.uid === id.podUid &&
    spec.container.name === id.container &&
    spec.session.kind === id.kind &&
    spec.session.pid === id.pid &&
    spec.session.bootId === id.boot &&
    spec.node === id.node &&
    (id.kind === 'exec' || spec.container.id === id.containerId)
  );
}

export function nameOf(id: SessionIdentity, part: number, disambiguate: boolean): string {
  return recordName({
    pod: id.pod,
    container: id.container,
    kind: id.kind,
    pid: id.pid,
    boot: id.boot,
    part,
    ...(disambiguate ? { disambiguator: `${id.podUid}/${id.containerId}` } : {}),
  });
}

export function recordLabels(id: SessionIdentity): Record<string, string> {
  return {
    [RECORD_LABELS.pod]: labelValue(id.pod),
    ...(id.podUid ? { [RECORD_LABELS.podUid]: labelValue(id.podUid) } : {}),
    [RECORD_LABELS.container]: labelValue(id.container),
    [RECORD_LABELS.node]: labelValue(id.node),
    ...(id.policy ? { [RECORD_LABELS.policy]: labelValue(id.policy) } : {}),
    [RECORD_LABELS.sessionKind]: id.kind,
    [RECORD_LABELS.managedBy]: MANAGED_BY,
  };
}

/** A new part of a session, without status (the API server ignores status on create). */
export function newRecord(id: SessionIdentity, name: string, part: number, start: string): AuditRecord {
  return {
    apiVersion: API_VERSION,
    kind: RECORD_KIND,
    // No owner reference to the pod: records outlive it (retention is the policy's).
    metadata: { name, namespace: id.namespace, labels: recordLabels(id) },
    spec: {
      pod: { name: id.pod, uid: id.podUid },
      container: {
        name: id.container,
        id: id.containerId,
        ...(id.image !== undefined ? { image: id.image } : {}),
      },
      node: id.node,
      policy: id.policy,
      session: {
        kind: id.kind,
        pid: id.pid,
        ...(id.nsPid !== undefined ? { nsPid: id.nsPid } : {}),
        start,
        part,
        bootId: id.boot,
      },
    },
  };
}

const severityRank = (s: Alert['severity']): number => SEVERITIES.indexOf(s);

function alertFields(alerts: readonly Alert[]): Pick<RecordedCommand, 'alert' | 'alerts'> {
  if (alerts.length === 0) return {};
  const worst = alerts.reduce((a, b) => (severityRank(b.severity) > severityRank(a.severity) ? b : a));
  return {
    alert: { name: worst.name, severity: worst.severity },
    alerts: [...new Set(alerts.map((a) => a.name))].slice(0, 64),
  };
}

/** The text a command or exec record shows: the line typed, or the quoted argv. */
export function displayText(record: CommandRecord | ExecRecord): string {
  return record.kind === 'command' ? record.command : quoteArgv(record.argv);
}

/**
 * A command or exec record as an AuditRecord stores it: a copy (the agent cut it to the AuditRecord's bounds,
 * and the record's schema holds it to them), an exec's argv as its quoted command line.
 */
export function recordedCommand(record: CommandRecord | ExecRecord): RecordedCommand {
  const text =
    record.kind === 'command'
      ? { command: record.command, commandBase64: record.commandBase64 }
      : execCommandLine(record.argv, record.argvBase64);
  return {
    seq: record.seq,
    time: record.time,
    pid: record.pid,
    ...(record.nsPid !== undefined ? { nsPid: record.nsPid } : {}),
    // An exec seen by the runtime alone has no uid: left out rather than guessed.
    ...(record.uid !== undefined ? { uid: record.uid } : {}),
    command: text.command,
    ...(text.commandBase64 !== undefined ? { commandBase64: text.commandBase64 } : {}),
    truncated: record.truncated,
    redacted: record.redacted,
    ...alertFields(record.alerts),
  };
}

export interface AppendLimits {
  maxCommands: number;
  maxBytes: number;
}

export const DEFAULT_LIMITS: AppendLimits = {
  maxCommands: MAX_COMMANDS_PER_RECORD,
  maxBytes: MAX_RECORD_BYTES,
};

/**
 * How much of `incoming` (new commands, none already in the record) fits in a record that holds `existing`
 * and encodes to `recordBytes`: `added` go in, `rest` continue in the next part. An empty record always takes
 * at least one command, so a session always moves on.
 */
export function fitCommands(
  existingCount: number,
  recordBytes: number,
  incoming: readonly RecordedCommand[],
  limits: AppendLimits,
): { added: RecordedCommand[]; rest: RecordedCommand[] } {
  let count = existingCount;
  let bytes = recordBytes;
  let i = 0;
  for (; i < incoming.length; i++) {
    const size = storedBytes(incoming[i]) + 1;
    const empty = count === 0;
    if (!empty && (count >= limits.maxCommands || bytes + size > limits.maxBytes)) break;
    count++;
    bytes += size;
  }
  return { added: incoming.slice(0, i), rest: incoming.slice(i) };
}

/** True when no further command goes into this record. */
export function isFull(record: AuditRecord, limits: AppendLimits): boolean {
  const n = record.status?.commands?.length ?? 0;
  return (
    record.status?.phase === 'Closed' || n >= limits.maxCommands || storedBytes(record) >= limits.maxBytes
  );
}

/** Commands in `incoming` that are new: not in `seen` and not repeated within `incoming` (first one wins). */
export function splitDuplicates<T extends { seq: number }>(
  incoming: readonly T[],
  seen: ReadonlySet<number>,
): { fresh: T[]; duplicates: T[] } {
  const fresh: T[] = [];
  const duplicates: T[] = [];
  const taken = new Set<number>();
  for (const c of incoming) {
    if (seen.has(c.seq) || taken.has(c.seq)) duplicates.push(c);
    else {
      taken.add(c.seq);
      fresh.push(c);
    }
  }
  return { fresh, duplicates };
}

const lossKey = (l: Loss): string => JSON.stringify([l.reason, l.count, l.since ?? '', l.until ?? '']);

/** Losses with `added` merged in: equal entries once, at most MAX_LOSSES (the oldest folded into one). */
export function mergeLosses(existing: readonly Loss[], added: readonly Loss[]): Loss[] {
  const keys = new Set(existing.map(lossKey));
  const merged = [...existing];
  for (const l of added) {
    if (keys.has(lossKey(l))) continue;
    keys.add(lossKey(l));
    merged.push(l);
  }
  if (merged.length <= MAX_LOSSES) return merged;
  const folded = merged.slice(0, merged.length - MAX_LOSSES + 1);
  const earlier: Loss = {
    reason: `earlier losses (${folded.length} entries)`,
    count: folded.reduce((n, l) => n + l.count, 0),
    ...(folded[0]?.since !== undefined ? { since: folded[0].since } : {}),
  };
  return [earlier, ...merged.slice(merged.length - MAX_LOSSES + 1)];
}

/** The status of a record holding `commands` (any order; stored by seq) and `losses`. */
export function statusOf(
  commands: readonly RecordedCommand[],
  losses: readonly Loss[],
  phase: 'Active' | 'Closed',
): AuditRecordStatus {
  const sorted = [...commands].sort((a, b) => a.seq - b.seq);
  const last = sorted.reduce<string | undefined>(
    (t, c) => (t === undefined || Date.parse(c.time) > Date.parse(t) ? c.time : t),
    undefined,
  );
  return {
    phase,
    commands: sorted,
    counts: {
      commands: sorted.length,
      alerts: sorted.filter((c) => c.alert !== undefined).length,
      redacted: sorted.filter((c) => c.redacted).length,
      truncated: sorted.filter((c) => c.truncated).length,
    },
    ...(last !== undefined ? { lastCommandTime: last } : {}),
    ...(losses.length > 0 ? { losses: [...losses] } : {}),
  };
}
