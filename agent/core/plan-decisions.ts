/**
 * What a plan change means for the containers the agent knows (`replan`) and for the exec probe
 * (`execProbeChange`). Pure: the loop carries the decisions out (probes, the audited set, logs). At a
 * hand-off the loop asks the plan itself (AuditPlan.auditOf): one container, one answer.
 */
import type { ContainerRecord } from '../containers/registry.js';
import type { AuditPlan, ContainerAudit } from '../plan/plan.js';
import type { Audited } from './attribution.js';

/** One container's change after a plan change, in the registry's order. */
export type Replanned =
  /** No longer audited: its probes go. */
  | { action: 'stop'; container: ContainerRecord; reason: string }
  /** Newly audited: decided and probed as at a create, coverage `late` unless its create is in this batch. */
  | { action: 'audit'; container: ContainerRecord; audit: ContainerAudit; late: boolean }
  /**
   * Still audited under other rules, which apply from now on; its probes stay, go (`drop-shells`: shells no
   * longer audited) or come (`add-shells`: shells audited now).
   */
  | {
      action: 'rerule';
      container: ContainerRecord;
      audit: ContainerAudit;
      shells: 'keep' | 'drop-shells' | 'add-shells';
      late: boolean;
    };

/**
 * Every registered container decided again under `plan`. Containers whose decision is unchanged (not audited
 * before nor now, or audited under the very same rules) are left out. `createsInBatch` are the containers
 * whose create waits in this batch: the wrapper still holds them, so they cannot have run unprobed.
 */
export function replan(
  plan: AuditPlan,
  registered: readonly ContainerRecord[],
  audited: ReadonlyMap<string, Audited>,
  createsInBatch: ReadonlySet<string>,
): Replanned[] {
  const out: Replanned[] = [];
  for (const container of registered) {
    const before = audited.get(container.id);
    const decision = plan.auditOf(container);
    const late = !createsInBatch.has(container.id);
    if (!decision.audited) {
      if (before) out.push({ action: 'stop', container, reason: decision.reason });
      continue;
    }
    const { audit } = decision;
    if (!before) {
      out.push({ action: 'audit', container, audit, late });
      continue;
    }
    if (before.audit === audit) continue;
    const shells =
      before.audit.interactiveShells && !audit.interactiveShells
        ? 'drop-shells'
        : !before.audit.interactiveShells && audit.interactiveShells
          ? 'add-shells'
          : 'keep';
    out.push({ action: 'rerule', container, audit, shells, late });
  }
  return out;
}

/** Whether the exec probe must start or stop for the plan (`undefined`: it stays as it is). */
export function execProbeChange(plan: AuditPlan, running: boolean): 'start' | 'stop' | undefined {
  if (plan.execs && !running) return 'start';
  if (!plan.execs && running) return 'stop';
  return undefined;
}
