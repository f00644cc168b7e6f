/**
 * Commands and exec records -> AuditRecords, one per session (sessions.ts), in the pod's namespace.
 *
 * Commands are batched per session (batcher.ts: a flush window, default 200 ms, or at once at 100 commands)
 * and each batch is one status write. A session's record is created at its first batch, under a
 * deterministic name (naming.ts); its commands are kept by seq, so a command whose seq is already in one of
 * the session's parts is a duplicate and is skipped. A part that is full (MAX_COMMANDS_PER_RECORD, or about
 * 1 MiB encoded) is marked Closed and the session continues in part N+1.
 *
 * Status writes are PUTs of the status subresource carrying the resourceVersion read: a 409 means someone
 * wrote in between, so the writer reads the record again, treats what is now in it as duplicates and writes
 * the rest. Nothing is lost or written twice. The promise of each command resolves only once its batch is
 * written, which is what lets the server answer an agent only after its records are durable.
 *
 * Failures (outcome.ts `writeFailure`): a transient one fails what is left of the batch (`failed`: the agent
 * sends it again). A permanent one of the target (the namespace deleted or terminating, forbidden) makes what
 * is left of the batch `lost`. A permanent one of the content (invalid, too large) is narrowed down: the
 * write is tried again with half the commands, down to one; a single command refused alone is `lost` (or,
 * too large beside others, moves to the next part), and the rest of the batch is written. Sizes are measured
 * as the API server stores them (api/stored-size.ts), so too large should not happen at all.
 *
 * What the writer knows of a session (its current part, the seqs in all parts) is in memory; a session not
 * heard of for `idleMs` is forgotten and read back from the API server when it is heard of again, as it is
 * after a restart or a change of leader.
 */
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import type { AuditRecord, AuditRecordStatus, RecordedCommand } from '../../api/v1alpha1/index.js';
import { type Clock, realClock } from '../../common/clock.js';
import { KeyedBatcher } from './batcher.js';
import { Counters } from './counters.js';
import type { AuditRecordStore } from './kube-clients.js';
import { storedBytes } from '../../api/stored-size.js';
import { excerpt } from '../../common/text/escape.js';
import { describeError, isAlreadyExists, isConflict, isNotFound } from '../../common/kube/errors.js';
import { isLost, lost, writeFailure, type WriteOutcome } from './outcome.js';
import {
  DEFAULT_LIMITS,
  fitCommands,
  isFull,
  mergeLosses,
  nameOf,
  newRecord,
  sameSession,
  sessionKey,
  splitDuplicates,
  statusOf,
  type AppendLimits,
  type SessionIdentity,
} from './sessions.js';

export type Loss = NonNullable<AuditRecordStatus['losses']>[number];

export const DEFAULT_FLUSH_MS = 200;
export const DEFAULT_MAX_BATCH = 100;
const DEFAULT_IDLE_MS = 15 * 60_000;
const DEFAULT_MAX_ATTEMPTS = 10;
/** The most of an API error message a log line quotes. */
const ERROR_EXCERPT = 300;

export interface RecordsWriterOptions {
  store: AuditRecordStore;
  /** The flush window (`--flush-ms`). */
  flushMs?: number;
  /** A batch this large is written at once. */
  maxBatch?: number;
  /** Per part: commands and encoded bytes (defaults MAX_COMMANDS_PER_RECORD and 1 MiB). */
  limits?: Partial<AppendLimits>;
  /** Forget a session's state after this long without a command (it is read back when needed). */
  idleMs?: number;
  /** Conflicts, or creates racing deletes, retried within one batch before it fails. */
  maxAttempts?: number;
  clock?: Clock;
  logger?: Logger;
}

type Item = { kind: 'command'; command: RecordedCommand } | { kind: 'loss'; loss: Loss };

interface Session {
  id: SessionIdentity;
  key: string;
  loaded: boolean;
  /** The plain name is taken by another session: this one's names carry a hash. */
  disambiguate: boolean;
  part: number;
  /** The stored current part; undefined until it is created. */
  current?: AuditRecord;
  /** Seqs in every part of the session. */
  seen: Set<number>;
  start?: string;
  lastUsed: number;
}

/** Where a loss (coverage gap, late attach) applies: the sessions of this container. */
export interface ContainerTarget {
  node: string;
  namespace: string;
  pod: string;
  container: string;
}

