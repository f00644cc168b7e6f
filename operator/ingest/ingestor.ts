/**
 * One validated, authenticated report -> the writers and the ledger, and the answer to the agent.
 *
 * - scope first (scope.ts): a record about a container the node's plan does not name (now or recently), or
 *   under another policy than the plan's, is refused: counted, logged, answered `rejected`, and nothing of it
 *   is written, not even to the ledger. One the plan is about to name (the pod runs on the node) is held: not
 *   written, answered `retry`.
 * - command and exec records go to the outputs their policy asks for (`outputsOf(policy)`; both when the
 *   policy is unknown): the AuditRecord of their session (records-writer.ts) and an Event on the pod
 *   (events-writer.ts). A record is `accepted` or `duplicate` by its AuditRecord when that output is on (the
 *   durable judge of duplicates), else by its Event. A record that cannot be written where its policy wants it
 *   (no pod namespace or name; for AuditRecords also no container name) is counted (`unattributed`), told to
 *   the ledger as a problem of its policy, and answered rejected.
 * - coverage records: a gap, or a probe attached late, is a problem of the policy (ledger: a kind and a
 *   count), a Warning Event on the pod (when the policy wants Events) and a loss on the records of that
 *   container's active sessions: the detail stays in the pod's namespace.
 * - loss records (node-wide, they name no container): a problem of every policy planned on the node.
 * - the agent's state: to the ledger, for every policy planned on the node (now or recently).
 *
 * The answer waits for every write and judges each record: accepted, duplicate, rejected (never to be
 * written: a permanent API error such as a deleted namespace, or out of scope) or retry (a transient error:
 * the agent sends it again, and what was written is then a duplicate). Rejected records are losses: counted
 * by reason, logged without their text, and, when they are in scope, told to the ledger as a problem of their
 * policy (shown in its status). If nothing could be judged done the report fails as a whole (IngestFailure:
 * 503). What was written is told to the ledger either way.
 */
import { type Clock, realClock } from '../../common/clock.js';
import type { PlanRules, Rejection, RejectionReason, Report, ReportResponse } from '../../api/agentapi/v1.js';
import type { CommandRecord, CoverageRecord, ExecRecord, LossRecord } from '../../api/records/v1.js';
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { excerpt } from '../../common/text/escape.js';
import type { PolicyProblem, ReportLedger } from '../ledger.js';
import { Counters } from './counters.js';
import { commandEventOf, coverageEventOf, type CommandEvent, type CoverageEvent } from './events.js';
import { isLost, type WriteOutcome } from './outcome.js';
import type { PlanSource } from './plan-source.js';
import type { ContainerTarget, Loss } from './records-writer.js';
import { ReportScope, type PodDirectory, type ScopeOptions, type ScopeRef } from './scope.js';
import { recordedCommand, sessionOf, type SessionIdentity } from './sessions.js';
import type { RecordedCommand } from '../../api/v1alpha1/index.js';

/** A policy's `spec.outputs`. */
export type PolicyOutputs = PlanRules['outputs'];

export const DEFAULT_OUTPUTS: PolicyOutputs = { events: true, auditRecords: true };

/** What the ingestor needs of the writers (RecordsWriter and EventsWriter are these). */
export interface RecordSink {
  write(session: SessionIdentity, command: RecordedCommand): Promise<WriteOutcome>;
  noteLoss(target: ContainerTarget, loss: Loss): Promise<WriteOutcome[]>;
}
export interface EventWriter {
  write(events: readonly CommandEvent[]): Promise<WriteOutcome[]>;
  /** A coverage problem as an Event on its pod (EventsWriter has it; test doubles may leave it out). */
  writeCoverage?(event: CoverageEvent): Promise<WriteOutcome>;
}

export interface ReportIngestorOptions {
  records: RecordSink;
  events: EventWriter;
  ledger: ReportLedger;
  /** The outputs of a policy (`spec.outputs`); undefined for a policy the operator does not know. */
  outputsOf: (policy: string) => PolicyOutputs | undefined;
  /** The node plans: what each node may report (scope.ts); loss records and agent state concern its policies. */
  plans: Pick<PlanSource, 'get'>;
  /** The operator's Pods (its informer): a record of a pod on the node but not planned yet is held, not refused. */
  pods?: PodDirectory;
  /** The scope's memory and grace (scope.ts defaults). */
  scope?: Pick<ScopeOptions, 'memoryMs' | 'graceMs'>;
  /** Time (common/clock.ts): only `now` is read. */
  clock?: Pick<Clock, 'now'>;
  logger?: Logger;
}

