/**
 * Commands and exec records -> core/v1 Events on the audited Pod (events.ts says which and how they read).
 *
 * - Deterministic names (`<pod>.<boot 8>.<seq>`): a retried Event is an AlreadyExists, counted as a duplicate.
 *   Records handled recently are also remembered by (node, boot, seq), so a retry costs no API call.
 * - Aggregation: a command that repeats an earlier Event's message (same pod, container, shell and text) within
 *   `aggregateMs` raises that Event's count (and lastTimestamp) instead of adding an Event.
 * - Rate limit per pod (token bucket, default burst 25, 5/s). A command that finds no token is folded: counted,
 *   with the first few kept as samples, and at the end of the folding window (`foldWindowMs`, from the first
 *   fold) one summary Event (`CommandsFolded`) says how many. Folded commands are acknowledged when counted;
 *   a summary that cannot be written is retried, then logged with its count and counted in
 *   `summariesFailed`: never dropped silently. `close()` writes pending summaries at once.
 * - Coverage problems (`writeCoverage`): a NotAudited or AuditedLate Warning Event per record, not rate limited.
 *
 * Records of one pod are handled in order (one chain per pod); pods proceed in parallel.
 */
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { type Clock, type Timer, realClock, sleep } from '../../common/clock.js';
import { Counters } from './counters.js';
import {
  addToFold,
  aggregateKey,
  commandEventBody,
  coverageEventBody,
  foldEventBody,
  podKey,
  startFold,
  type CommandEvent,
  type CoverageEvent,
  type Fold,
  type PodRef,
} from './events.js';
import type { EventSink } from '../../common/kube/event-sink.js';
import { describeError } from '../../common/kube/errors.js';
import { lost, writeFailure, type WriteOutcome } from './outcome.js';
import { KeyedTokenBuckets, type RateLimit } from '../../common/token-bucket.js';

/** Events per pod: what the bucket of each pod allows before commands are folded. */
export const DEFAULT_EVENT_RATE: RateLimit = { burst: 25, perSecond: 5 };
export const DEFAULT_FOLD_WINDOW_MS = 10_000;
const DEFAULT_AGGREGATE_MS = 10 * 60_000;
const MAX_REMEMBERED = 100_000;
const MAX_AGGREGATES = 10_000;
const SUMMARY_ATTEMPTS = 5;
const SUMMARY_RETRY_MS = 2_000;

export interface EventsWriterOptions {
  sink: EventSink;
  rate?: RateLimit;
  foldWindowMs?: number;
  aggregateMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export type EventsCounter =
  | 'created'
  | 'aggregated'
  | 'duplicates'
  | 'folded'
  | 'summaries'
  | 'summariesFailed'
  | 'failed'
  | 'lost'
  /** NotAudited and AuditedLate Events written. */
  | 'coverage';

interface Aggregate {
  namespace: string;
  name: string;
  count: number;
  at: number;
}

interface PendingFold {
  fold: Fold;
  timer: Timer;
}

/** A bounded set in insertion order: the oldest entries go first. */
class RecentSet {
  private readonly items = new Set<string>();
  constructor(private readonly max: number) {}
  has(key: string): boolean {
    return this.items.has(key);
  }
  add(key: string): void {
    this.items.delete(key);
    this.items.add(key);
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value as string);
  }
}

export class EventsWriter {
  readonly counters = new Counters<EventsCounter>();
  private readonly sink: EventSink;
  private readonly rate: RateLimit;
  private readonly foldWindowMs: number;
  private readonly aggregateMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly buckets: KeyedTokenBuckets;
  private readonly handled = new RecentSet(MAX_REMEMBERED);
  private readonly aggregates = new Map<string, Aggregate>();
  private readonly folds = new Map<string, PendingFold>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly summaries = new Set<Promise<void>>();
  private lastSweep = 0;
  private closing = false;

  constructor(options: EventsWriterOptions) {
    this.sink = options.sink;
    this.rate = options.rate ?? DEFAULT_EVENT_RATE;
    this.foldWindowMs = options.foldWindowMs ?? DEFAULT_FOLD_WINDOW_MS;
    this.aggregateMs = options.aggregateMs ?? DEFAULT_AGGREGATE_MS;
    this.clock = options.clock ?? realClock;
    this.log = options.logger ?? silentLogger();
    this.buckets = new KeyedTokenBuckets(this.rate, () => this.clock.now());
  }

  /** One outcome per event, in order; resolves when each is written, aggregated, folded or known. */
  write(events: readonly CommandEvent[]): Promise<WriteOutcome[]> {
    this.sweep();
    return Promise.all(events.map((e) => this.enqueue(e)));
  }

  /**
   * A coverage problem (a container not audited, or audited late) as a Warning Event on its pod, once per
   * record. Not rate limited: an agent reports one per container and attempt, far fewer than commands.
   */
  async writeCoverage(e: CoverageEvent): Promise<WriteOutcome> {
    const id = JSON.stringify([e.node, e.boot, e.seq]);
    if (this.handled.has(id)) {
      this.counters.inc('duplicates');
      return 'duplicate';
    }
    try {
      const result = await this.sink.create(coverageEventBody(e));
      this.handled.add(id);
      if (result === 'exists') {
        this.counters.inc('duplicates');
        return 'duplicate';
      }
      this.counters.inc('coverage');
      return 'accepted';
    } catch (err) {
      return this.failed(e, err);
    }
  }

