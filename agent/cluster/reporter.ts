/**
 * Sends the queue's records to the operator (POST /v1/reports, api/agentapi/v1.ts), one report at a time, in
 * queue order, and acknowledges them in the queue once the operator has them.
 *
 *   batch      the oldest records, at most MAX_RECORDS_PER_REPORT and MAX_REPORT_BYTES, of one boot: a report
 *              carries the node and boot of its records (a previous run's records keep theirs). The first
 *              record of a quiet period waits LINGER (100 ms) for company; a backlog goes out at once.
 *   200        acknowledged: gone from the queue. Records it answers `rejected` (it can never write them: their
 *              namespace is gone, the API server forbids or refuses them, the node's plan does not name
 *              their container) are losses: counted by reason, logged and told in the state, not retried
 *   207        the same for every record but those in `retry` (the operator could not write them for now): they
 *              go back to the end of the queue (on disk before the batch is acknowledged) and are sent again
 *              later, without holding back the records behind them. An answer that does not parse is a 503
 *   400        the operator will never take this batch: logged, counted, dropped (retrying would only block
 *              every record behind it). The agent's own records are valid by construction and the queue
 *              skips any line that is not a valid record, so this means the two sides disagree on the schema.
 *   401, 403   the token was refused (it may be rotating): retried with backoff
 *   503, other, no answer   the whole batch retried with backoff; nothing is lost meanwhile, the queue holds it
 *   another node's records  (queued under another --node) dropped and counted: this token cannot send them
 *
 * The agent's state (AgentState) rides on every report of the current boot, and on a report without records
 * when nothing was sent for STATE_INTERVAL or someone calls nudge() (a new plan), so the operator's view of
 * the node stays fresh when nobody types.
 */
import {
  AgentState,
  MAX_RECORDS_PER_REPORT,
  MAX_REPORT_BYTES,
  type Rejection,
  type Report,
  REPORTS_PATH,
  ReportResponse,
} from '../../api/agentapi/v1.js';
import { parseJson } from '../../api/parse-json.js';
import { type Logger, LogField } from '../../common/logging.js';
import { Backoff, type BackoffPolicy } from '../../common/backoff.js';
import { realClock, sleep } from '../../common/clock.js';
import { RecentErrors } from '../core/recent-errors.js';
import { OPERATOR_RETRY_BACKOFF, type OperatorClient, errorText } from './operator-client.js';
import type { Batch, RecordQueue } from './queue.js';

/** What a report's envelope and state may take beyond its records' lines. */
const ENVELOPE_BYTES = 64 * 1024;

export interface ReporterOptions {
  queue: RecordQueue;
  client: OperatorClient;
  node: string;
  /** This run's boot: reports without records, and the state, are this boot's. */
  boot: string;
  /** The agent's state now (it is checked, and cut to the schema's bounds, before it is sent). */
  state: () => AgentState;
  logger: Logger;
  lingerMs?: number;
  stateIntervalMs?: number;
  requestTimeoutMs?: number;
  /** Over OPERATOR_RETRY_BACKOFF (operator-client.ts). */
  backoff?: Partial<BackoffPolicy>;
  maxRecords?: number;
  maxBytes?: number;
}

export interface ReporterStats {
  /** Reports the operator answered 200. */
  reports: number;
  recordsAccepted: number;
  /** Records the operator already had (an earlier delivery). */
  duplicates: number;
  /** Batches refused with 400, and their records: dropped. */
  rejectedBatches: number;
  rejectedRecords: number;
  /** Records the operator answered `rejected` one by one (it can never write them), by reason. */
  lostRecords: number;
  lostByReason: Record<string, number>;
  /** Records the operator asked to have again later (207): put back at the end of the queue. */
  requeued: number;
  /** Attempts without a 200, 207 or 400 (retried). */
  failures: number;
}

export class Reporter {
  readonly stats: ReporterStats = {
    reports: 0,
    recordsAccepted: 0,
    duplicates: 0,
    rejectedBatches: 0,
    rejectedRecords: 0,
    lostRecords: 0,
    lostByReason: {},
    requeued: 0,
    failures: 0,
  };
  readonly errors = new RecentErrors(4);
  private readonly backoff: Backoff;
  /** Aborted by stop(): wakes every wait. */
  private readonly stopping = new AbortController();
  /** Aborted at the end of stop()'s grace: cuts a request in flight. */
  private readonly halting = new AbortController();
  private deadline = Infinity;
  private loop: Promise<void> | undefined;
  private lastSent = 0;
  /** Nudges so far, and the last one a sent state answered (a nudge during a report needs another). */
  private nudges = 1;
  private nudgesAnswered = 0;
  private wakeNudge: (() => void) | undefined;