export type IngestCounter =
  | 'reports'
  | 'records'
  | 'accepted'
  | 'duplicates'
  /** Records answered retry: a transient write failure, or held (below). */
  | 'failed'
  | 'unattributed'
  /** Records answered rejected (never to be written), and per reason (`rejected:<reason>`). */
  | 'rejected'
  | `rejected:${RejectionReason}`
  /** Records held back: their pod runs on the node but its plan does not name it yet. */
  | 'held'
  | 'coverageProblems'
  | 'losses'
  /** Events or lines the agents said they lost (the sum of loss records' counts). */
  | 'lostCommands';

/** Nothing in the report could be written now; the agent must send it again. */
export class IngestFailure extends Error {
  constructor(
    readonly failed: number,
    readonly total: number,
  ) {
    super(`${failed} of ${total} records could not be written`);
  }
}

/** The most of a container-controlled name (namespace, pod, container) a log line or a problem quotes. */
const NAME_EXCERPT = 64;

const MAX_NOTED = 50_000;

type Outcome = WriteOutcome;

/** Combines the outcomes of the outputs of one record: the judge decides, any failure fails it. */
export function combine(judge: Outcome | undefined, other: Outcome | undefined): Outcome {
  if (judge === 'failed' || other === 'failed') return 'failed';
  return judge ?? other ?? 'accepted';
}

/** The ledger's problem for a coverage record; undefined when it tells of no problem. */
export function coverageProblem(r: CoverageRecord): PolicyProblem | undefined {
  if (r.status === 'gap') return { kind: 'coverage-gap', node: r.node };
  if (r.late) return { kind: 'attached-late', node: r.node };
  return undefined;
}

/** The loss a coverage record puts on the records of its container's active sessions. */
export function coverageLoss(r: CoverageRecord): Loss | undefined {
  if (r.status === 'gap')
    return { reason: `not audited: ${r.reason ?? 'unknown'}`.slice(0, 256), count: 0, since: r.time };
  if (r.late)
    return {
      reason: 'attached late: earlier commands may be missing',
      count: 0,
      until: r.coveredFrom ?? r.time,
    };
  return undefined;
}

export function lossProblem(r: LossRecord): PolicyProblem {
  return {
    kind: 'loss',
    node: r.node,
    reason: r.reason,
    ...(r.count !== undefined ? { count: r.count } : {}),
  };
}

/** A bounded set in insertion order (ledger facts already told: a retried report does not tell them twice). */
class Noted {
  private readonly keys = new Set<string>();
  /** True the first time. */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > MAX_NOTED) this.keys.delete(this.keys.values().next().value as string);
    return true;
  }
}

/** A rejected record, for the answer, the counters, the log and the ledger. */
interface Rejected {
  r: CommandRecord | ExecRecord | CoverageRecord;
  reason: RejectionReason;
  /** Out of the node's scope: nothing of it is told to the ledger (its policy may be anyone's). */
  refused: boolean;
}

/** The container a record names, when it names one wholly. */
function scopeRef(r: CommandRecord | ExecRecord | CoverageRecord): ScopeRef | undefined {
  const { namespace, name, uid } = r.pod ?? {};
  if (!namespace || !name || !r.container) return undefined;
  return { namespace, pod: name, uid: uid ?? '', container: r.container, policy: r.policy ?? '' };
}

export class ReportIngestor {
  readonly counters = new Counters<IngestCounter>();
  readonly scope: ReportScope;
  private readonly noted = new Noted();
  private readonly clock: Pick<Clock, 'now'>;
  private readonly log: Logger;

  constructor(private readonly options: ReportIngestorOptions) {
    this.clock = options.clock ?? realClock;
    this.log = options.logger ?? silentLogger();
    this.scope = new ReportScope({
      plans: options.plans,
      ...(options.pods ? { pods: options.pods } : {}),
      ...options.scope,
      clock: this.clock,
    });
  }