  /** Writes the pending summaries now and waits for everything in flight (shutdown). */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.chains.values()]);
    for (const [key, pending] of [...this.folds]) {
      pending.timer.cancel();
      this.folds.delete(key);
      this.writeSummary(pending.fold);
    }
    while (this.summaries.size > 0) await Promise.all([...this.summaries]);
  }

  private enqueue(e: CommandEvent): Promise<WriteOutcome> {
    const key = podKey(e);
    const previous = this.chains.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.handle(e));
    const tail = next.catch(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  private async handle(e: CommandEvent): Promise<WriteOutcome> {
    const id = JSON.stringify([e.node, e.boot, e.seq]);
    if (this.handled.has(id)) {
      this.counters.inc('duplicates');
      return 'duplicate';
    }
    const pod = podKey(e);
    if (!this.buckets.take(pod)) {
      this.fold(pod, e);
      this.handled.add(id);
      return 'accepted';
    }
    try {
      const outcome = (await this.aggregate(e)) ?? (await this.create(e));
      this.handled.add(id);
      return outcome;
    } catch (err) {
      return this.failed(e, err);
    }
  }

  /** A failed write: a permanent failure (the namespace is gone, forbidden, invalid) is a loss, else retried. */
  private failed(e: PodRef, err: unknown): WriteOutcome {
    const failure = writeFailure(err);
    this.counters.inc(failure.permanent ? 'lost' : 'failed');
    this.log.error(failure.permanent ? 'Event not written: lost' : 'Event write failed', {
      [LogField.namespace]: e.namespace,
      [LogField.pod]: e.pod,
      ...(failure.permanent ? { [LogField.reason]: failure.reason } : {}),
      [LogField.error]: describeError(err),
    });
    return failure.permanent ? lost(failure.reason) : 'failed';
  }

  /** Raises the count of the Event this command repeats; undefined when there is none to raise. */
  private async aggregate(e: CommandEvent): Promise<WriteOutcome | undefined> {
    const key = aggregateKey(e);
    const previous = this.aggregates.get(key);
    const now = this.clock.now();
    if (!previous || now - previous.at > this.aggregateMs) return undefined;
    const count = previous.count + 1;
    if (!(await this.sink.bump(previous.namespace, previous.name, count, new Date(e.time)))) {
      this.aggregates.delete(key);
      return undefined;
    }
    this.remember(key, { ...previous, count, at: now });
    this.counters.inc('aggregated');
    return 'accepted';
  }

  private async create(e: CommandEvent): Promise<WriteOutcome> {
    const body = commandEventBody(e);
    const result = await this.sink.create(body);
    if (result === 'exists') {
      this.counters.inc('duplicates');
      return 'duplicate';
    }
    this.counters.inc('created');
    this.remember(aggregateKey(e), {
      namespace: e.namespace,
      name: body.metadata.name ?? '',
      count: 1,
      at: this.clock.now(),
    });
    return 'accepted';
  }

  private remember(key: string, aggregate: Aggregate): void {
    this.aggregates.delete(key);
    this.aggregates.set(key, aggregate);
    if (this.aggregates.size > MAX_AGGREGATES)
      this.aggregates.delete(this.aggregates.keys().next().value as string);
  }

  private fold(pod: string, e: CommandEvent): void {
    this.counters.inc('folded');
    const pending = this.folds.get(pod);
    if (pending) {
      pending.fold = addToFold(pending.fold, e);
      return;
    }
    const fold = addToFold(startFold(e), e);
    const entry: PendingFold = {
      fold,
      timer: this.clock.setTimer(() => {
        if (this.folds.get(pod) !== entry) return;
        this.folds.delete(pod);
        this.writeSummary(entry.fold);
      }, this.foldWindowMs),
    };
    this.folds.set(pod, entry);
  }

  private writeSummary(fold: Fold): void {
    const done = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.sink.create(foldEventBody(fold, this.rate));
          this.counters.inc('summaries');
          return;
        } catch (err) {
          const context = {
            [LogField.namespace]: fold.namespace,
            [LogField.pod]: fold.pod,
            [LogField.count]: fold.count,
            [LogField.error]: describeError(err),
          };
          if (attempt >= SUMMARY_ATTEMPTS) {
            this.counters.inc('summariesFailed');
            this.log.error('Event summary not written: folded commands not shown as Events', context);
            return;
          }
          this.log.warn('Event summary write failed; retrying', context);
          if (!this.closing) await sleep(this.clock, SUMMARY_RETRY_MS * attempt);
        }
      }
    })();
    this.summaries.add(done);
    void done.then(() => this.summaries.delete(done));
  }

  private sweep(): void {
    const now = this.clock.now();
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    this.buckets.sweep();
    for (const [key, a] of this.aggregates) if (now - a.at > this.aggregateMs) this.aggregates.delete(key);
  }
}