export type RecordsCounter =
  | 'creates'
  | 'statusWrites'
  | 'conflicts'
  | 'accepted'
  | 'duplicates'
  | 'failed'
  /** Commands (and losses) refused for good by the API server: see the module comment. */
  | 'lost'
  | 'partsContinued'
  | 'nameTaken';

export class RecordsWriter {
  readonly counters = new Counters<RecordsCounter>();
  private readonly sessions = new Map<string, Session>();
  private readonly batcher: KeyedBatcher<Item, WriteOutcome>;
  private readonly store: AuditRecordStore;
  private readonly limits: AppendLimits;
  private readonly idleMs: number;
  private readonly maxAttempts: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private lastSweep = 0;

  constructor(options: RecordsWriterOptions) {
    this.store = options.store;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.clock = options.clock ?? realClock;
    this.log = options.logger ?? silentLogger();
    this.batcher = new KeyedBatcher<Item, WriteOutcome>({
      windowMs: options.flushMs ?? DEFAULT_FLUSH_MS,
      maxItems: options.maxBatch ?? DEFAULT_MAX_BATCH,
      clock: this.clock,
      flush: (key, items) => this.flush(key, items),
    });
  }

  /** Writes one command into its session's record; resolves once it is written (or known to be). */
  write(session: SessionIdentity, command: RecordedCommand): Promise<WriteOutcome> {
    this.sweep();
    const key = sessionKey(session);
    const s = this.sessions.get(key);
    if (s) s.lastUsed = this.clock.now();
    else
      this.sessions.set(key, {
        id: session,
        key,
        loaded: false,
        disambiguate: false,
        part: 1,
        seen: new Set(),
        lastUsed: this.clock.now(),
      });
    return this.batcher.add(key, { kind: 'command', command });
  }

  /**
   * Adds a loss to the records of the container's sessions this writer knows (its active sessions); resolves
   * with one outcome per session (none when there is no active session).
   */
  noteLoss(target: ContainerTarget, loss: Loss): Promise<WriteOutcome[]> {
    const keys = [...this.sessions.values()]
      .filter(
        (s) =>
          s.id.node === target.node &&
          s.id.namespace === target.namespace &&
          s.id.pod === target.pod &&
          s.id.container === target.container,
      )
      .map((s) => s.key);
    return Promise.all(keys.map((key) => this.batcher.add(key, { kind: 'loss', loss })));
  }

  /** Writes whatever is pending now (shutdown, loss of leadership). */
  async close(): Promise<void> {
    await this.batcher.flushAll();
  }

