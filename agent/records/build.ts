/**
 * Captured events + what the agent knows about their container -> records. Pure: the I/O (nsPid lookup,
 * the clock) is passed in.
 *
 * Every cut of the record path happens here, once, and the operator copies what it receives (it validates
 * it against the same bounds, api/records/v1.ts):
 * - the container's `maxCommandBytes`, to every command and every argv whatever brought it (readline probe,
 *   exec probe, the wrapper's hand-off of a `runc exec`): the probes read up to the largest limit of any
 *   policy and the hand-off carries exec args whole, so each record is cut to its own container's limit, with
 *   `truncated` set when anything was left out;
 * - the AuditRecord's bounds (api/v1alpha1/auditrecord.ts), which only redaction (a marker longer than what it
 *   replaced) or an exec's quoted command line can reach, and the container's identity (IDENTITY_LIMITS).
 * Bytes become text fields in one place too (api/records/text.ts: UTF-8, else base64 beside it).
 */
import { IDENTITY_LIMITS } from '../../api/v1alpha1/auditrecord.js';
import { commandText, fitArgvToLine, recordText } from '../../api/records/text.js';
import type { CommandRecord, ExecRecord, UnstampedRecord } from '../../api/records/v1.js';
import type { CapturedLine } from '../capture/readline/parse.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { ContainerAudit } from '../plan/plan.js';
import { REDACTED } from '../../common/rules/command-rules.js';
import { decodeEscaped, encodeEscaped } from './escaped-text.js';

type Ref = Pick<CommandRecord, 'containerId' | 'pod' | 'container' | 'image' | 'policy'>;

/**
 * A part of a container's identity within its bound. Kubernetes names never reach these bounds; a container
 * id or image that does (a runc id takes 1024 characters) is cut, as an AuditRecord would hold it.
 */
function bounded(text: string, max: number): string {
  if (text.length <= max) return text;
  // Do not split a surrogate pair.
  return text.slice(0, /[\uD800-\uDBFF]/.test(text[max - 1] ?? '') ? max - 1 : max);
}

/** A container id as records carry it (IDENTITY_LIMITS). */
export function recordContainerId(id: string): string {
  return bounded(id, IDENTITY_LIMITS.containerId);
}

/** Which container a record is about, from its CRI identity (fields it does not know are left out). */
export function containerRef(container: ContainerRecord, policy?: string): Ref {
  const { identity } = container;
  const pod = {
    ...(identity.podNamespace !== undefined
      ? { namespace: bounded(identity.podNamespace, IDENTITY_LIMITS.namespace) }
      : {}),
    ...(identity.podName !== undefined ? { name: bounded(identity.podName, IDENTITY_LIMITS.podName) } : {}),
    ...(identity.podUid !== undefined ? { uid: bounded(identity.podUid, IDENTITY_LIMITS.podUid) } : {}),
  };
  return {
    containerId: recordContainerId(container.id),
    ...(Object.keys(pod).length > 0 ? { pod } : {}),
    ...(identity.containerName !== undefined
      ? { container: bounded(identity.containerName, IDENTITY_LIMITS.containerName) }
      : {}),
    ...(identity.image !== undefined ? { image: bounded(identity.image, IDENTITY_LIMITS.image) } : {}),
    ...(policy ? { policy: bounded(policy, IDENTITY_LIMITS.policy) } : {}),
  };
}

/**
 * Bytes through redaction and alerts: the text a record may carry, exact outside what was replaced, within
 * the AuditRecord's bound (`cut` when a redaction marker made it longer than that).
 */
export function filtered(
  bytes: Buffer,
  audit: ContainerAudit,
): { text: string; base64?: string; cut: boolean; redacted: boolean; alerts: CommandRecord['alerts'] } {
  const outcome = audit.filter.apply(decodeEscaped(bytes));
  const out = outcome.redacted ? encodeEscaped(outcome.text) : bytes;
  return { ...commandText(out), redacted: outcome.redacted, alerts: outcome.alerts };
}

