/**
 * What a node may report. An agent's token proves which node it speaks for (auth.ts), not which pods: without
 * this check a token bound to node A could write AuditRecords and Events for any pod in any namespace, under
 * any policy. A node audits only the containers its plan names, under the policy the plan gives each, so that
 * is exactly what it may report.
 *
 * A record that names a pod (namespace, name, uid) and a container is judged against the node's plans:
 *
 *   in scope      the node's current plan names that container of that pod under the record's policy, or a
 *                 plan of that node named it so within the last `memoryMs` (10 min): a pod deleted, or moved
 *                 out of a policy, still has late records in the agent's queue, and they are genuine
 *   wrong-policy  the plan names that container (now or recently) under another policy only
 *   held          not planned, but the operator's Pod informer shows that pod (same uid) on this very node:
 *                 a pod just scheduled, or just selected, is in the informer a moment before its plan. The
 *                 record is not written and the agent sends it again (a transient answer), for at most
 *                 `graceMs` (30 s) from the first time it was held; then not-planned
 *   not-planned   anything else: an unknown pod, a pod on another node, a uid that is not the pod's
 *
 * Refused records are never written anywhere. Records that name no pod cannot be judged that way: they may
 * name only a policy planned on the node (`policyPlanned`), else they are refused too. Node-wide records
 * (losses) and the agent's state count for the policies planned on the node (`policies`).
 *
 * The memory is this process's: it is filled from every plan published (`observe`, called by the operator
 * on each change, on every replica) and from the plans seen when judging. After an operator restart, records
 * of pods deleted before the restart are refused (not-planned): a counted, reported loss, never a silent one.
 */
import { type Clock, realClock } from '../../common/clock.js';
import type { NodePlan } from '../../api/agentapi/v1.js';
import type { PlanSource } from './plan-source.js';

export const DEFAULT_SCOPE_MEMORY_MS = 10 * 60_000;
export const DEFAULT_SCOPE_GRACE_MS = 30_000;
/** Entries remembered per node (containers that left its plan, records held), beyond which the oldest go. */
const MAX_REMEMBERED = 50_000;

/** A pod as the operator's informer knows it. */
export interface KnownPod {
  uid?: string;
  nodeName?: string;
}

export interface PodDirectory {
  /** undefined when the informer holds no such pod. */
  get(namespace: string, name: string): KnownPod | undefined;
}

/** A PodDirectory over a Pod informer's cache (operator/runtime/informer.ts `getByName`). */
export function podDirectoryOf(pods: {
  getByName(
    name: string,
    namespace?: string,
  ): { metadata?: { uid?: string }; spec?: { nodeName?: string } } | undefined;
}): PodDirectory {
  return {
    get: (namespace, name) => {
      const pod = pods.getByName(name, namespace);
      if (!pod) return undefined;
      return {
        ...(pod.metadata?.uid ? { uid: pod.metadata.uid } : {}),
        ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      };
    },
  };
}

/** The container a record names, and the policy it claims. */
export interface ScopeRef {
  namespace: string;
  pod: string;
  uid: string;
  container: string;
  policy: string;
}

export type ScopeVerdict =
  | { verdict: 'in-scope' }
  | { verdict: 'held' }
  | { verdict: 'refused'; reason: 'not-planned' | 'wrong-policy' };

export interface ScopeOptions {
  plans: Pick<PlanSource, 'get'>;
  pods?: PodDirectory;
  memoryMs?: number;
  graceMs?: number;
  /** Time (common/clock.ts): only `now` is read. */
  clock?: Pick<Clock, 'now'>;
}

interface NodeMemory {
  version: string;
  /** container key -> policy, as the current plan names them. */
  planned: Map<string, string>;
  policies: Set<string>;
  /** container key -> policy -> until: what earlier plans named. */
  recent: Map<string, Map<string, number>>;
  /** policy -> until. */
  recentPolicies: Map<string, number>;
  /** container key -> when a record of it was first held. */
  held: Map<string, number>;
  expiredAt: number;
}

const containerKey = (namespace: string, pod: string, uid: string, container: string): string =>
  JSON.stringify([namespace, pod, uid, container]);

/** Deletes the oldest entries of a map (insertion order) beyond `max`. */
function bound<K, V>(map: Map<K, V>, max: number): void {
  while (map.size > max) map.delete(map.keys().next().value as K);
}

export class ReportScope {
  private readonly nodes = new Map<string, NodeMemory>();
  private readonly memoryMs: number;
  private readonly graceMs: number;
  private readonly clock: Pick<Clock, 'now'>;

  constructor(private readonly options: ScopeOptions) {
    this.memoryMs = options.memoryMs ?? DEFAULT_SCOPE_MEMORY_MS;
    this.graceMs = options.graceMs ?? DEFAULT_SCOPE_GRACE_MS;
    this.clock = options.clock ?? realClock;
  }

