/**
 * The policy reconciler: level-triggered, one policy name at a time. It reads the world from the informers'
 * caches, computes the status the policy should have (select.ts, status.ts), folds in what the agents
 * reported (the ledger: the reconciler is the only writer of policy status), writes the status only when it
 * changed, and tells an invalid policy's owner with a Warning Event. It never branches on what happened;
 * the same name reconciled twice in a row writes nothing the second time.
 *
 * `recomputePlans` is the other half: all node plans from the same world, into the PlanStore.
 *
 * Two things the caches cannot tell are kept in memory here:
 * - the status this process last wrote, while the policy cache still shows the object it was computed from
 *   (a reconcile right after a write must not start from the older figures: the counters would go back);
 * - losses reported under a policy, shown in Degraded for a while after the ledger handed them over.
 */
import type { Logger } from 'winston';
import { type Clock, realClock } from '../../common/clock.js';
import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import { classifyError, describeError } from '../../common/kube/errors.js';
import { LogField, silentLogger } from '../../common/logging.js';
import type { PolicyActivity, PolicyProblem, ReportLedger } from '../ledger.js';
import { ConditionType, findCondition } from './conditions.js';
import type { PolicyEvents } from './events.js';
import { canonicalJson } from './node-plans.js';
import type { PlanStore } from './plan-store.js';
import { DEFAULT_MAX_NAMED_PODS, DEFAULT_RUNTIME_CLASS, select } from './select.js';
import { desiredStatus } from './status.js';
import type { StatusWriter } from './status-writer.js';
import { type PolicyObject, readPolicy, readWorld, type WorldSources } from './world.js';

export interface ReconcilerOptions {
  sources: WorldSources;
  ledger: Pick<ReportLedger, 'takeActivity' | 'restoreActivity' | 'nodeReport'>;
  status: StatusWriter;
  events: PolicyEvents;
  logger?: Logger;
  /** The audit RuntimeClass (`--runtime-class`). */
  runtimeClass?: string;
  maxNamedPods?: number;
  /** Time (common/clock.ts): only `now` is read. */
  clock?: Pick<Clock, 'now'>;
  /**
   * After the operator starts, how long a node whose agent has not reported is not held against a policy:
   * the ledger starts empty, and agents report again within their report interval.
   */
  reportGraceMs?: number;
  /** How long losses reported under a policy keep it Degraded. */
  lossWindowMs?: number;
  /** How soon a failed Event is tried again. */
  eventRetryMs?: number;
}

/**
 * Nothing, or: reconcile this policy again after this long even if nothing changes (a timed judgement
 * expires). The shape of operator/runtime's WorkResult, so `reconcile` is a work-queue handler as is.
 */
export type ReconcileResult = void | { requeueAfterMs: number };

interface Written {
  /** resourceVersion of the cached object the write was computed from. */
  readVersion: string | undefined;
  resourceVersion: string | undefined;
  status: ContainerAuditPolicyStatus;
}

interface Loss {
  time: number;
  problem: PolicyProblem;
}

const MAX_LOSSES = 64;

export class PolicyReconciler {
  private readonly clock: Pick<Clock, 'now'>;
  private readonly startedAt: number;
  private readonly log: Logger;
  private readonly written = new Map<string, Written>();
  private readonly losses = new Map<string, Loss[]>();
  /** Per policy, the (generation, message) its last Invalid Event told. */
  private readonly told = new Map<string, string>();

  constructor(private readonly options: ReconcilerOptions) {
    this.clock = options.clock ?? realClock;
    this.startedAt = this.clock.now();
    this.log = options.logger ?? silentLogger();
  }

  async reconcile(name: string): Promise<ReconcileResult> {
    const { sources, ledger } = this.options;
    const raw = sources.policies.get(name);
    const policy = raw === undefined ? undefined : readPolicy(raw);
    if (policy === undefined) {
      // Deleted: nothing to write; what the ledger holds for it has nowhere to go.
      ledger.takeActivity(name);
      this.written.delete(name);
      this.losses.delete(name);
      this.told.delete(name);
      return;
    }
    const log = this.log.child({ [LogField.policy]: name });
    const now = new Date(this.clock.now());
    const { previous, resourceVersion } = this.current(policy);

    const world = readWorld(sources);
    // The keyed read and the list come from the same cache, but not at the same instant.
    const policies = world.policies.some((p) => p.name === name)
      ? world.policies
      : [...world.policies, policy];
    const selection = select({
      ...world.input,
      policies,
      runtimeClass: this.options.runtimeClass ?? DEFAULT_RUNTIME_CLASS,
      maxNamedPods: this.options.maxNamedPods ?? DEFAULT_MAX_NAMED_PODS,
    }).policies.get(name)!;

    const activity = ledger.takeActivity(name);
    const losses = this.recentLosses(name, activity, now);
    const excuseMissingReports = now.getTime() - this.startedAt < this.reportGraceMs;
    const desired = desiredStatus({
      generation: policy.generation,
      previous,
      selection,
      runtimeClass: this.options.runtimeClass ?? DEFAULT_RUNTIME_CLASS,
      activity,
      nodeReport: (node) => ledger.nodeReport(node),
      recentProblems: losses.map((l) => l.problem),
      excuseMissingReports,
      now,
    });

    if (previous === undefined || canonicalJson(desired) !== canonicalJson(previous)) {
      try {
        const stored = await this.options.status.apply(name, resourceVersion, desired);
        this.written.set(name, {
          readVersion: policy.resourceVersion,
          resourceVersion: stored.resourceVersion,
          status: stored.status ?? desired,
        });
      } catch (cause) {
        const error = classifyError(cause);
        if (error.kind === 'not-found') {
          log.debug('ContainerAuditPolicy deleted before its status was written');
          return;
        }
        // Conflict included: the queue retries with backoff, by when the cache shows the newer object.
        if (activity !== undefined) ledger.restoreActivity(name, activity);
        throw error;
      }
      log.debug('ContainerAuditPolicy status written', { [LogField.nodes]: selection.nodes.length });
    }
    this.losses.set(name, losses);

    const retryEvent = await this.tellInvalid(policy, desired, log);
    return this.requeue(
      selection.nodes.map((n) => n.name),
      losses,
      excuseMissingReports,
      now,
      retryEvent,
    );
  }

