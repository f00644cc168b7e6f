/**
 * Which audited container a captured line or exec belongs to. Pure: the registry's answer for the event's
 * mount namespace and the agent's audited set are passed in.
 *
 * A line carries the inode of its process's mount namespace; the registry says which container holds that
 * namespace. The line is attributed only when that container is audited *as the same record*: a container
 * re-registered since it was decided (a new init process, the namespace inode reused) has a new record, and
 * until it is decided again its lines belong to no one rather than to the rules of the old one.
 */
import type { ContainerRecord } from '../containers/registry.js';
import type { ContainerAudit } from '../plan/plan.js';

/** A container the agent audits, under the rules its plan gave it. */
export interface Audited {
  container: ContainerRecord;
  audit: ContainerAudit;
}

/** What the event is: a line readline returned (audited by `interactiveShells`) or an exec (by `execs`). */
export type Captured = 'line' | 'exec';

export type Attribution =
  | { to: 'container'; entry: Audited }
  /**
   * `unknown`: no registered container holds the namespace (the host, a container the agent never heard of);
   * `not-audited`: the container is not audited; `stale`: its audit was decided for an earlier record of the
   * same id; `not-captured`: audited, but not for this kind of event.
   */
  | { to: 'none'; why: 'unknown' | 'not-audited' | 'stale' | 'not-captured' };

export function attribute(
  holder: ContainerRecord | undefined,
  audited: ReadonlyMap<string, Audited>,
  kind: Captured,
): Attribution {
  if (!holder) return { to: 'none', why: 'unknown' };
  const entry = audited.get(holder.id);
  if (!entry) return { to: 'none', why: 'not-audited' };
  if (entry.container !== holder) return { to: 'none', why: 'stale' };
  const captured = kind === 'line' ? entry.audit.interactiveShells : entry.audit.execs;
  if (!captured) return { to: 'none', why: 'not-captured' };
  return { to: 'container', entry };
}
