/**
 * The operator process, assembled: informers on policies, pods and namespaces (every replica keeps them and
 * the node plans); leader election; while leading, the policy reconciler's workers and the agents' endpoint
 * (other replicas answer agents 503, and agents retry); probes and metrics on their own port.
 *
 *   informers ──> plans (PlanStore, every replica) ──> GET /v1/plan
 *             └─> work queue ──> PolicyReconciler (leader) ──> policy status, InvalidPolicy Events
 *   POST /v1/reports ──> ReportIngestor (leader) ──> AuditRecords, Events, ReportLedger ──> reconciler
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { LogField, type Logger } from '../common/logging.js';
import { type EventSink, KubeEventSink } from '../common/kube/event-sink.js';
import { CONTAINER_AUDIT_POLICIES, NAMESPACES, PODS } from '../common/kube/resources.js';
import { AgentAuthenticator } from './ingest/auth.js';
import { EventsWriter } from './ingest/events-writer.js';
import { ReportIngestor } from './ingest/ingestor.js';
import { KubeAuditRecordStore, KubePodReader, KubeTokenReviewer } from './ingest/kube-clients.js';
import { RecordsWriter } from './ingest/records-writer.js';
import { podDirectoryOf } from './ingest/scope.js';
import { type EndpointLimits, IngestServer } from './ingest/server.js';
import { ReportLedger } from './ledger.js';
import { policyEvents } from './policy/events.js';
import { PlanStore } from './policy/plan-store.js';
import { PolicyReconciler, policyKeys, recomputePlans } from './policy/reconciler.js';
import { kubeStatusWriter } from './policy/status-writer.js';
import { readPolicy } from './policy/world.js';
import { type Informer, createInformer } from './runtime/informer.js';
import { type LeaderElector, createLeaderElector } from './runtime/leader-election.js';
import { ProbeServer } from '../common/http/probe-server.js';
import { MetricsRegistry } from './runtime/metrics.js';
import { WorkQueue, runWorkers } from './runtime/workqueue.js';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** The agents' endpoint. */
  port: number;
  host?: string;
  tls?: { certFile: string; keyFile: string };
  /** Plain HTTP for the agents' endpoint: tests only. */
  insecureHttp?: boolean;
  /** Connections and time-outs of the agents' endpoint (ingest/server.ts DEFAULT_ENDPOINT_LIMITS). */
  endpointLimits?: Partial<EndpointLimits>;
  probePort: number;
  agentServiceAccount: { namespace: string; name: string };
  lease: {
    namespace: string;
    name: string;
    durationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  runtimeClass?: string;
  flushMs?: number;
  workers?: number;
}

/** Plans are recomputed at most this often while the informers deliver a burst of changes. */
const PLAN_DEBOUNCE_MS = 150;
/**
 * What reports tell (commands counted, each node's last report) changes a policy's status with every report;
 * those reconciles are coalesced, at most one per policy per this long, so that policy status writes follow
 * the clock rather than the number of reports (agents, and the rate people type at). Spec, pod and namespace
 * changes are not delayed.
 */
const REPORT_STATUS_COALESCE_MS = 2000;