export function commandRecord(
  line: CapturedLine,
  container: ContainerRecord,
  audit: ContainerAudit,
  time: Date,
  nsPid: number | undefined,
  /** The line is inside a private key block (common/rules/key-blocks.ts): replaced whole. */
  inKeyBlock = false,
): Extract<UnstampedRecord, { kind: 'command' }> {
  const { bytes, cut } = cutLine(line.bytes, audit.maxCommandBytes);
  const { text, base64, redacted, alerts, ...fit } = inKeyBlock
    ? { text: REDACTED, base64: undefined, cut: false, redacted: true, alerts: [] }
    : filtered(bytes, audit);
  return {
    kind: 'command',
    time: time.toISOString(),
    ...containerRef(container, audit.policy),
    pid: line.pid,
    ...(nsPid !== undefined ? { nsPid } : {}),
    uid: line.uid,
    command: text,
    ...(base64 !== undefined ? { commandBase64: base64 } : {}),
    truncated: line.truncated || cut || fit.cut,
    redacted,
    alerts,
  };
}

/** A command line kept to `maxBytes`: the first bytes, exact, and whether anything was left out. */
export function cutLine(bytes: Buffer, maxBytes: number): { bytes: Buffer; cut: boolean } {
  const cut = bytes.length > maxBytes;
  return { bytes: cut ? bytes.subarray(0, maxBytes) : bytes, cut };
}

/**
 * argv kept to `maxBytes` as the exec probe keeps it: the strings with their NULs, the one that straddles the
 * bound cut in the middle, the rest left out.
 */
export function cutArgv(argv: readonly Buffer[], maxBytes: number): { args: Buffer[]; cut: boolean } {
  const args: Buffer[] = [];
  let room = maxBytes;
  for (const arg of argv) {
    if (room <= 0) return { args, cut: true };
    if (arg.length + 1 <= room) {
      args.push(arg);
      room -= arg.length + 1;
      continue;
    }
    args.push(arg.subarray(0, room));
    return { args, cut: true };
  }
  return { args, cut: false };
}

/**
 * An exec record's argv and `truncated`: argv cut to the container's limit (cutArgv), then redacted and
 * judged (argvFields). `alreadyCut`: the source left something out before (the probe's own bound, a path
 * too long to read).
 */
export function execArgvFields(
  argv: readonly Buffer[],
  audit: ContainerAudit,
  alreadyCut = false,
): Pick<ExecRecord, 'argv' | 'argvBase64' | 'redacted' | 'alerts' | 'truncated'> {
  const { args, cut } = cutArgv(argv, audit.maxCommandBytes);
  const { fitCut, ...fields } = argvFields(args, audit);
  return { ...fields, truncated: alreadyCut || cut || fitCut };
}

/**
 * An exec record's argv fields: redaction and alerts over the whole argument list, then the arguments kept to
 * what the AuditRecord's command line holds (fitArgvToLine: `fitCut` when that left something out); base64
 * for all when any is not UTF-8.
 */
export function argvFields(
  args: readonly Buffer[],
  audit: ContainerAudit,
): Pick<ExecRecord, 'argv' | 'argvBase64' | 'redacted' | 'alerts'> & { fitCut: boolean } {
  const outcome = audit.filter.applyArgv(args.map((a) => decodeEscaped(a)));
  const fit = fitArgvToLine(outcome.args.map((a, i) => (outcome.redacted ? encodeEscaped(a) : args[i]!)));
  const each = fit.args.map((a) => recordText(a));
  const anyBinary = each.some((a) => a.base64 !== undefined);
  return {
    argv: each.map((a) => a.text),
    ...(anyBinary ? { argvBase64: each.map((a) => a.base64 ?? Buffer.from(a.text).toString('base64')) } : {}),
    redacted: outcome.redacted,
    alerts: outcome.alerts,
    fitCut: fit.cut,
  };
}
