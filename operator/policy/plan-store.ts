/**
 * The current plan of every node, served to agents by long poll (api/agentapi/v1.ts `GET /v1/plan`).
 *
 * `publish` replaces all plans at once with what select() computed; a node left out gets the empty plan,
 * which has a version of its own, so an agent whose last audited container went away is told so. A plan
 * whose version did not change is kept as it was (its `generatedAt` too): the agent's `knownVersion` stays
 * current and its long poll keeps waiting.
 *
 * Until the first publish the store knows nothing and says so (`get` is undefined): an empty plan then would
 * tell every agent to stop auditing while the operator's informers are still syncing. The agent endpoint
 * answers 503 (retry) in that case.
 */
import { type Clock, realClock } from '../../common/clock.js';
import type { NodePlan } from '../../api/agentapi/v1.js';
import { emptyPlan, type NodePlanContent } from './node-plans.js';

interface Waiter {
  node: string;
  knownVersion: string | undefined;
  resolve: (plan: NodePlan | undefined) => void;
}

/** How long an emptied node keeps its own empty plan (and its generatedAt) before the shared one stands in. */
const EMPTY_PLAN_RETENTION_MS = 3_600_000;

export class PlanStore {
  private readonly plans = new Map<string, NodePlan>();
  private readonly waiters = new Set<Waiter>();
  private published = false;
  /** generatedAt of the empty plan of a node never planned: the first publish, so it is stable. */
  private firstPublish = '';

  constructor(private readonly clock: Pick<Clock, 'now'> = realClock) {}

  /** Whether plans have been published at least once. */
  get ready(): boolean {
    return this.published;
  }

  /** The node's current plan; undefined before the first publish. */
  get(node: string): NodePlan | undefined {
    if (!this.published) return undefined;
    return this.plans.get(node) ?? { ...emptyPlan(node), generatedAt: this.firstPublish };
  }

  /**
   * Replaces every node's plan with `plans` (nodes not in it get the empty plan) and wakes the long polls
   * that now have a plan to take. Returns the nodes whose version changed.
   */
  publish(plans: ReadonlyMap<string, NodePlanContent>): string[] {
    const now = new Date(this.clock.now());
    const generatedAt = now.toISOString();
    if (!this.published) this.firstPublish = generatedAt;
    const changed: string[] = [];
    const set = (node: string, content: NodePlanContent): void => {
      if (this.published && this.get(node)!.version === content.version) return;
      this.plans.set(node, { ...content, generatedAt });
      changed.push(node);
    };
    for (const [node, content] of plans) set(node, content);
    for (const [node, plan] of [...this.plans]) {
      if (plans.has(node)) continue;
      if (plan.containers.length > 0) set(node, emptyPlan(node));
      // A node empty for long (scaled away, most likely) falls back to the shared empty plan: same version,
      // so nothing changes for its agent, and the map does not grow with every node the cluster ever had.
      else if (now.getTime() - Date.parse(plan.generatedAt) > EMPTY_PLAN_RETENTION_MS)
        this.plans.delete(node);
    }
    this.published = true;
    for (const waiter of [...this.waiters]) {
      const plan = this.get(waiter.node)!;
      if (plan.version !== waiter.knownVersion) waiter.resolve(plan);
    }
    return changed;
  }

  /**
   * A long poll: the node's plan as soon as its version differs from `knownVersion` (at once if it already
   * does), else the unchanged plan after `timeoutMs`. An aborted `signal` (the agent hung up) ends the wait
   * the same way as the timeout, never with a rejection. Undefined only if nothing was ever published.
   */
  wait(
    node: string,
    knownVersion: string | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<NodePlan | undefined> {
    const current = this.get(node);
    if (current !== undefined && current.version !== knownVersion) return Promise.resolve(current);
    if (signal?.aborted) return Promise.resolve(current);
    return new Promise((resolve) => {
      const finish = (plan: NodePlan | undefined): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(plan);
      };
      const waiter: Waiter = { node, knownVersion, resolve: finish };
      const onAbort = (): void => finish(this.get(node));
      const timer = setTimeout(onAbort, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** Long polls in progress (for metrics and tests). */
  get waiting(): number {
    return this.waiters.size;
  }
}
