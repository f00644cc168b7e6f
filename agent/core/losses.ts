/**
 * Loss records: what the agent knows it did not capture. Pure: times and counts are passed in.
 */
import type { UnstampedRecord } from '../../api/records/v1.js';
import type { CaptureLoss } from '../capture/readline/capture.js';
import type { ExecCaptureLoss } from '../capture/exec/capture.js';
import type { DropWindow } from '../records/line-limits.js';
import { containerRef, recordContainerId } from '../records/build.js';
import type { Audited } from './attribution.js';

export type LossRecordOut = Extract<UnstampedRecord, { kind: 'loss' }>;

/** A loss's detail is cut to this (the schema's bound). */
const DETAIL_CHARS = 2048;

/**
 * After a restart: the containers found again were unprobed while no agent ran, from the previous agent's
 * last heartbeat (when known) until now. None found: nothing to report.
 */
export function agentDownLoss(
  found: number,
  downSince: Date | undefined,
  now: Date,
): LossRecordOut | undefined {
  if (found === 0) return undefined;
  return {
    kind: 'loss',
    time: now.toISOString(),
    reason: 'agent-down',
    ...(downSince ? { since: downSince.toISOString() } : {}),
    until: now.toISOString(),
    detail: `the agent was not running; ${found} audited container(s) were unprobed in that window`,
  };
}

/** Hand-offs the runc wrapper dropped between two reads of its counter (handoff/wrapper-drops.ts). */
export function wrapperDropsLoss(
  count: number,
  since: Date | undefined,
  until: Date,
  now: Date,
): LossRecordOut | undefined {
  if (count === 0) return undefined;
  return {
    kind: 'loss',
    time: now.toISOString(),
    reason: 'handoffs-dropped',
    count,
    ...(since ? { since: since.toISOString() } : {}),
    until: until.toISOString(),
    detail:
      `the runc wrapper wrote no hand-off for ${count} container start(s) or exec(s) (the agent was absent, ` +
      'or the spool was at its bound): those containers and execs may be unaudited',
  };
}

/**
 * One container's drops over its line limits since the last report. `entry` is the container when it is
 * still audited; one forgotten meanwhile is named by id alone.
 */
export function rateLimitedLoss(
  window: DropWindow,
  entry: Audited | undefined,
  detail: string,
  now: Date,
): LossRecordOut {
  return {
    kind: 'loss',
    time: now.toISOString(),
    ...(entry
      ? containerRef(entry.container, entry.audit.policy)
      : { containerId: recordContainerId(window.key) }),
    reason: 'rate-limited',
    count: window.count,
    since: new Date(window.sinceMs).toISOString(),
    until: new Date(window.untilMs).toISOString(),
    detail,
  };
}

/** A loss a probe reported (bpftrace exited, the kernel lost events, a line or exec came incomplete). */
export function captureLoss(
  loss: CaptureLoss | ExecCaptureLoss,
  /** A monotonic time of the probes (bpftrace's nsecs) as wall time. */
  toDate: (ns: bigint) => Date,
  now: Date,
): LossRecordOut {
  return {
    kind: 'loss',
    time: now.toISOString(),
    reason: loss.reason,
    ...(loss.count !== undefined ? { count: loss.count } : {}),
    ...(loss.fromNs !== undefined ? { since: toDate(loss.fromNs).toISOString() } : {}),
    ...(loss.toNs !== undefined ? { until: toDate(loss.toNs).toISOString() } : {}),
    ...(loss.detail !== undefined ? { detail: loss.detail.slice(0, DETAIL_CHARS) } : {}),
  };
}

/** bpftrace's nsecs and process.hrtime are both CLOCK_MONOTONIC: a past monotonic time as wall time. */
export function monotonicToDate(ns: bigint, nowNs: bigint, nowMs: number): Date {
  return new Date(nowMs - Number(nowNs - ns) / 1e6);
}
