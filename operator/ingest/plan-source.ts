/**
 * Where the agent endpoint takes node plans from. operator/policy's PlanStore is one; the endpoint needs no
 * more than this.
 */
import type { NodePlan } from '../../api/agentapi/v1.js';

export interface PlanSource {
  /** The node's current plan; undefined while there is none yet (the endpoint answers 503). */
  get(node: string): NodePlan | undefined;
  /**
   * A long poll: resolves when the node's plan version differs from `knownVersion` (at once if it already
   * does), or after `timeoutMs`, or when `signal` aborts (the agent hung up). The endpoint answers with
   * `get(node)` afterwards, so what this resolves with does not matter.
   */
  wait(
    node: string,
    knownVersion: string | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<unknown>;
}