  constructor(private readonly options: ReporterOptions) {
    this.backoff = new Backoff({ ...OPERATOR_RETRY_BACKOFF, ...options.backoff });
  }

  start(): void {
    this.lastSent = Date.now();
    this.loop ??= this.run();
  }

  /** Sends the state soon, records or not (a new plan is in force). */
  nudge(): void {
    this.nudges++;
    this.wakeNudge?.();
  }

  /**
   * Stops; for up to `graceMs` it first keeps sending what the queue holds (on shutdown, so that the last
   * records do not wait for the next start). What is not sent stays in the queue.
   */
  async stop(graceMs = 0): Promise<void> {
    this.deadline = Date.now() + graceMs;
    this.stopping.abort();
    const timer = setTimeout(() => this.halting.abort(), graceMs);
    try {
      await this.loop;
    } finally {
      clearTimeout(timer);
    }
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private async run(): Promise<void> {
    let backlog = false;
    while (!this.stopped || (Date.now() < this.deadline && this.options.queue.hasRecords)) {
      const stateDue = await this.waitForWork();
      if (this.stopped && !this.options.queue.hasRecords) break;
      if (!backlog && !this.stopped && this.options.queue.hasRecords)
        await sleep(realClock, this.options.lingerMs ?? 100, this.stopping.signal);
      const maxRecords = this.options.maxRecords ?? MAX_RECORDS_PER_REPORT;
      const batch = await this.options.queue.peek(
        maxRecords,
        (this.options.maxBytes ?? MAX_REPORT_BYTES) - ENVELOPE_BYTES,
      );
      if (!batch && !stateDue) continue;
      const outcome = await this.send(batch);
      if (outcome === 'retry') {
        backlog = true;
        const delay = this.backoff.next();
        await sleep(realClock, delay, this.stopped ? this.halting.signal : this.stopping.signal);
        // Stopping: one more try within the grace, no more.
        if (this.stopped) break;
        continue;
      }
      this.backoff.reset();
      backlog = batch !== undefined && batch.records.length >= maxRecords;
    }
  }

  /** Waits for records, a nudge or the state interval; true when a report must go even without records. */
  private async waitForWork(): Promise<boolean> {
    const interval = this.options.stateIntervalMs ?? 30_000;
    const due = () => this.nudges > this.nudgesAnswered || Date.now() - this.lastSent >= interval;
    if (this.stopped || this.options.queue.hasRecords || due()) return !this.stopped && due();
    const wake = new AbortController();
    const onStop = () => wake.abort();
    this.stopping.signal.addEventListener('abort', onStop, { once: true });
    this.wakeNudge = () => wake.abort();
    await Promise.race([
      this.options.queue.waitForRecords(wake.signal),
      sleep(realClock, Math.max(0, interval - (Date.now() - this.lastSent)), wake.signal),
    ]);
    wake.abort();
    this.wakeNudge = undefined;
    this.stopping.signal.removeEventListener('abort', onStop);
    return !this.stopped && due();
  }

  /** The state, within the schema's bounds; undefined (and logged) if it still is not valid. */
  private state(): AgentState | undefined {
    const raw = this.options.state();
    const parsed = AgentState.safeParse({
      ...raw,
      errors: raw.errors.slice(-16).map((e) => e.slice(0, 1024)),
    });
    if (parsed.success) return parsed.data;
    this.options.logger.error('Agent state not valid: sent without it', {
      [LogField.reason]: parsed.error.message.slice(0, 2048),
    });
    return undefined;
  }

  private async send(batch: Batch | undefined): Promise<'done' | 'retry'> {
    const { client, logger, node, boot } = this.options;
    if (batch && batch.node !== node) {
      // Queued under another node name (a state directory moved, or --node changed): this node's token can
      // never deliver them, and they would block everything behind them.
      this.rejected(
        batch.records.length,
        `records of node ${batch.node} cannot be sent as node ${node}`,
        batch,
      );
      await this.options.queue.ack(batch);
      return 'done';
    }
    const current = batch === undefined || batch.boot === boot;
    const nudges = this.nudges;
    const state = current ? this.state() : undefined;
    const report: Report = {
      node: batch?.node ?? node,
      boot: batch?.boot ?? boot,
      ...(state ? { state } : {}),
      records: batch?.records ?? [],
    };
    let response;
    try {
      response = await client.request(
        'POST',
        REPORTS_PATH,
        {},
        {
          body: report,
          timeoutMs: this.options.requestTimeoutMs ?? 30_000,
          signal: this.halting.signal,
        },
      );
    } catch (error) {
      this.failed(`cannot reach the operator with a report: ${(error as Error).message}`);
      return 'retry';
    }
    const records = report.records.length;
    switch (response.status) {
      case 200: {
        const answer = parseJson(ReportResponse, response.body);
        if (answer.ok) this.answered(answer.value, report);
        else logger.warn('Unexpected answer to a report', { [LogField.reason]: answer.detail });
        this.stats.reports++;
        if (batch) await this.options.queue.ack(batch);
        if (current) this.stateSent(nudges);
        return 'done';
      }
      case 207: {
        // Done but for the records in `retry`: those go back to the queue's end, then the batch is acknowledged.
        const answer = parseJson(ReportResponse, response.body);
        if (!answer.ok || !batch) {
          this.failed(
            `the operator's answer 207 to a report does not parse: ${answer.ok ? 'no records' : answer.detail}`,
          );
          return 'retry';
        }
        const again = new Set(answer.value.retry ?? []);
        const retry = batch.records.filter((r) => again.has(r.seq));
        if (!(await this.options.queue.requeue(retry))) {
          this.failed('cannot put records the operator asked for again back into the queue');
          return 'retry';
        }
        this.stats.requeued += retry.length;
        this.answered(answer.value, report);
        this.stats.reports++;
        await this.options.queue.ack(batch);
        if (current) this.stateSent(nudges);
        return 'done';
      }
      case 400: {
        this.rejected(records, `the operator refused a report (400): ${errorText(response.body)}`, report);
        if (batch) await this.options.queue.ack(batch);
        if (current) this.stateSent(nudges); // a refused state too: not again at once
        return 'done';
      }
      case 401:
      case 403:
        this.failed(
          `the operator refused the agent's token (${response.status}): ${errorText(response.body)}`,
        );
        return 'retry';
      default:
        this.failed(`the operator answered ${response.status} to a report: ${errorText(response.body)}`);
        return 'retry';
    }
  }

  /** Counts an answer; records it rejected are losses: counted by reason, logged and told in the state. */
  private answered(answer: ReportResponse, report: Pick<Report, 'boot' | 'records'>): void {
    this.stats.recordsAccepted += answer.accepted;
    this.stats.duplicates += answer.duplicates;
    const rejected: readonly Rejection[] = answer.rejected ?? [];
    if (rejected.length === 0) return;
    const byReason: Record<string, number> = {};
    for (const r of rejected) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
    this.stats.lostRecords += rejected.length;
    for (const [reason, n] of Object.entries(byReason))
      this.stats.lostByReason[reason] = (this.stats.lostByReason[reason] ?? 0) + n;
    const reasons = Object.entries(byReason)
      .map(([reason, n]) => `${reason} ${n}`)
      .join(', ');
    this.errors.add(`the operator can never write ${rejected.length} record(s) (${reasons}): lost`);
    this.options.logger.error('Records lost: the operator can never write them', {
      [LogField.reason]: reasons,
      [LogField.count]: rejected.length,
      [LogField.detail]: { boot: report.boot, seqs: rejected.slice(0, 10).map((r) => r.seq) },
    });
  }

  /** Records dropped for good: counted, logged, and told in the state. */
  private rejected(count: number, reason: string, from: Pick<Report, 'boot' | 'records'>): void {
    this.stats.rejectedBatches++;
    this.stats.rejectedRecords += count;
    this.errors.add(`${reason}; ${count} record(s) dropped`.slice(0, 1024));
    this.options.logger.error('Records dropped', {
      [LogField.reason]: reason,
      [LogField.count]: count,
      [LogField.detail]: {
        boot: from.boot,
        firstSeq: from.records[0]?.seq,
        lastSeq: from.records.at(-1)?.seq,
      },
    });
  }

  private stateSent(nudges: number): void {
    this.lastSent = Date.now();
    this.nudgesAnswered = nudges;
  }

  private failed(message: string): void {
    this.stats.failures++;
    this.errors.add(message.slice(0, 1024));
    // The first failure in a row is a warning; the rest of an outage only at debug level.
    this.options.logger.log(this.backoff.attempts === 0 ? 'warn' : 'debug', 'Report not delivered', {
      [LogField.error]: message,
    });
  }
}