  async ingest(report: Report): Promise<ReportResponse> {
    this.counters.inc('reports');
    this.counters.inc('records', report.records.length);

    const outcomes: Outcome[] = report.records.map(() => 'failed');
    const rejected: Rejected[] = [];
    const reject = (index: number, r: Rejected['r'], reason: RejectionReason, refused: boolean): void => {
      outcomes[index] = { lost: reason };
      rejected.push({ r, reason, refused });
    };
    const commands: { r: CommandRecord | ExecRecord; index: number }[] = [];
    const coverage: { r: CoverageRecord; index: number }[] = [];
    const losses: { r: LossRecord; index: number }[] = [];
    const inScope = new Set<string>();
    report.records.forEach((r, index) => {
      if (r.kind === 'loss') return losses.push({ r, index });
      const ref = scopeRef(r);
      if (ref) {
        const judged = this.scope.judge(report.node, ref);
        if (judged.verdict === 'refused') return reject(index, r, judged.reason, true);
        if (judged.verdict === 'held') return this.counters.inc('held');
      } else {
        // No container to judge: nothing of it is written, and the policy it names must be planned on the node.
        if (!r.policy || !this.scope.policyPlanned(report.node, r.policy))
          return reject(index, r, 'not-planned', true);
        if (r.kind !== 'coverage') {
          this.unattributed(r);
          return reject(index, r, 'unattributed', false);
        }
      }
      if (r.policy) inScope.add(r.policy);
      if (r.kind === 'coverage') coverage.push({ r, index });
      else commands.push({ r, index });
    });
    const policies = [...new Set([...this.scope.policies(report.node), ...inScope])];
    for (const { r, index } of losses) outcomes[index] = this.loss(r, policies);

    const [written, covered] = await Promise.all([
      this.commands(commands.map((c) => c.r)),
      Promise.all(coverage.map((c) => this.coverage(c.r))),
    ]);
    commands.forEach((c, i) => {
      const o = written[i] ?? 'failed';
      if (isLost(o)) reject(c.index, c.r, o.lost, false);
      else outcomes[c.index] = o;
    });
    coverage.forEach((c, i) => (outcomes[c.index] = covered[i] ?? 'failed'));

    if (report.state)
      this.options.ledger.recordAgentState(report.node, report.state, new Date(this.clock.now()), policies);
    this.tellRejected(report.node, rejected);
    const response: ReportResponse = { accepted: 0, duplicates: 0 };
    const retry: number[] = [];
    report.records.forEach((r, i) => {
      const o = outcomes[i];
      if (o === 'accepted') response.accepted++;
      else if (o === 'duplicate') response.duplicates++;
      else if (o === 'failed' || o === undefined) retry.push(r.seq);
    });
    const rejections: Rejection[] = rejected.map(({ r, reason }) => ({ seq: r.seq, reason }));
    if (rejections.length > 0) response.rejected = rejections.sort((a, b) => a.seq - b.seq);
    if (retry.length > 0) response.retry = retry;
    this.counters.inc('accepted', response.accepted);
    this.counters.inc('duplicates', response.duplicates);
    this.counters.inc('failed', retry.length);
    if (retry.length > 0 && retry.length === report.records.length)
      throw new IngestFailure(retry.length, report.records.length);
    return response;
  }

  private async commands(records: (CommandRecord | ExecRecord)[]): Promise<Outcome[]> {
    // Every record here names its pod and container (scopeRef): sessionOf and commandEventOf are defined.
    const routes = records.map((r) => {
      const outputs = (r.policy ? this.options.outputsOf(r.policy) : undefined) ?? DEFAULT_OUTPUTS;
      const session = outputs.auditRecords ? sessionOf(r) : undefined;
      const event = outputs.events ? commandEventOf(r) : undefined;
      return { r, session, event };
    });
    const events = routes.flatMap((x) => (x.event ? [x.event] : []));
    const safely = (p: Promise<Outcome[]>): Promise<Outcome[]> => p.catch(() => events.map(() => 'failed'));
    const [recordOutcomes, eventOutcomes] = await Promise.all([
      Promise.all(
        routes.map((x) =>
          x.session
            ? this.options.records.write(x.session, recordedCommand(x.r)).catch((): Outcome => 'failed')
            : Promise.resolve(undefined),
        ),
      ),
      events.length > 0 ? safely(this.options.events.write(events)) : Promise.resolve([]),
    ]);
    let e = 0;
    const judged = routes.map((x, i) => {
      const event = x.event ? (eventOutcomes[e++] ?? 'failed') : undefined;
      const record = recordOutcomes[i];
      // The AuditRecord, when written, judges duplicates (it is durable); else the Event does.
      return x.session ? { judge: record, other: event } : { judge: event, other: undefined };
    });
    this.tellCommands(
      records,
      judged.map((j) => j.judge),
    );
    return judged.map((j) => combine(j.judge, j.other));
  }

  /**
   * The ledger counts commands written now (judged accepted), per policy: even when another output failed
   * and the report is sent again, since the retry is then judged a duplicate.
   */
  private tellCommands(records: (CommandRecord | ExecRecord)[], judged: (Outcome | undefined)[]): void {
    const byPolicy = new Map<string, { count: number; last: Date }>();
    records.forEach((r, i) => {
      if (!r.policy || judged[i] !== 'accepted') return;
      const entry = byPolicy.get(r.policy) ?? { count: 0, last: new Date(0) };
      entry.count++;
      const t = new Date(r.time);
      if (t > entry.last) entry.last = t;
      byPolicy.set(r.policy, entry);
    });
    for (const [policy, { count, last }] of byPolicy) this.options.ledger.recordCommands(policy, count, last);
  }

