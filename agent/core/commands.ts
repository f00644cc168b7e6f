/**
 * What becomes of a captured event: a typed line (readline probe), a program start seen by the kernel (exec
 * probe) or handed off by the runc wrapper (a `runc exec`), or a count of lines the kernel dropped. Each
 * decision gives the record to write, or why nothing is written, and the counters it moves.
 *
 * Pure: the loop passes in the attribution (core/attribution.ts) and answers, through `gates`, the checks
 * that hold state (the container's limiter, the private-key-block tracker, exec de-duplication) and the
 * lookups that cost I/O (the pid inside the container). Each gate is asked only when the rules reach it, in
 * their order: a line of no audited container never touches a limiter, a line over its limits is never
 * looked up in /proc, and a twin never becomes a record.
 */
import type { Handoff } from '../../api/handoff/v1.js';
import { recordText } from '../../api/records/text.js';
import type { UnstampedRecord } from '../../api/records/v1.js';
import type { CapturedExec } from '../capture/exec/parse.js';
import type { KernelDrop } from '../capture/readline/capture.js';
import type { CapturedLine } from '../capture/readline/parse.js';
import type { ExecSource } from '../records/exec-dedup.js';
import { commandRecord, containerRef, execArgvFields } from '../records/build.js';
import type { Attribution, Audited } from './attribution.js';

export type CommandRecordOut = Extract<UnstampedRecord, { kind: 'command' }>;
export type ExecRecordOut = Extract<UnstampedRecord, { kind: 'exec' }>;

/** The agent's counters a captured event may move (AgentStats in agent.ts, but for losses). */
export type Counter =
  | 'linesCaptured'
  | 'commandsRecorded'
  | 'execsRecorded'
  | 'execTwinsDropped'
  | 'linesDropped'
  | 'rateLimited';
export type Counts = Partial<Record<Counter, number>>;

/**
 * Why nothing is written: the attribution's reason (no audited container to give the event to), `rate-limited`
 * (its container is over its limits: reported later as a loss), `exec-twin` (the other source's view of an exec
 * already recorded), `no-pid` (a hand-off of an exec that did not start).
 */
export type DropReason =
  Extract<Attribution, { to: 'none' }>['why'] | 'rate-limited' | 'exec-twin' | 'no-pid';

/** A record to write for `containerId` (whose limiter the loop charges with the work it took), or a drop. */
export type Outcome<R> = { counts: Counts } & (
  { write: R; containerId: string } | { drop: DropReason; containerId?: string }
);

/** A program start as de-duplication keys it (records/exec-dedup.ts). */
export interface ExecKey {
  containerId: string;
  pid: number;
  /** The first argument's bytes, as latin1 (one character a byte: both sources compare bytes). */
  firstArg: string;
  source: ExecSource;
}

export interface LineGates {
  /** Asks the container's limiter to admit one more line: true when it is over its limits. */
  overLimit(containerId: string): boolean;
  /** Feeds one line of a shell to the key-block tracker: true when it lies inside a private key block. */
  inKeyBlock(shell: string, text: string): boolean;
  /** The probe's monotonic time as wall time. */
  time(ns: bigint): Date;
  /** The pid inside the container's pid namespace, if it can be read. */
  nsPid(pid: number, mntns: number): number | undefined;
}

/**
 * A line of an audited shell becomes a command record unless its container is over its limits. Every line
 * counts as captured; one of no audited container counts as dropped, one over the limits as rate-limited. A
 * key block's state follows every line of an audited container that redacts them, rate-limited ones included:
 * a block's END must not be missed because its line was dropped.
 */
export function lineOutcome(
  line: CapturedLine,
  attribution: Attribution,
  gates: LineGates,
): Outcome<CommandRecordOut> {
  if (attribution.to !== 'container')
    return { drop: attribution.why, counts: { linesCaptured: 1, linesDropped: 1 } };
  const { container, audit } = attribution.entry;
  const over = gates.overLimit(container.id);
  const inKeyBlock =
    audit.redactKeyBlocks && gates.inKeyBlock(`${line.mntns}/${line.pid}`, line.bytes.toString('latin1'));
  if (over)
    return {
      drop: 'rate-limited',
      containerId: container.id,
      counts: { linesCaptured: 1, rateLimited: 1 },
    };
  const time = gates.time(line.ns);
  const record = commandRecord(line, container, audit, time, gates.nsPid(line.pid, line.mntns), inKeyBlock);
  return { write: record, containerId: container.id, counts: { linesCaptured: 1, commandsRecorded: 1 } };
}

/**
 * Lines the probe counted instead of printing, over a container's kernel budget: rate-limited for an audited
 * container (the loop adds them to its drops: `containerId`), dropped for any other.
 */