  /** Takes a node's plan: the containers and policies it no longer names stay in scope for `memoryMs`. */
  observe(plan: NodePlan): void {
    const memory = this.nodes.get(plan.node);
    if (memory?.version === plan.version) return;
    const planned = new Map<string, string>();
    for (const c of plan.containers)
      planned.set(containerKey(c.podNamespace, c.podName, c.podUid, c.containerName), c.policy);
    const policies = new Set(Object.keys(plan.policies));
    if (!memory) {
      this.nodes.set(plan.node, {
        version: plan.version,
        planned,
        policies,
        recent: new Map(),
        recentPolicies: new Map(),
        held: new Map(),
        expiredAt: this.clock.now(),
      });
      return;
    }
    // From when the plan changed (observed late, when a report came, it is still counted from then).
    const changedAt = Date.parse(plan.generatedAt);
    const until = Math.min(this.clock.now(), Number.isNaN(changedAt) ? Infinity : changedAt) + this.memoryMs;
    for (const [key, policy] of memory.planned) {
      if (planned.get(key) === policy) continue;
      const entry = memory.recent.get(key) ?? new Map<string, number>();
      entry.set(policy, until);
      memory.recent.delete(key);
      memory.recent.set(key, entry);
    }
    for (const policy of memory.policies) {
      if (policies.has(policy)) continue;
      memory.recentPolicies.delete(policy);
      memory.recentPolicies.set(policy, until);
    }
    bound(memory.recent, MAX_REMEMBERED);
    bound(memory.recentPolicies, MAX_REMEMBERED);
    memory.version = plan.version;
    memory.planned = planned;
    memory.policies = policies;
  }

  /** Whether a record of this node naming this container under this policy may be written (module comment). */
  judge(node: string, ref: ScopeRef): ScopeVerdict {
    const memory = this.current(node);
    if (!memory) return { verdict: 'held' }; // no plan published yet: the operator is starting
    const key = containerKey(ref.namespace, ref.pod, ref.uid, ref.container);
    const now = this.clock.now();
    const planned = memory.planned.get(key);
    const recent = memory.recent.get(key);
    if (planned === ref.policy || (recent?.get(ref.policy) ?? 0) >= now) {
      memory.held.delete(key);
      return { verdict: 'in-scope' };
    }
    const known = planned !== undefined || [...(recent?.values() ?? [])].some((until) => until >= now);
    if (known) return { verdict: 'refused', reason: 'wrong-policy' };
    const pod = ref.uid ? this.options.pods?.get(ref.namespace, ref.pod) : undefined;
    if (pod && pod.uid === ref.uid && pod.nodeName === node) {
      const since = memory.held.get(key);
      if (since === undefined) {
        memory.held.set(key, now);
        bound(memory.held, MAX_REMEMBERED);
        return { verdict: 'held' };
      }
      if (now - since < this.graceMs) return { verdict: 'held' };
    }
    return { verdict: 'refused', reason: 'not-planned' };
  }

  /** Whether the node's plan names `policy` now, or did within `memoryMs`. */
  policyPlanned(node: string, policy: string): boolean {
    const memory = this.current(node);
    if (!memory) return false;
    return memory.policies.has(policy) || (memory.recentPolicies.get(policy) ?? 0) >= this.clock.now();
  }

  /** The policies the node's plan names now or named within `memoryMs`. */
  policies(node: string): string[] {
    const memory = this.current(node);
    if (!memory) return [];
    const now = this.clock.now();
    const recent = [...memory.recentPolicies].flatMap(([p, until]) => (until >= now ? [p] : []));
    return [...new Set([...memory.policies, ...recent])];
  }

  /** The node's memory, brought up to its current plan. */
  private current(node: string): NodeMemory | undefined {
    const plan = this.options.plans.get(node);
    if (plan) this.observe(plan);
    const memory = this.nodes.get(node);
    if (memory) this.expire(memory);
    return memory;
  }

  /** Forgets what expired (at most once a second: a report judges up to a thousand records). */
  private expire(memory: NodeMemory): void {
    const now = this.clock.now();
    if (now - memory.expiredAt < 1000) return;
    memory.expiredAt = now;
    for (const [key, policies] of memory.recent) {
      for (const [policy, until] of policies) if (until < now) policies.delete(policy);
      if (policies.size === 0) memory.recent.delete(key);
    }
    for (const [policy, until] of memory.recentPolicies)
      if (until < now) memory.recentPolicies.delete(policy);
    for (const [key, since] of memory.held) if (now - since > this.memoryMs) memory.held.delete(key);
  }
}
