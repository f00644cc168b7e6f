/**
 * The agent in cluster mode, put together:
 *
 *   operator ──GET /v1/plan (long poll)──> PlanClient ──> ClusterPlan ──replan()──> Agent (capture engine)
 *   Agent ──records──> queueSink (stamps node, boot, seq) ──> RecordQueue (disk) ──> Reporter ──POST /v1/reports──> operator
 *
 * Until the operator answers, the agent audits by the plan a previous run kept (or by nothing, the first
 * time), and records wait in the queue. The state sent with reports (AgentState) is gathered here from every
 * part: the plan version the agent applied, what it audits and probes, and the recent problems of each part.
 */
import type { AgentState, NodePlan } from '../../api/agentapi/v1.js';
import { MAX_COMMAND_BYTES_LIMIT } from '../../api/v1alpha1/containerauditpolicy.js';
import { type Logger, LogField } from '../../common/logging.js';
import { Agent, type AgentOptions } from '../agent.js';
import type { StampingSink } from '../records/sink.js';
import type { BackoffPolicy } from '../../common/backoff.js';
import { ClusterPlan, type CompileRules } from './cluster-plan.js';
import { OperatorClient } from './operator-client.js';
import { PlanClient } from './plan-client.js';
import { RecordQueue, queueSink } from './queue.js';
import { Reporter } from './reporter.js';

/** Problems that stand as long as the plan does (rules that do not compile) take at most this many places. */
const STANDING_ERRORS = 8;
const MAX_ERRORS = 16;

export interface ClusterAgentOptions {
  node: string;
  /** The operator's base URL. */
  operator: string;
  tokenFile: string;
  /** PEM of the operator's CA (read by the caller). */
  operatorCa?: string | Buffer;
  stateDir: string;
  queueDir: string;
  queueMaxBytes?: number;
  logger: Logger;
  /** The capture engine's own options (spool, bpftrace, bundle roots, ack wait...). */
  agent: Omit<AgentOptions, 'plan' | 'sink' | 'logger' | 'stateDir' | 'probeMaxCommandBytes'>;
  compile?: CompileRules;
  /** Tuning for tests. */
  reporter?: { lingerMs?: number; stateIntervalMs?: number; backoff?: Partial<BackoffPolicy> };
  planClient?: { backoff?: Partial<BackoffPolicy>; minPollIntervalMs?: number };
  queueSyncDelayMs?: number;
}

export class ClusterAgent {
  readonly reporter: Reporter;
  /** The plan version the agent has re-decided its containers by. */
  private applied: string | undefined;

  private constructor(
    readonly agent: Agent,
    readonly plan: ClusterPlan,
    readonly planClient: PlanClient,
    readonly queue: RecordQueue,
    readonly sink: StampingSink,
    private readonly client: OperatorClient,
    private readonly logger: Logger,
    reporter: { node: string } & ClusterAgentOptions['reporter'],
  ) {
    this.reporter = new Reporter({
      queue,
      client,
      boot: sink.boot,
      state: () => this.state(),
      logger,
      ...reporter,
    });
  }

  static async start(options: ClusterAgentOptions): Promise<ClusterAgent> {
    const { logger, node } = options;
    const client = new OperatorClient({
      url: options.operator,
      tokenFile: options.tokenFile,
      ...(options.operatorCa !== undefined ? { ca: options.operatorCa } : {}),
    });
    const planClient = new PlanClient({
      client,
      node,
      stateDir: options.stateDir,
      logger,
      ...options.planClient,
    });
    const plan = new ClusterPlan(await planClient.loadPersisted(), options.compile);
    for (const error of plan.errors) logger.error('Policy not applied', { [LogField.reason]: error });
    const queue = await RecordQueue.open({
      dir: options.queueDir,
      logger,
      ...(options.queueMaxBytes !== undefined ? { maxBytes: options.queueMaxBytes } : {}),
      ...(options.queueSyncDelayMs !== undefined ? { syncDelayMs: options.queueSyncDelayMs } : {}),
    });
    const sink = queueSink(node, queue);
    const agent = new Agent({
      ...options.agent,
      stateDir: options.stateDir,
      plan,
      sink,
      logger,
      // Plans change while the agent runs and a probe is not restarted for one: read what any policy may keep.
      probeMaxCommandBytes: MAX_COMMAND_BYTES_LIMIT,
    });
    const cluster = new ClusterAgent(agent, plan, planClient, queue, sink, client, logger, {
      node,
      ...options.reporter,
    });
    planClient.on('plan', (next) => cluster.onPlan(next));
    await agent.start();
    cluster.applied = plan.version;
    planClient.start();
    cluster.reporter.start();
    return cluster;
  }

  private onPlan(next: NodePlan): void {
    this.plan.update(next);
    for (const error of this.plan.errors)
      this.logger.error('Policy not applied', { [LogField.reason]: error, [LogField.detail]: next.version });
    void this.agent.replan().then(() => {
      if (this.plan.version === next.version) this.applied = next.version;
      this.reporter.nudge();
    });
  }

  /** What the agent tells the operator about itself. */
  state(): AgentState {
    const condition = this.agent.condition;
    const timed = [
      ...condition.errors,
      ...this.planClient.errors.list(),
      ...this.reporter.errors.list(),
      ...this.queue.errors.list(),
    ]
      .sort((a, b) => a.time.getTime() - b.time.getTime())
      .map((e) => e.message);
    const standing = this.plan.errors.slice(0, STANDING_ERRORS);
    const room = MAX_ERRORS - standing.length;
    return {
      ...(this.applied !== undefined ? { planVersion: this.applied } : {}),
      auditedContainers: condition.auditedContainers,
      probesAttached: condition.probesAttached,
      errors: [...standing, ...timed.slice(Math.max(0, timed.length - room))].map((e) => e.slice(0, 1024)),
      queueDropped: this.queue.stats.dropped,
    };
  }

  /**
   * Stops polling, stops capturing (its last records go to the queue), sends what it can within `graceMs`,
   * and closes the queue: what was not sent is sent by the next start.
   */
  async stop(graceMs = 2000): Promise<void> {
    await this.planClient.stop();
    await this.agent.stop();
    await this.queue.flush();
    await this.reporter.stop(graceMs);
    await this.queue.close();
    this.client.close();
  }
}