  private sweep(): void {
    const now = this.clock.now();
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [key, s] of this.sessions)
      if (now - s.lastUsed > this.idleMs && !this.batcher.has(key)) this.sessions.delete(key);
  }

  /** Sessions whose state is held in memory (for metrics and tests). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private async flush(key: string, items: Item[]): Promise<WriteOutcome[]> {
    const outcomes: (WriteOutcome | undefined)[] = items.map(() => undefined);
    const s = this.sessions.get(key);
    if (!s) return items.map(() => 'failed');
    s.lastUsed = this.clock.now();
    try {
      await this.writeBatch(s, items, outcomes);
    } catch (e) {
      const failure = writeFailure(e);
      const left = outcomes.filter((o) => o === undefined).length;
      if (failure.permanent) {
        // The target refuses (or a create did, which is the same for every command of the session).
        outcomes.forEach((o, i) => (outcomes[i] = o ?? lost(failure.reason)));
        this.logLoss(s, failure.reason, left, e);
      } else
        this.log.error('AuditRecord write failed', {
          [LogField.namespace]: s.id.namespace,
          [LogField.pod]: s.id.pod,
          [LogField.name]: nameOf(s.id, s.part, s.disambiguate),
          [LogField.error]: excerpt(describeError(e), ERROR_EXCERPT),
        });
    }
    const result = outcomes.map((o) => o ?? 'failed');
    for (const o of result) this.counters.inc(o === 'duplicate' ? 'duplicates' : isLost(o) ? 'lost' : o);
    return result;
  }

  /** A permanent loss, logged with the API server's reason (escaped and cut: it may quote what was sent). */
  private logLoss(s: Session, reason: string, count: number, error: unknown): void {
    this.log.error('AuditRecord not written: commands lost', {
      [LogField.namespace]: s.id.namespace,
      [LogField.pod]: s.id.pod,
      [LogField.name]: nameOf(s.id, s.part, s.disambiguate),
      [LogField.reason]: reason,
      [LogField.count]: count,
      [LogField.error]: excerpt(describeError(error), ERROR_EXCERPT),
    });
  }

  private async writeBatch(s: Session, items: Item[], outcomes: (WriteOutcome | undefined)[]): Promise<void> {
    const commands = items.flatMap((it, index) => (it.kind === 'command' ? [{ ...it.command, index }] : []));
    const losses = items.flatMap((it, index) => (it.kind === 'loss' ? [{ loss: it.loss, index }] : []));
    const firstTime = commands.reduce<string | undefined>(
      (t, c) => (t === undefined || Date.parse(c.time) < Date.parse(t) ? c.time : t),
      undefined,
    );
    if (!s.loaded) await this.prepare(s, firstTime);

    let todo = commands.sort((a, b) => a.seq - b.seq);
    let pendingLosses = losses;
    // At most this many commands in the next write: halved each time the content is refused.
    let cap = Infinity;
    // Rounds that wrote nothing (a conflict, a create racing a delete) are bounded; progress is not.
    let retries = 0;
    const retry = (): void => {
      if (++retries > this.maxAttempts) throw new Error(`gave up after ${retries - 1} retries`);
    };
    for (;;) {
      const split = splitDuplicates(todo, s.seen);
      for (const d of split.duplicates) outcomes[d.index] = 'duplicate';
      todo = split.fresh;
      if (todo.length === 0 && pendingLosses.length === 0) break;
      if (!s.current) {
        const first = todo[0];
        if (first === undefined) {
          // Losses for a session whose record does not exist (yet): nothing to add them to; the ledger has them.
          for (const l of pendingLosses) outcomes[l.index] = 'accepted';
          break;
        }
        if (!(await this.createPart(s, first.time))) retry();
        continue;
      }
      const record = s.current;
      const existing = record.status?.commands ?? [];
      if (todo.length > 0 && isFull(record, this.limits)) {
        if (!(await this.closePart(s, record))) retry();
        continue;
      }
      const fit = fitCommands(
        existing.length,
        storedBytes(record),
        todo.slice(0, cap).map(({ index: _index, ...c }) => c),
        this.limits,
      );
      const added = todo.slice(0, fit.added.length);
      const status = statusOf(
        [...existing, ...fit.added],
        mergeLosses(
          record.status?.losses ?? [],
          pendingLosses.map((l) => l.loss),
        ),
        fit.rest.length > 0 || record.status?.phase === 'Closed' ? 'Closed' : 'Active',
      );
      try {
        s.current = await this.store.replaceStatus({ ...record, status });
        this.counters.inc('statusWrites');
      } catch (e) {
        // A conflict: someone wrote in between. Not found: deleted meanwhile (by hand, by retention).
        if (isConflict(e) || isNotFound(e)) {
          this.counters.inc('conflicts');
          retry();
          await this.reread(s);
          continue;
        }
        const failure = writeFailure(e);
        if (!failure.permanent || failure.scope !== 'content') throw e;
        if (added.length > 1) {
          cap = Math.ceil(added.length / 2);
          continue;
        }
        const [one] = added;
        if (one && failure.reason === 'too-large' && existing.length > 0) {
          // Too large beside what the part holds: the part is full, the command goes to the next one.
          if (!(await this.closePart(s, record))) retry();
          continue;
        }
        // Refused alone: lost, and the rest of the batch goes on.
        if (one) {
          outcomes[one.index] = lost(failure.reason);
          todo = todo.slice(1);
          this.logLoss(s, failure.reason, 1, e);
        } else if (pendingLosses.length > 0) {
          for (const l of pendingLosses) outcomes[l.index] = lost(failure.reason);
          pendingLosses = [];
          this.logLoss(s, failure.reason, 0, e);
        } else throw e;
        cap = Infinity;
        continue;
      }
      for (const c of added) {
        s.seen.add(c.seq);
        outcomes[c.index] = 'accepted';
      }
      for (const l of pendingLosses) outcomes[l.index] = 'accepted';
      pendingLosses = [];
      todo = todo.slice(added.length);
      cap = Infinity;
      if (fit.rest.length > 0) this.nextPart(s);
    }
  }

  /** First batch of a session this writer has not seen: create part 1 straight away, or read what is there. */
  private async prepare(s: Session, firstTime: string | undefined): Promise<void> {
    if (firstTime !== undefined) {
      const created = await this.tryCreate(s, firstTime);
      if (created) {
        s.loaded = true;
        return;
      }
    }
    await this.load(s);
  }

  /** Walks the session's parts from 1: collects their seqs and finds the first part that is not full. */
  private async load(s: Session): Promise<void> {
    s.part = 1;
    s.seen = new Set();
    s.current = undefined;
    for (;;) {
      const name = nameOf(s.id, s.part, s.disambiguate);
      const stored = await this.store.get(s.id.namespace, name);
      if (!stored) break;
      if (!stored.ok || !sameSession(stored.record.spec, s.id)) {
        this.takenBy(s, name);
        continue;
      }
      if (s.part === 1) s.start = stored.record.spec.session.start;
      for (const c of stored.record.status?.commands ?? []) s.seen.add(c.seq);
      if (!isFull(stored.record, this.limits)) {
        s.current = stored.record;
        break;
      }
      s.part++;
    }
    s.loaded = true;
  }

  /** The plain name belongs to another session: this session starts over under disambiguated names. */
  private takenBy(s: Session, name: string): void {
    if (s.disambiguate) throw new Error(`AuditRecord ${s.id.namespace}/${name} belongs to another session`);
    this.counters.inc('nameTaken');
    this.log.warn('AuditRecord name taken by another session; using a hashed name', {
      [LogField.namespace]: s.id.namespace,
      [LogField.name]: name,
    });
    s.disambiguate = true;
    s.part = 1;
    s.seen = new Set();
    s.current = undefined;
  }

  /** Creates the current part; true when created, false when it exists already (then it is read). */
  private async tryCreate(s: Session, time: string): Promise<boolean> {
    const name = nameOf(s.id, s.part, s.disambiguate);
    const start = s.start ?? time;
    try {
      s.current = await this.store.create(newRecord(s.id, name, s.part, start));
      this.counters.inc('creates');
      if (s.part === 1) s.start = start;
      return true;
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
      return false;
    }
  }

  /**
   * Creates the current part, or adopts it when it exists already (another replica, an earlier delivery).
   * False when nothing came of it this round (deleted again; the name taken by another session).
   */
  private async createPart(s: Session, time: string): Promise<boolean> {
    if (await this.tryCreate(s, time)) return true;
    const name = nameOf(s.id, s.part, s.disambiguate);
    const stored = await this.store.get(s.id.namespace, name);
    if (!stored) return false;
    if (!stored.ok || !sameSession(stored.record.spec, s.id)) {
      if (s.part !== 1) throw new Error(`AuditRecord ${s.id.namespace}/${name} belongs to another session`);
      this.takenBy(s, name);
      return false;
    }
    if (s.part === 1) s.start = stored.record.spec.session.start;
    for (const c of stored.record.status?.commands ?? []) s.seen.add(c.seq);
    s.current = stored.record;
    return true;
  }

  /** A full part not marked yet is marked Closed, and the session moves on; false after a conflict. */
  private async closePart(s: Session, record: AuditRecord): Promise<boolean> {
    if (record.status?.phase !== 'Closed') {
      const status = statusOf(record.status?.commands ?? [], record.status?.losses ?? [], 'Closed');
      try {
        await this.store.replaceStatus({ ...record, status });
        this.counters.inc('statusWrites');
      } catch (e) {
        if (!isConflict(e) && !isNotFound(e)) throw e;
        this.counters.inc('conflicts');
        await this.reread(s);
        return false;
      }
    }
    this.nextPart(s);
    return true;
  }

  private nextPart(s: Session): void {
    s.part++;
    s.current = undefined;
    this.counters.inc('partsContinued');
  }

  /** After a conflict: the current part as it is now, its seqs added to what the session has seen. */
  private async reread(s: Session): Promise<void> {
    const name = nameOf(s.id, s.part, s.disambiguate);
    const stored = await this.store.get(s.id.namespace, name);
    if (!stored || !stored.ok || !sameSession(stored.record.spec, s.id)) {
      // Deleted or replaced under us: start from what the API server has.
      await this.load(s);
      return;
    }
    for (const c of stored.record.status?.commands ?? []) s.seen.add(c.seq);
    s.current = stored.record;
  }
}
