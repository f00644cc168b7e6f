/**
 * A node's plan as content plus version. The version is a hash of everything the agent acts on (node,
 * containers, rules), computed over a canonical form (sorted keys, sorted containers), so the same world
 * always gives the same version, whatever order the informers list objects in, and across operator
 * restarts and replicas: an agent that already applied a plan is not told to apply it again.
 * `generatedAt` is left out: it says when, not what.
 */
import { createHash } from 'node:crypto';
import type { NodePlan, PlanRules, PlannedContainer } from '../../api/agentapi/v1.js';
import type { ContainerAuditPolicySpec } from '../../api/v1alpha1/containerauditpolicy.js';

/** A plan without its generation time. */
export type NodePlanContent = Omit<NodePlan, 'generatedAt'>;

/** The part of a policy the agent applies. */
export function planRules(spec: ContainerAuditPolicySpec): PlanRules {
  return { capture: spec.capture, redact: spec.redact, alerts: spec.alerts, outputs: spec.outputs };
}

/** JSON with object keys sorted at every level. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function compareContainers(a: PlannedContainer, b: PlannedContainer): number {
  for (const key of ['podNamespace', 'podName', 'podUid', 'containerName', 'policy'] as const) {
    if (a[key] !== b[key]) return a[key] < b[key] ? -1 : 1;
  }
  return 0;
}

/**
 * The plan for `node`: its containers in a fixed order and the rules of exactly the policies they name
 * (so a change to a policy changes only the plans of nodes where it audits something).
 */
export function buildPlan(
  node: string,
  containers: readonly PlannedContainer[],
  rulesOf: (policy: string) => PlanRules,
): NodePlanContent {
  const sorted = [...containers].sort(compareContainers);
  const names = [...new Set(sorted.map((c) => c.policy))].sort();
  const policies: Record<string, PlanRules> = {};
  for (const name of names) policies[name] = rulesOf(name);
  return withVersion({ node, policies, containers: sorted });
}

/** The plan of a node with nothing to audit: still versioned, so an agent can tell it from no answer. */
export function emptyPlan(node: string): NodePlanContent {
  return withVersion({ node, policies: {}, containers: [] });
}

function withVersion(content: Omit<NodePlanContent, 'version'>): NodePlanContent {
  const version = createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 32);
  return { node: content.node, version, policies: content.policies, containers: content.containers };
}