  private get reportGraceMs(): number {
    return this.options.reportGraceMs ?? 60_000;
  }

  /** The status to start from: what this process wrote, while the cache still shows the older object. */
  private current(policy: PolicyObject): {
    previous: ContainerAuditPolicyStatus | undefined;
    resourceVersion: string | undefined;
  } {
    const written = this.written.get(policy.name);
    if (written !== undefined && written.readVersion === policy.resourceVersion)
      return { previous: written.status, resourceVersion: written.resourceVersion };
    this.written.delete(policy.name);
    return { previous: policy.status, resourceVersion: policy.resourceVersion };
  }

  /** Losses still recent, with those just handed over added (not yet kept: the write may fail). */
  private recentLosses(name: string, activity: PolicyActivity | undefined, now: Date): Loss[] {
    const window = this.options.lossWindowMs ?? 600_000;
    const kept = (this.losses.get(name) ?? []).filter((l) => now.getTime() - l.time < window);
    const added = (activity?.problems ?? []).map((problem) => ({ time: now.getTime(), problem }));
    return [...kept, ...added].slice(-MAX_LOSSES);
  }

  /** A Warning Event when the policy is Invalid, once per generation and message. Whether to retry. */
  private async tellInvalid(
    policy: PolicyObject,
    status: ContainerAuditPolicyStatus,
    log: Logger,
  ): Promise<boolean> {
    const invalid = findCondition(status.conditions, ConditionType.invalid);
    if (invalid?.status !== 'True') {
      this.told.delete(policy.name);
      return false;
    }
    const key = `${policy.uid ?? ''}/${policy.generation ?? ''}/${invalid.message}`;
    if (this.told.get(policy.name) === key) return false;
    try {
      await this.options.events.invalidPolicy(
        { name: policy.name, uid: policy.uid, generation: policy.generation },
        invalid.message,
      );
      this.told.set(policy.name, key);
      log.info('ContainerAuditPolicy is invalid', { [LogField.reason]: invalid.message });
      return false;
    } catch (error) {
      log.warn('InvalidPolicy Event of ContainerAuditPolicy not written, retrying', {
        [LogField.error]: describeError(error),
      });
      return true;
    }
  }

  private requeue(
    nodes: readonly string[],
    losses: readonly Loss[],
    excused: boolean,
    now: Date,
    retryEvent: boolean,
  ): ReconcileResult {
    const after: number[] = [];
    // Missing reports become a judgement when the grace period ends, and losses leave Degraded when old.
    if (excused && nodes.some((node) => this.options.ledger.nodeReport(node) === undefined))
      after.push(this.startedAt + this.reportGraceMs - now.getTime());
    if (losses.length > 0)
      after.push(losses[0]!.time + (this.options.lossWindowMs ?? 600_000) - now.getTime());
    if (retryEvent) after.push(this.options.eventRetryMs ?? 10_000);
    if (after.length === 0) return;
    return { requeueAfterMs: Math.max(1, Math.min(...after)) };
  }
}

export interface RecomputeOptions {
  runtimeClass?: string;
}

/**
 * Every node's plan from the world as the caches hold it, published to the store (nodes whose version
 * changed get their long polls answered). Call it after any policy, pod or namespace change, debounced;
 * returns the nodes whose plan changed.
 */
export function recomputePlans(
  sources: WorldSources,
  store: PlanStore,
  options: RecomputeOptions = {},
): string[] {
  const world = readWorld(sources);
  const { plans } = select({ ...world.input, runtimeClass: options.runtimeClass ?? DEFAULT_RUNTIME_CLASS });
  return store.publish(plans);
}

/** Every policy name the cache holds: what to enqueue when pods, namespaces or any policy change. */
export function policyKeys(sources: Pick<WorldSources, 'policies'>): string[] {
  return sources.policies.list().flatMap((raw) => readPolicy(raw)?.name ?? []);
}
