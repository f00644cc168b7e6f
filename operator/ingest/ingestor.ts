/**
 * One validated, authenticated report -> the writers and the ledger, and the answer to the agent.
 *
 * - command and exec records go to the outputs their policy asks for (`outputsOf(policy)`; both when the
 *   policy is unknown): the AuditRecord of their session (records-writer.ts) and an Event on the pod
 *   (events-writer.ts). A record is `accepted` or `duplicate` by its AuditRecord when that output is on (the
 *   durable judge of duplicates), else by its Event. A record that cannot be written where its policy wants it
 *   (no pod namespace or name; for AuditRecords also no container name) is counted (`unattributed`) and told
 *   to the ledger as a problem of its policy.
 * - coverage records: a gap, or a probe attached late, is a problem of the policy (ledger) and a loss on the
 *   records of that container's active sessions.
 * - loss records (node-wide, they name no container): a problem of every policy planned on the node.
 * - the agent's state: to the ledger, for every policy planned on the node or named in the report.
 *
 * The answer waits for every write. If any failed, the report fails as a whole (503: the agent sends it
 * again, and what was written is then a duplicate); what was written is told to the ledger either way.
 */
import type { PlanRules, Report, ReportResponse } from '../../api/agentapi/v1.js';
import type { CommandRecord, CoverageRecord, ExecRecord, LossRecord } from '../../api/records/v1.js';
import type { Logger } from '../../common/logging.js';
import { silentLogger } from '../../common/logging.js';
import type { PolicyProblem, ReportLedger } from '../ledger.js';
import { Counters } from './counters.js';
import { commandEventOf, type CommandEvent } from './events.js';
import { Field } from './log-fields.js';
import type { WriteOutcome } from './outcome.js';
import type { PlanSource } from './plan-source.js';
import type { ContainerTarget, Loss } from './records-writer.js';
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
}

export interface ReportIngestorOptions {
  records: RecordSink;
  events: EventWriter;
  ledger: ReportLedger;
  /** The outputs of a policy (`spec.outputs`); undefined for a policy the operator does not know. */
  outputsOf: (policy: string) => PolicyOutputs | undefined;
  /** The policies planned on a node (loss records and agent state are about all of them). */
  plans?: Pick<PlanSource, 'get'>;
  now?: () => Date;
  logger?: Logger;
}

export type IngestCounter =
  | 'reports'
  | 'records'
  | 'accepted'
  | 'duplicates'
  | 'failed'
  | 'unattributed'
  | 'coverageProblems'
  | 'losses'
  /** Events or lines the agents said they lost (the sum of loss records' counts). */
  | 'lostCommands';

/** The report could not be written completely; the agent must send it again. */
export class IngestFailure extends Error {
  constructor(
    readonly failed: number,
    readonly total: number,
  ) {
    super(`${failed} of ${total} records could not be written`);
  }
}

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

export class ReportIngestor {
  readonly counters = new Counters<IngestCounter>();
  private readonly noted = new Noted();
  private readonly now: () => Date;
  private readonly log: Logger;

  constructor(private readonly options: ReportIngestorOptions) {
    this.now = options.now ?? (() => new Date());
    this.log = options.logger ?? silentLogger();
  }

  async ingest(report: Report): Promise<ReportResponse> {
    this.counters.inc('reports');
    this.counters.inc('records', report.records.length);
    const nodePolicies = Object.keys(this.options.plans?.get(report.node)?.policies ?? {});
    const reportPolicies = report.records.flatMap((r) => ('policy' in r && r.policy ? [r.policy] : []));
    const policies = [...new Set([...nodePolicies, ...reportPolicies])];

    const outcomes: Outcome[] = report.records.map(() => 'failed');
    const commands: { r: CommandRecord | ExecRecord; index: number }[] = [];
    const coverage: Promise<void>[] = [];
    report.records.forEach((r, index) => {
      if (r.kind === 'command' || r.kind === 'exec') commands.push({ r, index });
      else if (r.kind === 'coverage') coverage.push(this.coverage(r).then((o) => void (outcomes[index] = o)));
      else outcomes[index] = this.loss(r, policies);
    });
    const [written] = await Promise.all([this.commands(commands.map((c) => c.r)), Promise.all(coverage)]);
    commands.forEach((c, i) => (outcomes[c.index] = written[i] ?? 'failed'));

    if (report.state) this.options.ledger.recordAgentState(report.node, report.state, this.now(), policies);
    const response: ReportResponse = { accepted: 0, duplicates: 0 };
    let failed = 0;
    for (const o of outcomes) {
      if (o === 'accepted') response.accepted++;
      else if (o === 'duplicate') response.duplicates++;
      else failed++;
    }
    this.counters.inc('accepted', response.accepted);
    this.counters.inc('duplicates', response.duplicates);
    this.counters.inc('failed', failed);
    if (failed > 0) throw new IngestFailure(failed, report.records.length);
    return response;
  }

  private async commands(records: (CommandRecord | ExecRecord)[]): Promise<Outcome[]> {
    const routes = records.map((r) => {
      const outputs = (r.policy ? this.options.outputsOf(r.policy) : undefined) ?? DEFAULT_OUTPUTS;
      const session = outputs.auditRecords ? sessionOf(r) : undefined;
      const event = outputs.events ? commandEventOf(r) : undefined;
      if ((outputs.auditRecords && !session) || (outputs.events && !event)) this.unattributed(r);
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

  private unattributed(r: CommandRecord | ExecRecord): void {
    this.counters.inc('unattributed');
    if (!this.noted.add(JSON.stringify([r.node, r.boot, r.seq]))) return;
    const problem: PolicyProblem = { kind: 'unattributed', node: r.node };
    this.log.warn('Record without pod identity', {
      [Field.node]: r.node,
      [Field.containerId]: r.containerId,
    });
    if (r.policy) this.options.ledger.recordProblem(r.policy, problem);
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
    const results = await this.options.records.noteLoss(target, loss);
    if (results.includes('failed')) return 'failed';
    return first ? 'accepted' : 'duplicate';
  }

  private loss(r: LossRecord, policies: readonly string[]): Outcome {
    if (!this.noted.add(JSON.stringify([r.node, r.boot, r.seq]))) return 'duplicate';
    this.counters.inc('losses');
    if (r.count !== undefined) this.counters.inc('lostCommands', r.count);
    const problem = lossProblem(r);
    this.log.warn('Agent reported a loss', {
      [Field.node]: r.node,
      [Field.reason]: r.reason,
      [Field.count]: r.count,
    });
    for (const policy of policies) this.options.ledger.recordProblem(policy, problem);
    return 'accepted';
  }
}
