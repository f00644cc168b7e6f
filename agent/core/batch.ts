/**
 * The order of one hand-off batch and its acknowledgements. Pure: the loop drains the spool, resolves, attaches
 * and acknowledges; these decide what waits for what.
 *
 * A `runc create` waits (runc-wrapper) until the agent acknowledges its container, and the agent acknowledges
 * only after the container's probes are attached (or at once when there is nothing to attach), so a shell that
 * is the container's first process loses nothing. Within a batch: every hand-off is applied, the target set
 * changes once, its coverage is reported, then the ready creates are acknowledged, in the order they came. A
 * create whose resolution is still going (a hostile image, within its budget) waits for a later batch, and
 * does not hold up the others.
 */
import type { Handoff } from '../../api/handoff/v1.js';

/**
 * How long a batch waits for its resolutions before attaching those done: enough for any real image (a few
 * ms), so one batch normally starts one bpftrace; a resolution still going then is a hostile image's.
 */
export const RESOLVE_WAIT_MS = 100;

/** Whether a hand-off waits for the agent's acknowledgement (the wrapper holds `runc create` for it). */
export function awaitsAcknowledgement(h: Handoff): boolean {
  return h.verb === 'create';
}

/**
 * How long the batch waits for resolutions: after a plan change, for all of them (replan() promises the
 * probes match the plan when it resolves); otherwise RESOLVE_WAIT_MS.
 */
export function resolveWaitMs(replanning: boolean): number {
  return replanning ? Infinity : RESOLVE_WAIT_MS;
}

/**
 * The creates to acknowledge with this batch's attach, in the order they came (those left waiting from earlier
 * batches first), and those still waiting for a resolution of their container (`resolving`: container ids).
 */
export function readyToAcknowledge(
  waiting: readonly Handoff[],
  creates: readonly Handoff[],
  resolving: ReadonlySet<string>,
): { ready: Handoff[]; waiting: Handoff[] } {
  const all = [...waiting, ...creates];
  return { ready: all.filter((h) => !resolving.has(h.id)), waiting: all.filter((h) => resolving.has(h.id)) };
}

/**
 * Whether the batch must attach: creates to acknowledge, coverage to report, or probes asked for that differ
 * from the booked targets.
 */
export function mustAttach(
  ready: readonly Handoff[],
  coveragePending: boolean,
  booked: readonly string[],
  requested: readonly string[],
): boolean {
  return ready.length > 0 || coveragePending || booked.join('\n') !== requested.join('\n');
}

/** The hand-off time of each create acknowledged (the first, should one come twice): what decides `late`. */
export function createTimes(creates: readonly Handoff[]): Map<string, string> {
  const times = new Map<string, string>();
  for (const h of creates) if (!times.has(h.id)) times.set(h.id, h.time);
  return times;
}