export function kernelDropOutcome(
  drop: KernelDrop,
  attribution: Attribution,
): { counts: Counts; containerId?: string } {
  if (attribution.to !== 'container') return { counts: { linesDropped: drop.lines } };
  return { counts: { rateLimited: drop.lines }, containerId: attribution.entry.container.id };
}

export interface ExecGates {
  /** Asks the container's limiter to admit one more exec: true when it is over its limits. */
  overLimit(containerId: string): boolean;
  /** Claims the exec for de-duplication: false when it is the twin of one already recorded. */
  firstOfTwins(key: ExecKey): boolean;
  time(ns: bigint): Date;
  nsPid(pid: number, mntns: number): number | undefined;
}

/**
 * An exec the kernel saw becomes an exec record when its container is audited for execs, within its limits,
 * and the wrapper did not hand the same exec off first. Unlike lines, execs of no audited container are not
 * counted. The record says what the kernel cut: argv past the probe's bound or a path too long to read make
 * it `truncated`, as does the container's own limit.
 */
export function kernelExecOutcome(
  exec: CapturedExec,
  attribution: Attribution,
  gates: ExecGates,
): Outcome<ExecRecordOut> {
  if (attribution.to !== 'container') return { drop: attribution.why, counts: {} };
  const { container, audit } = attribution.entry;
  if (gates.overLimit(container.id))
    return { drop: 'rate-limited', containerId: container.id, counts: { rateLimited: 1 } };
  const firstArg = (exec.argv[0] ?? Buffer.alloc(0)).toString('latin1');
  if (!gates.firstOfTwins({ containerId: container.id, pid: exec.pid, firstArg, source: 'kernel' }))
    return { drop: 'exec-twin', containerId: container.id, counts: { execTwinsDropped: 1 } };
  const path = recordText(exec.filename);
  const nsPid = gates.nsPid(exec.pid, exec.mntns);
  const record: ExecRecordOut = {
    kind: 'exec',
    time: gates.time(exec.ns).toISOString(),
    ...containerRef(container, audit.policy),
    source: 'kernel',
    pid: exec.pid,
    ...(exec.ppid > 0 ? { ppid: exec.ppid } : {}),
    ...(nsPid !== undefined ? { nsPid } : {}),
    uid: exec.uid,
    path: path.text,
    ...(path.base64 !== undefined ? { pathBase64: path.base64 } : {}),
    ...execArgvFields(exec.argv, audit, exec.truncated || exec.filenameTruncated),
  };
  return { write: record, containerId: container.id, counts: { execsRecorded: 1 } };
}

/**
 * A `runc exec` hand-off (kubectl exec) becomes an exec record when its container is audited for execs (it
 * may never reach a shell) and the kernel's view of it was not recorded first. `entry` is the container's
 * audit by id: the hand-off names its container, it is not attributed by namespace. Its time is the
 * wrapper's, and the container's limiter is not asked.
 */
export function runtimeExecOutcome(
  h: Handoff,
  entry: Audited | undefined,
  firstOfTwins: (key: ExecKey) => boolean,
): Outcome<ExecRecordOut> {
  if (!entry) return { drop: 'not-audited', counts: {} };
  if (!entry.audit.execs) return { drop: 'not-captured', containerId: entry.container.id, counts: {} };
  if (h.pid === null) return { drop: 'no-pid', containerId: entry.container.id, counts: {} };
  const args = h.process?.args ?? [];
  // The kernel sees the bytes of the first argument: compare those, not the characters.
  const firstArg = Buffer.from(args[0] ?? '').toString('latin1');
  if (!firstOfTwins({ containerId: entry.container.id, pid: h.pid, firstArg, source: 'runtime' }))
    return { drop: 'exec-twin', containerId: entry.container.id, counts: { execTwinsDropped: 1 } };
  const record: ExecRecordOut = {
    kind: 'exec',
    time: new Date(h.time).toISOString(),
    ...containerRef(entry.container, entry.audit.policy),
    source: 'runtime',
    pid: h.pid,
    ...(h.process?.user ? { uid: h.process.user.uid } : {}),
    ...execArgvFields(
      args.map((a) => Buffer.from(a)),
      entry.audit,
    ),
  };
  return { write: record, containerId: entry.container.id, counts: { execsRecorded: 1 } };
}

/**
 * The program of a `runc exec` to probe from now on, when its container audits shells: a shell exec'd from a
 * path not seen at create. Only an absolute path names a file in the container's root.
 */
export function execProgramToProbe(h: Handoff, entry: Audited | undefined): string | undefined {
  const program = h.process?.args?.[0];
  if (!entry || !entry.audit.interactiveShells || !program?.startsWith('/')) return undefined;
  return program;
}