export class Operator {
  readonly registry = new MetricsRegistry();
  readonly ledger = new ReportLedger();
  readonly plans = new PlanStore();
  private readonly policies: Informer<{ metadata?: { name?: string; generation?: number } }>;
  private readonly pods;
  private readonly namespaces;
  private readonly elector: LeaderElector;
  private readonly server: IngestServer;
  private readonly probes: ProbeServer;
  private readonly records: RecordsWriter;
  private readonly authenticator: AgentAuthenticator;
  private readonly ingestor: ReportIngestor;
  private readonly events: EventsWriter;
  /** The one Event sink: ingestion's Events on Pods and the reconciler's on policies. */
  private readonly eventSink: EventSink;
  private queue: WorkQueue | undefined;
  private planTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(private readonly options: OperatorOptions) {
    const { kubeConfig: kc, logger } = options;
    const informerOptions = { logger, metrics: this.registry };
    this.policies = createInformer(kc, CONTAINER_AUDIT_POLICIES, informerOptions);
    this.pods = createInformer(kc, PODS, informerOptions);
    this.namespaces = createInformer(kc, NAMESPACES, informerOptions);

    this.records = new RecordsWriter({
      store: new KubeAuditRecordStore(kc),
      logger,
      ...(options.flushMs !== undefined ? { flushMs: options.flushMs } : {}),
    });
    this.eventSink = new KubeEventSink(kc);
    this.events = new EventsWriter({ sink: this.eventSink, logger });
    const ingestor = (this.ingestor = new ReportIngestor({
      records: this.records,
      events: this.events,
      ledger: this.ledger,
      outputsOf: (name) => {
        const spec = readPolicy(this.policies.getByName(name))?.spec;
        return spec?.ok ? spec.spec.outputs : undefined;
      },
      plans: this.plans,
      // A pod the informer shows on the reporting node, not planned yet: its records wait (ingest/scope.ts).
      pods: podDirectoryOf(this.pods),
      logger,
    }));
    const authenticator = (this.authenticator = new AgentAuthenticator({
      reviewer: new KubeTokenReviewer(kc),
      pods: new KubePodReader(kc),
      serviceAccount: options.agentServiceAccount,
      logger,
    }));
    this.server = new IngestServer({
      authenticator,
      plans: this.plans,
      ingestor,
      isLeader: () => this.elector.isLeader(),
      ...(options.tls ? { tls: options.tls } : {}),
      ...(options.insecureHttp ? { insecureHttp: true } : {}),
      ...(options.endpointLimits ? { limits: options.endpointLimits } : {}),
      logger,
    });
    this.elector = createLeaderElector(kc, {
      namespace: options.lease.namespace,
      name: options.lease.name,
      ...(options.lease.durationMs !== undefined ? { leaseDurationMs: options.lease.durationMs } : {}),
      ...(options.lease.renewDeadlineMs !== undefined
        ? { renewDeadlineMs: options.lease.renewDeadlineMs }
        : {}),
      ...(options.lease.retryPeriodMs !== undefined ? { retryPeriodMs: options.lease.retryPeriodMs } : {}),
      onStartedLeading: (signal) => this.lead(signal),
      logger,
      metrics: this.registry,
    });
    this.probes = new ProbeServer({
      registry: this.registry,
      port: options.probePort,
      readinessChecks: [this.policies, this.pods, this.namespaces].map((i) => () => i.notReadyReason()),
      logger,
    });
    this.registerMetrics();
  }