  /**
   * Rejected records: counted by reason; one log line per reason and pod; those in scope told to the ledger
   * once per record as a problem of their policy. No command text anywhere: names are quoted escaped and cut.
   */
  private tellRejected(node: string, rejected: readonly Rejected[]): void {
    const groups = new Map<string, { first: Rejected; seqs: number[]; fresh: number }>();
    for (const x of rejected) {
      this.counters.inc('rejected');
      this.counters.inc(`rejected:${x.reason}`);
      const key = JSON.stringify([x.reason, x.r.pod?.namespace, x.r.pod?.name, x.r.container, x.r.policy]);
      const group = groups.get(key) ?? { first: x, seqs: [], fresh: 0 };
      group.seqs.push(x.r.seq);
      if (this.noted.add(JSON.stringify(['rejected', x.r.node, x.r.boot, x.r.seq]))) group.fresh++;
      groups.set(key, group);
    }
    for (const { first, seqs, fresh } of groups.values()) {
      const { r, reason, refused } = first;
      const namespace = excerpt(r.pod?.namespace ?? '?', NAME_EXCERPT);
      const pod = excerpt(r.pod?.name ?? '?', NAME_EXCERPT);
      const container = excerpt(r.container ?? r.containerId.slice(0, 12), NAME_EXCERPT);
      const fields = {
        [LogField.node]: node,
        [LogField.reason]: reason,
        [LogField.count]: seqs.length,
        [LogField.namespace]: namespace,
        [LogField.pod]: pod,
        [LogField.policy]: excerpt(r.policy ?? '', NAME_EXCERPT),
        [LogField.detail]: { container, boot: r.boot.slice(0, 8), seqs: seqs.slice(0, 10) },
      };
      if (refused) {
        this.log.warn('Records refused: outside the node’s plan, nothing written', fields);
        continue;
      }
      // Told already: a retried report; or by unattributed(), which logs and tells the ledger itself.
      if (fresh === 0 || reason === 'unattributed') continue;
      this.log.error('Records lost: they can never be written', fields);
      if (r.policy)
        this.options.ledger.recordProblem(r.policy, { kind: 'rejected', node, reason, count: fresh });
    }
  }

  private unattributed(r: CommandRecord | ExecRecord): void {
    this.counters.inc('unattributed');
    if (!this.noted.add(JSON.stringify([r.node, r.boot, r.seq]))) return;
    this.log.warn('Record without pod identity', {
      [LogField.node]: r.node,
      [LogField.containerId]: excerpt(r.containerId, NAME_EXCERPT),
    });
    if (r.policy) this.options.ledger.recordProblem(r.policy, { kind: 'unattributed', node: r.node });
  }

  private async coverage(r: CoverageRecord): Promise<Outcome> {
    const problem = coverageProblem(r);
    const loss = coverageLoss(r);
    if (!problem || !loss) return 'accepted';
    const first = this.noted.add(JSON.stringify([r.node, r.boot, r.seq]));
    if (first) {
      this.counters.inc('coverageProblems');
      if (r.policy) this.options.ledger.recordProblem(r.policy, problem);
    }
    const namespace = r.pod?.namespace;
    const pod = r.pod?.name;
    if (!namespace || !pod || !r.container) return first ? 'accepted' : 'duplicate';
    const target: ContainerTarget = { node: r.node, namespace, pod, container: r.container };
    // The detail the policy status leaves out goes to the pod's namespace: a Warning Event, when the policy
    // wants Events, and a loss on the records of the container's active sessions.
    const outputs = (r.policy ? this.options.outputsOf(r.policy) : undefined) ?? DEFAULT_OUTPUTS;
    const event = outputs.events ? coverageEventOf(r) : undefined;
    const [results, told] = await Promise.all([
      this.options.records.noteLoss(target, loss),
      event && this.options.events.writeCoverage
        ? this.options.events.writeCoverage(event).catch((): Outcome => 'failed')
        : undefined,
    ]);
    // A session record that can no longer take the loss (its namespace is gone) does not hold the report back.
    if (results.includes('failed') || told === 'failed') return 'failed';
    return first ? 'accepted' : 'duplicate';
  }

  private loss(r: LossRecord, policies: readonly string[]): Outcome {
    if (!this.noted.add(JSON.stringify([r.node, r.boot, r.seq]))) return 'duplicate';
    this.counters.inc('losses');
    if (r.count !== undefined) this.counters.inc('lostCommands', r.count);
    const problem = lossProblem(r);
    this.log.warn('Agent reported a loss', {
      [LogField.node]: r.node,
      [LogField.reason]: r.reason,
      [LogField.count]: r.count,
    });
    for (const policy of policies) this.options.ledger.recordProblem(policy, problem);
    return 'accepted';
  }
}
