/**
 * Which containers of which pods each policy audits, and so what each node must do. Pure: the world comes
 * in as plain facts (what the informers hold, reduced to what selection reads), the answer goes out as
 * per-policy figures (for status) and per-node plans (for the agents).
 *
 * The rules (operator/README.md):
 * - A policy selects a pod when the pod's namespace matches `namespaceSelector`, the pod matches
 *   `podSelector` and at least one of its containers is named in `containers` (or that list is empty).
 * - A selected pod that does not run with the audit RuntimeClass never passes through the wrapper: it is
 *   unauditable, counted and named, and none of its containers is planned.
 * - A container selected by several policies is audited under the oldest (creationTimestamp, then name);
 *   the others count it as audited elsewhere. Only policies that take part compete: a suspended or invalid
 *   policy contributes nothing, so a younger policy audits what it would have.
 * - A pod with no node yet is matched but planned nowhere; it is planned once scheduled.
 * - Finished pods (Succeeded, Failed) run nothing and are left out. A pod being deleted still runs until its
 *   grace period ends, and someone may still type in it, so it stays audited until it is gone.
 */
import type { PlannedContainer } from '../../api/agentapi/v1.js';
import type { ContainerAuditPolicySpec } from '../../api/v1alpha1/containerauditpolicy.js';
import { type Labels, matchesSelector } from '../../common/label-selector.js';
import { buildPlan, type NodePlanContent, planRules } from './node-plans.js';
import { type PolicyProblem, type SpecParse, specProblems } from './validate.js';

export const DEFAULT_RUNTIME_CLASS = 'container-auditor';
/** Unauditable pods named in a status message; the rest are counted. */
export const DEFAULT_MAX_NAMED_PODS = 5;

export interface PodFacts {
  namespace: string;
  name: string;
  uid: string;
  labels: Labels;
  nodeName?: string;
  runtimeClassName?: string;
  /** Every container name: regular, init and ephemeral (`kubectl debug` shells are where people type). */
  containers: readonly string[];
  phase?: string;
  deleting?: boolean;
}

export interface PolicyFacts {
  name: string;
  /** RFC 3339; orders overlapping policies. */
  creationTimestamp?: string;
  spec: SpecParse;
}

export interface SelectionInput {
  policies: readonly PolicyFacts[];
  /** Namespace name → labels. A namespace not (yet) known is judged as having no labels. */
  namespaces: ReadonlyMap<string, Labels>;
  pods: readonly PodFacts[];
  runtimeClass?: string;
  maxNamedPods?: number;
}

export interface PolicySelection {
  name: string;
  /** Why the policy cannot be applied, each naming its field; empty when it can. */
  problems: PolicyProblem[];
  suspended: boolean;
  /** Valid and not suspended: takes part in overlaps and plans. */
  active: boolean;
  /** Whether the selector was evaluated: false when the spec failed the schema (the figures are then 0). */
  evaluated: boolean;
  /** Pods with at least one selected container, auditable or not, scheduled or not. */
  matchedPods: number;
  /** Matched, auditable pods with no node yet. */
  unscheduledPods: number;
  unauditablePods: number;
  /** `namespace/name` of the first unauditable pods, sorted; at most maxNamedPods. */
  unauditablePodNames: string[];
  /** Containers planned under this policy. */
  auditedContainers: number;
  /** Containers this policy selects that an older policy audits, by that policy (sorted). */
  auditedElsewhere: { policy: string; containers: number }[];
  /** Nodes where this policy audits containers, with how many (sorted by name). */
  nodes: { name: string; containers: number }[];
}

export interface Selection {
  policies: Map<string, PolicySelection>;
  /** Plans of the nodes that audit something; every other node's plan is empty (emptyPlan). */
  plans: Map<string, NodePlanContent>;
}

