/**
 * The cluster agent's AuditPlan: the operator's plan for this node (api/agentapi/v1.ts NodePlan), which
 * names each container to audit as the node knows it, by CRI annotations, and the policy whose rules apply.
 *
 *   a container is audited   when its (pod uid, container name) is listed, and its policy's rules compile
 *   rules                    compiled once per policy, and kept across plan versions while they are unchanged,
 *                            so a new plan that does not touch a policy hands the agent the same ContainerAudit
 *   maxCommandBytes, execs   over every policy whose rules compile (the probes serve all of them)
 *
 * Selection itself (namespaces, pod labels, overlapping policies) is the operator's; the node trusts the list.
 * A policy whose patterns do not compile here audits nothing (the operator should have refused it: a
 * difference between the two means versions differ) and is named in `errors`, for AgentState.
 *
 * The plan changes in place (`update`); the agent re-evaluates its containers when told (Agent.replan).
 */
import type { NodePlan, PlanRules } from '../../api/agentapi/v1.js';
import { DEFAULT_MAX_COMMAND_BYTES } from '../../api/v1alpha1/containerauditpolicy.js';
import { compileCommandRules } from '../../common/rules/command-rules.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { AuditPlan, CommandFilter, ContainerAudit } from '../plan/plan.js';

export type CompileRules = (
  rules: PlanRules,
) => { ok: true; filter: CommandFilter } | { ok: false; errors: { field: string; message: string }[] };

export const compilePlanRules: CompileRules = (rules) => {
  const compiled = compileCommandRules(rules);
  return compiled.ok ? { ok: true, filter: compiled.rules } : compiled;
};

type Compiled = { rules: string; audit: ContainerAudit } | { rules: string; error: string };

/** The key a planned container is found by: what CRI annotations tell about it. */
export function containerKey(podUid: string, containerName: string): string {
  return `${podUid}/${containerName}`;
}

export class ClusterPlan implements AuditPlan {
  private plan: NodePlan | undefined;
  /** Policy name -> compiled rules, with the rules' JSON they were compiled from. */
  private compiled = new Map<string, Compiled>();
  /** containerKey -> policy name. */
  private containers = new Map<string, string>();
  private max = DEFAULT_MAX_COMMAND_BYTES;
  private anyExecs = false;

  constructor(
    plan?: NodePlan,
    private readonly compile: CompileRules = compilePlanRules,
  ) {
    if (plan) this.update(plan);
  }

  /** Takes a new plan: compiles what changed, drops policies no longer in it. */
  update(plan: NodePlan): void {
    const compiled = new Map<string, Compiled>();
    for (const [name, rules] of Object.entries(plan.policies)) {
      const text = JSON.stringify(rules);
      const before = this.compiled.get(name);
      compiled.set(name, before?.rules === text ? before : this.compileOne(name, rules, text));
    }
    const containers = new Map<string, string>();
    for (const c of plan.containers) containers.set(containerKey(c.podUid, c.containerName), c.policy);
    const audits = [...compiled.values()].flatMap((c) => ('audit' in c ? [c.audit] : []));
    this.plan = plan;
    this.compiled = compiled;
    this.containers = containers;
    this.max =
      audits.length > 0 ? Math.max(...audits.map((a) => a.maxCommandBytes)) : DEFAULT_MAX_COMMAND_BYTES;
    this.anyExecs = audits.some((a) => a.execs);
  }

  private compileOne(name: string, rules: PlanRules, text: string): Compiled {
    const result = this.compile(rules);
    if (!result.ok)
      return {
        rules: text,
        error: `policy ${name}: its rules do not compile on this node: ${result.errors
          .map((e) => `${e.field}: ${e.message}`)
          .join('; ')}`,
      };
    return {
      rules: text,
      audit: {
        policy: name,
        interactiveShells: rules.capture.interactiveShells,
        execs: rules.capture.execs,
        maxCommandBytes: rules.capture.maxCommandBytes,
        filter: result.filter,
        redactKeyBlocks: rules.redact.builtins,
      },
    };
  }

  /** The version of the plan in force, if any. */
  get version(): string | undefined {
    return this.plan?.version;
  }

  get current(): NodePlan | undefined {
    return this.plan;
  }

  get maxCommandBytes(): number {
    return this.max;
  }

  get execs(): boolean {
    return this.anyExecs;
  }

  /** Standing problems of this plan: policies whose rules do not compile. */
  get errors(): string[] {
    return [...this.compiled.values()].flatMap((c) => ('error' in c ? [c.error] : []));
  }

  /** How many containers the plan lists (some may not run on the node yet, or any more). */
  get listed(): number {
    return this.containers.size;
  }

  auditOf(
    container: ContainerRecord,
  ): { audited: true; audit: ContainerAudit } | { audited: false; reason: string } {
    const { identity } = container;
    if (identity.kind === 'sandbox') return { audited: false, reason: 'a pod sandbox (pause) container' };
    if (!this.plan) return { audited: false, reason: 'no plan from the operator yet' };
    if (identity.podUid === undefined || identity.containerName === undefined)
      return {
        audited: false,
        reason: 'no pod uid or container name in its annotations (the cluster plan names containers by them)',
      };
    const policy = this.containers.get(containerKey(identity.podUid, identity.containerName));
    if (policy === undefined)
      return { audited: false, reason: `not in the node plan (version ${this.plan.version})` };
    const compiled = this.compiled.get(policy);
    if (!compiled)
      return { audited: false, reason: `the plan names policy ${policy} but carries no rules for it` };
    if ('error' in compiled) return { audited: false, reason: compiled.error };
    return { audited: true, audit: compiled.audit };
  }
}