  get sources() {
    return { policies: this.policies, pods: this.pods, namespaces: this.namespaces };
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  /** Starts everything; resolves with the agents' endpoint port and the probe port once listening. */
  async start(): Promise<{ port: number; probePort: number }> {
    const probePort = await this.probes.listen();
    for (const informer of [this.policies, this.pods, this.namespaces]) informer.start();
    await Promise.all([this.policies.synced, this.pods.synced, this.namespaces.synced]);
    this.watchWorld();
    this.recomputePlans();
    const address = await this.server.listen(this.options.port, this.options.host);
    this.elector.start();
    this.options.logger.info('Operator started', {
      [LogField.detail]: { port: address.port, probePort, identity: this.elector.identity },
    });
    return { port: address.port, probePort };
  }

  /** Stops serving, flushes what was accepted, releases the lease (another replica takes over at once). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.planTimer);
    await this.server.close();
    await Promise.allSettled([this.records.close(), this.events.close()]);
    await this.elector.stop({ release: true });
    await Promise.all([this.policies.stop(), this.pods.stop(), this.namespaces.stop()]);
    await this.probes.close();
  }

  /** The leader's work: reconcile policies until leadership ends. */
  private async lead(signal: AbortSignal): Promise<void> {
    const { logger, kubeConfig: kc } = this.options;
    const queue = new WorkQueue({ name: 'policies', metrics: this.registry });
    this.queue = queue;
    const reconciler = new PolicyReconciler({
      sources: this.sources,
      ledger: this.ledger,
      status: kubeStatusWriter(kc.makeApiClient(CustomObjectsApi)),
      events: policyEvents(this.eventSink),
      logger,
      ...(this.options.runtimeClass ? { runtimeClass: this.options.runtimeClass } : {}),
    });
    const reconciles = this.registry.counter(
      'container_auditor_reconciles_total',
      'Policy reconciles, by result.',
      ['result'],
    );
    const unsubscribe = this.ledger.onChange((names) =>
      names.forEach((n) => queue.addAfter(n, REPORT_STATUS_COALESCE_MS)),
    );
    for (const key of policyKeys(this.sources)) queue.add(key);
    signal.addEventListener('abort', () => void queue.shutdown(), { once: true });
    logger.info('Leading: reconciling policies and serving agents');
    try {
      await runWorkers(
        queue,
        this.options.workers ?? 2,
        async (key) => {
          try {
            const result = await reconciler.reconcile(key);
            reconciles.labels({ result: 'ok' }).inc();
            return result;
          } catch (error) {
            reconciles.labels({ result: 'error' }).inc();
            throw error;
          }
        },
        logger,
      );
    } finally {
      unsubscribe();
      if (this.queue === queue) this.queue = undefined;
      // What was accepted while leading is written before another replica takes over.
      await Promise.allSettled([this.records.close(), this.events.close()]);
      logger.info('No longer leading');
    }
  }

  private watchWorld(): void {
    const enqueueAll = () => {
      for (const key of policyKeys(this.sources)) this.queue?.add(key);
    };
    const changed = () => {
      this.schedulePlans();
      enqueueAll();
    };
    for (const informer of [this.pods, this.namespaces])
      informer.on({ add: changed, update: changed, delete: changed });
    this.policies.on({
      add: changed,
      // An update with the same generation is a status write (ours): nothing a plan or another policy reads.
      update: (old, object) => {
        if (old.metadata?.generation !== object.metadata?.generation) changed();
      },
      delete: (object) => {
        changed();
        if (object.metadata?.name) this.queue?.add(object.metadata.name);
      },
    });
  }

  private schedulePlans(): void {
    if (this.planTimer || this.stopping) return;
    this.planTimer = setTimeout(() => {
      this.planTimer = undefined;
      this.recomputePlans();
    }, PLAN_DEBOUNCE_MS);
  }

  private recomputePlans(): void {
    try {
      const changed = recomputePlans(this.sources, this.plans, {
        ...(this.options.runtimeClass ? { runtimeClass: this.options.runtimeClass } : {}),
      });
      // Every plan goes to the ingestor's scope, so it remembers the containers a plan stops naming.
      for (const node of changed) {
        const plan = this.plans.get(node);
        if (plan) this.ingestor.scope.observe(plan);
      }
      if (changed.length > 0) this.options.logger.info('Node plans changed', { [LogField.detail]: changed });
    } catch (error) {
      this.options.logger.error('Cannot compute node plans', { [LogField.error]: String(error) });
    }
  }

  /** The components' own counters, read at each scrape. */
  private registerMetrics(): void {
    const sync = (name: string, help: string, label: string, snapshot: () => Record<string, number>) =>
      this.registry.gauge(name, help, [label], (gauge) => {
        for (const [key, value] of Object.entries(snapshot())) gauge.labels({ [label]: key }).set(value);
      });
    sync(
      'container_auditor_agent_requests',
      'Agent requests answered, by status and reason.',
      'outcome',
      () => this.server.counters.snapshot(),
    );
    sync(
      'container_auditor_agent_refusals',
      'Agent requests refused by authentication, by reason.',
      'reason',
      () => this.authenticator.refused.snapshot(),
    );
    sync(
      'container_auditor_agent_auth_api_calls',
      "API calls made to authenticate agents: TokenReviews ('tokenreviews') and Pod reads ('pods').",
      'kind',
      () => this.authenticator.asked.snapshot(),
    );
    sync(
      'container_auditor_reports',
      'Agent reports and their records, by outcome (rejected:<reason>: never to be written; failed: sent again); lostCommands: what agents lost.',
      'outcome',
      () => this.ingestor.counters.snapshot(),
    );
    sync('container_auditor_record_writes', 'AuditRecord commands and writes, by outcome.', 'outcome', () =>
      this.records.counters.snapshot(),
    );
    sync('container_auditor_event_writes', 'Events written, aggregated, folded, by outcome.', 'outcome', () =>
      this.events.counters.snapshot(),
    );
    // container_auditor_leader{lease} is the elector's own (runtime/leader-election.ts): declaring it again
    // here, without its label, would throw at start.
  }
}