/** Oldest first: creation time, then name. A policy without a creation time (never from the API server) is newest. */
export function compareAge(a: PolicyFacts, b: PolicyFacts): number {
  const ta = a.creationTimestamp ? Date.parse(a.creationTimestamp) : Number.POSITIVE_INFINITY;
  const tb = b.creationTimestamp ? Date.parse(b.creationTimestamp) : Number.POSITIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

interface Candidate {
  facts: PolicyFacts;
  spec: ContainerAuditPolicySpec;
  result: PolicySelection;
  unauditable: string[];
  elsewhere: Map<string, number>;
  nodes: Map<string, number>;
}

export function select(input: SelectionInput): Selection {
  const runtimeClass = input.runtimeClass ?? DEFAULT_RUNTIME_CLASS;
  const maxNamed = input.maxNamedPods ?? DEFAULT_MAX_NAMED_PODS;
  const policies = new Map<string, PolicySelection>();
  const candidates: Candidate[] = [];
  for (const facts of [...input.policies].sort(compareAge)) {
    const problems = facts.spec.ok ? specProblems(facts.spec.spec) : facts.spec.problems;
    const suspended = facts.spec.ok && facts.spec.spec.suspend;
    const result: PolicySelection = {
      name: facts.name,
      problems,
      suspended,
      active: problems.length === 0 && !suspended,
      evaluated: facts.spec.ok,
      matchedPods: 0,
      unscheduledPods: 0,
      unauditablePods: 0,
      unauditablePodNames: [],
      auditedContainers: 0,
      auditedElsewhere: [],
      nodes: [],
    };
    policies.set(facts.name, result);
    // A spec that failed the schema cannot be evaluated at all; one with bad rules can (for its figures).
    if (facts.spec.ok)
      candidates.push({
        facts,
        spec: facts.spec.spec,
        result,
        unauditable: [],
        elsewhere: new Map(),
        nodes: new Map(),
      });
  }

  const planned = new Map<string, PlannedContainer[]>();
  for (const pod of input.pods) {
    if (pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
    const nsLabels = input.namespaces.get(pod.namespace) ?? {};
    // Per policy (oldest first), the containers it selects in this pod.
    const selecting: [Candidate, Set<string>][] = [];
    for (const candidate of candidates) {
      const containers = selectedContainers(candidate.spec, nsLabels, pod);
      if (containers.size > 0) selecting.push([candidate, containers]);
    }
    if (selecting.length === 0) continue;
    const auditable = pod.runtimeClassName === runtimeClass;
    for (const [candidate, containers] of selecting) {
      const r = candidate.result;
      r.matchedPods++;
      if (!auditable) {
        r.unauditablePods++;
        candidate.unauditable.push(`${pod.namespace}/${pod.name}`);
      } else if (pod.nodeName === undefined) r.unscheduledPods++;
      if (!auditable || pod.nodeName === undefined || !r.active) continue;
      for (const container of containers) {
        const owner = selecting.find(([c, names]) => c.result.active && names.has(container))![0];
        if (owner !== candidate) {
          candidate.elsewhere.set(owner.facts.name, (candidate.elsewhere.get(owner.facts.name) ?? 0) + 1);
          continue;
        }
        r.auditedContainers++;
        candidate.nodes.set(pod.nodeName, (candidate.nodes.get(pod.nodeName) ?? 0) + 1);
        let list = planned.get(pod.nodeName);
        if (!list) planned.set(pod.nodeName, (list = []));
        list.push({
          podNamespace: pod.namespace,
          podName: pod.name,
          podUid: pod.uid,
          containerName: container,
          policy: candidate.facts.name,
        });
      }
    }
  }

  for (const c of candidates) {
    c.result.unauditablePodNames = c.unauditable.sort().slice(0, maxNamed);
    c.result.auditedElsewhere = [...c.elsewhere]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([policy, containers]) => ({ policy, containers }));
    c.result.nodes = [...c.nodes]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, containers]) => ({ name, containers }));
  }

  const specs = new Map(candidates.map((c) => [c.facts.name, c.spec]));
  const plans = new Map<string, NodePlanContent>();
  for (const [node, containers] of planned)
    plans.set(
      node,
      buildPlan(node, containers, (policy) => planRules(specs.get(policy)!)),
    );
  return { policies, plans };
}

/** The containers of `pod` that `spec` selects; empty when it does not select the pod. */
function selectedContainers(spec: ContainerAuditPolicySpec, nsLabels: Labels, pod: PodFacts): Set<string> {
  const { namespaceSelector, podSelector, containers } = spec.selector;
  if (!matchesSelector(namespaceSelector, nsLabels) || !matchesSelector(podSelector, pod.labels))
    return new Set();
  const names = new Set(pod.containers);
  if (containers.length === 0) return names;
  return new Set(containers.filter((name) => names.has(name)));
}
