/**
 * The cluster agent's durable record queue: every record goes to disk before it is sent, and leaves the disk
 * only once the operator answered 200 for a report that held it. An agent that restarts, or an operator that
 * is away for a while, loses nothing; a disk that fills up loses records, but counted and reported.
 *
 * On disk, in the queue directory (0700, files 0600):
 *
 *   0000000000000007.jsonl   segments: one stamped record (api/records/v1.ts) per line, JSON, append-only;
 *                            named by an increasing index; a new one per agent run and whenever one passes
 *                            `segmentBytes`; a segment is deleted once every record in it is acknowledged
 *   cursor.json              {"segment": 7, "offset": 81920}: the first byte not acknowledged yet (written
 *                            after each acknowledgement; if lost, records are sent again, and the operator
 *                            ignores a (node, boot, seq) it already has)
 *   dropped.json             {"count", "since", "until"}: records dropped while the queue was full and not yet
 *                            reported as a loss (kept across a restart, so that loss is never silent)
 *
 * Appends are synchronous for the caller (the record sink) and buffered: the buffer is written and
 * fdatasync'd together after `syncDelayMs` (or at once past FLUSH_BYTES), and only written records are handed
 * to the reporter. A write that fails is undone (the segment is cut back to its last good length) and retried.
 *
 * Bounds: the segments on disk plus the buffer stay under `maxBytes`. When a record does not fit it is dropped
 * and counted, and as soon as there is room again (an acknowledgement deleted a segment) a `loss` record
 * (reason `queue-full`, with the count and the window) is appended through the loss handler, which stamps
 * it like any record. LOSS_RESERVE bytes are kept free for that record.
 *
 * Crashes: a segment whose last line is torn (the agent died in a write) is cut back to its last full line
 * when the queue opens; a line that still does not parse, or is not a valid record, is skipped and counted
 * (`invalid`), never sent and never fatal. Records come out in the order they went in, so after a restart the
 * records of the previous run go first, in their seq order. A batch holds records of one (node, boot) only:
 * a report carries the boot of its records. The one exception to the order: records the operator asks to
 * have again later (a transient failure of their own, `requeue`) go back to the end, behind newer ones; the
 * operator orders what it stores by seq, so only the delivery order changes.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseJson } from '../../api/parse-json.js';
import { type AgentRecord, AgentRecord as AgentRecordSchema, type LossRecord } from '../../api/records/v1.js';
import { type Logger, LogField } from '../../common/logging.js';
import { StampingSink } from '../records/sink.js';
import { RecentErrors } from '../core/recent-errors.js';

export const DEFAULT_QUEUE_MAX_BYTES = 256 * 1024 * 1024;
/** Kept free for the `queue-full` loss record (a loss record is well under 3 KiB). */
export const LOSS_RESERVE = 4096;
/** A buffer this large is written at once rather than after syncDelayMs. */
const FLUSH_BYTES = 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
const SEGMENT_NAME = /^(\d{16})\.jsonl$/;
const CURSOR_FILE = 'cursor.json';
const DROPPED_FILE = 'dropped.json';

const Position = z.strictObject({
  segment: z.number().int().min(0),
  offset: z.number().int().min(0),
});
export type Position = z.infer<typeof Position>;

const Dropped = z.strictObject({
  count: z.number().int().min(1),
  since: z.iso.datetime(),
  until: z.iso.datetime(),
});

export interface QueueLoss {
  count: number;
  since: Date;
  until: Date;
}

export interface QueueOptions {
  dir: string;
  logger: Logger;
  /** Bound of the segments on disk plus the buffer. */
  maxBytes?: number;
  /** A segment passing this size is closed and a new one started (default maxBytes / 8, 4 KiB to 16 MiB). */
  segmentBytes?: number;
  /** How long appends are buffered before they are written and synced together. */
  syncDelayMs?: number;
  /** Delay before a failed write is retried. */
  retryMs?: number;
  now?: () => Date;
}

export interface Batch {
  node: string;
  boot: string;
  records: AgentRecord[];
  /** Bytes of the records' lines. */
  bytes: number;
  start: Position;
  end: Position;
}

export interface QueueStats {
  /** Records accepted by append. */
  appended: number;
  /** Records dropped because the queue was full (since it opened). */
  dropped: number;
  /** Lines skipped because they were not valid records (torn or corrupt). */
  invalid: number;
  /** Records acknowledged and gone. */
  acknowledged: number;
  /** Records put back at the end of the queue to be sent again (requeue). */
  requeued: number;
}

interface Segment {
  index: number;
  /** Bytes written and synced. */
  size: number;
}

export function segmentName(index: number): string {
  return `${String(index).padStart(16, '0')}.jsonl`;
}

/** The `loss` record for records the queue dropped. */
export function queueLossRecord(
  loss: QueueLoss,
  where: { dir: string; maxBytes: number },
): Omit<LossRecord, 'seq' | 'boot' | 'node'> {
  return {
    kind: 'loss',
    time: loss.until.toISOString(),
    reason: 'queue-full',
    count: loss.count,
    since: loss.since.toISOString(),
    until: loss.until.toISOString(),
    detail:
      `${loss.count} record(s) dropped: the agent's queue (${where.dir}, ${where.maxBytes} bytes) was full`.slice(
        0,
        2048,
      ),
  };
}

export class RecordQueue {
  readonly stats: QueueStats = { appended: 0, dropped: 0, invalid: 0, acknowledged: 0, requeued: 0 };
  readonly errors = new RecentErrors(4);
  readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly now: () => Date;
  /** Sorted by index; the last one is the one appended to, once it is open. */
  private segments: Segment[];
  private head: Position;
  private nextIndex: number;
  private tail: { segment: Segment; file: FileHandle } | undefined;
  private buffer: string[] = [];
  private bufferBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Cursor and drop-state writes, one at a time, in order. */
  private meta: Promise<void> = Promise.resolve();
  private pendingLoss: QueueLoss | undefined;
  private lastDropPersist = 0;
  private lossHandler: ((loss: QueueLoss) => void) | undefined;
  private reportingLoss = false;
  private waiters: (() => void)[] = [];
  private closed = false;
  /** Invalid lines counted and not acknowledged yet (they all lie in the batch peeked last). */
  private readonly invalidSeen = new Set<string>();

  private constructor(
    private readonly options: QueueOptions,
    state: { segments: Segment[]; head: Position; nextIndex: number; pendingLoss: QueueLoss | undefined },
  ) {
    this.maxBytes = options.maxBytes ?? DEFAULT_QUEUE_MAX_BYTES;
    this.segmentBytes =
      options.segmentBytes ?? Math.min(16 * 1024 * 1024, Math.max(4096, Math.floor(this.maxBytes / 8)));
    this.now = options.now ?? (() => new Date());
    this.segments = state.segments;
    this.head = state.head;
    this.nextIndex = state.nextIndex;
    this.pendingLoss = state.pendingLoss;
  }

  /** Opens (or creates) the queue in `dir`: repairs torn tails, finds the first unacknowledged record. */
  static async open(options: QueueOptions): Promise<RecordQueue> {
    const { dir, logger } = options;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const cursor = await readState(join(dir, CURSOR_FILE), Position);
    let segments: Segment[] = [];
    for (const name of await readdir(dir)) {
      const match = SEGMENT_NAME.exec(name);
      if (!match) continue;
      const index = Number(match[1]);
      if (cursor && index < cursor.segment) {
        // Acknowledged entirely: its deletion was interrupted.
        await rm(join(dir, name), { force: true });
        continue;
      }
      segments.push({ index, size: (await stat(join(dir, name))).size });
    }
    segments.sort((a, b) => a.index - b.index);
    for (const segment of segments) {
      const cut = await repairTail(join(dir, segmentName(segment.index)), segment.size);
      if (cut < segment.size) {
        logger.warn('Cut a torn record off the queue', {
          [LogField.file]: join(dir, segmentName(segment.index)),
          [LogField.count]: segment.size - cut,
        });
        segment.size = cut;
      }
    }
    for (const empty of segments.filter((s) => s.size === 0))
      await rm(join(dir, segmentName(empty.index)), { force: true });
    segments = segments.filter((s) => s.size > 0);
    const last = segments.at(-1)?.index ?? -1;
    const nextIndex = Math.max(last + 1, cursor?.segment ?? 0);
    const first = segments[0];
    let head: Position;
    if (cursor && first?.index === cursor.segment)
      head = { segment: cursor.segment, offset: Math.min(cursor.offset, first.size) };
    else if (first) head = { segment: first.index, offset: 0 };
    else head = { segment: nextIndex, offset: 0 };
    const dropped = await readState(join(dir, DROPPED_FILE), Dropped);
    const pendingLoss = dropped
      ? { count: dropped.count, since: new Date(dropped.since), until: new Date(dropped.until) }
      : undefined;
    const queue = new RecordQueue(options, { segments, head, nextIndex, pendingLoss });
    if (queue.pendingBytes > 0 || pendingLoss)
      logger.info('Queue holds records not yet acknowledged', {
        [LogField.file]: dir,
        [LogField.detail]: {
          bytes: queue.pendingBytes,
          segments: segments.length,
          droppedBefore: dropped?.count,
        },
      });
    return queue;
  }

  /** Who turns a drop count into a stamped `loss` record (it must append it; see queueLossRecord). */
  onLoss(handler: (loss: QueueLoss) => void): void {
    this.lossHandler = handler;
    this.reportLoss();
  }

  get dir(): string {
    return this.options.dir;
  }

  /** Bytes on disk and in the buffer: what maxBytes bounds. */
  get usedBytes(): number {
    return this.segments.reduce((sum, s) => sum + s.size, 0) + this.bufferBytes;
  }

  /** Bytes of records not acknowledged yet, written or not. */
  get pendingBytes(): number {
    let sum = this.bufferBytes;
    for (const s of this.segments)
      if (s.index > this.head.segment) sum += s.size;
      else if (s.index === this.head.segment) sum += s.size - this.head.offset;
    return sum;
  }

  /** Adds a record; false when it was dropped (the queue is full, or closed). Never throws. */
  append(record: AgentRecord): boolean {
    return this.appendLine(record) !== undefined;
  }

  /** append(), giving the line buffered (undefined when dropped). */
  private appendLine(record: AgentRecord): string | undefined {
    const line = `${JSON.stringify(record)}\n`;
    const bytes = Buffer.byteLength(line);
    const ownLoss = record.kind === 'loss' && record.reason === 'queue-full';
    const limit = ownLoss ? this.maxBytes : this.maxBytes - LOSS_RESERVE;
    if (this.closed || this.usedBytes + bytes > limit) {
      this.drop();
      return undefined;
    }
    this.buffer.push(line);
    this.bufferBytes += bytes;
    this.stats.appended++;
    if (this.bufferBytes >= FLUSH_BYTES) void this.flush();
    else this.flushTimer ??= setTimeout(() => void this.flush(), this.options.syncDelayMs ?? 20);
    this.reportLoss();
    return line;
  }

  /**
   * Puts records the operator could not write yet (a 207 answer's `retry`) back, at the end of the queue, so
   * they do not hold back the records behind them; resolves once they are on disk: true, after which the
   * batch that held them may be acknowledged. A record the full queue drops is counted like any drop (and
   * reported as a `queue-full` loss). False when the write failed: acknowledge nothing, send the batch again.
   */
  async requeue(records: readonly AgentRecord[]): Promise<boolean> {
    const lines = records.flatMap((r) => this.appendLine(r) ?? []);
    this.stats.requeued += records.length;
    await this.flush();
    const waiting = new Set(this.buffer);
    return !lines.some((line) => waiting.has(line));
  }

  private drop(): void {
    const now = this.now();
    this.stats.dropped++;
    if (!this.pendingLoss) {
      this.pendingLoss = { count: 0, since: now, until: now };
      const message = `the queue is full (${this.maxBytes} bytes): records are dropped until the operator takes some`;
      this.errors.add(message);
      this.options.logger.error('Queue full', {
        [LogField.file]: this.options.dir,
        [LogField.reason]: message,
      });
    }
    this.pendingLoss.count++;
    this.pendingLoss.until = now;
    if (now.getTime() - this.lastDropPersist >= 1000) {
      this.lastDropPersist = now.getTime();
      this.persistDrops();
    }
  }

  /** Hands the drop count to the loss handler once the loss record fits. */
  private reportLoss(): void {
    const loss = this.pendingLoss;
    if (!loss || !this.lossHandler || this.reportingLoss || this.closed) return;
    if (this.usedBytes + LOSS_RESERVE > this.maxBytes) return;
    this.pendingLoss = undefined;
    this.reportingLoss = true;
    try {
      this.lossHandler(loss);
    } finally {
      this.reportingLoss = false;
    }
    // The loss record is in the buffer now: once it is on disk, the drop state is obsolete.
    void this.flush().then(() => {
      if (!this.pendingLoss) this.persistDrops();
    });
  }

  private persistDrops(): void {
    const file = join(this.options.dir, DROPPED_FILE);
    this.meta = this.meta.then(async () => {
      const loss = this.pendingLoss;
      try {
        if (!loss) await rm(file, { force: true });
        else
          await writeAtomically(
            file,
            JSON.stringify({
              count: loss.count,
              since: loss.since.toISOString(),
              until: loss.until.toISOString(),
            }),
          );
      } catch (error) {
        this.options.logger.warn('Cannot keep the queue drop count', {
          [LogField.file]: file,
          [LogField.error]: (error as Error).message,
        });
      }
    });
  }

  /** Writes and syncs the buffer; resolves once what was appended before the call is on disk (or failed). */
  flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.flushing = this.flushing
      .then(() => this.write())
      .catch((error: unknown) => {
        this.options.logger.error('Queue write failed', { [LogField.error]: String(error) });
      });
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.buffer.length === 0) return;
    const lines = this.buffer;
    const data = Buffer.from(lines.join(''));
    this.buffer = [];
    this.bufferBytes -= data.length;
    let tail;
    try {
      tail = await this.openTail();
      await tail.file.write(data, 0, data.length, tail.segment.size);
      await tail.file.datasync();
    } catch (error) {
      // Undo a partial write, so the next one does not glue onto half a line; keep the records and retry.
      if (tail) await tail.file.truncate(tail.segment.size).catch(() => undefined);
      this.buffer = [...lines, ...this.buffer];
      this.bufferBytes += data.length;
      const message = `cannot write the queue: ${(error as Error).message}`;
      this.errors.add(message);
      this.options.logger.error('Queue write failed', {
        [LogField.file]: this.options.dir,
        [LogField.error]: (error as Error).message,
      });
      if (!this.closed) this.flushTimer ??= setTimeout(() => void this.flush(), this.options.retryMs ?? 1000);
      return;
    }
    tail.segment.size += data.length;
    if (tail.segment.size >= this.segmentBytes) await this.closeTail();
    this.wakeWaiters();
  }

  private async openTail(): Promise<{ segment: Segment; file: FileHandle }> {
    if (this.tail) return this.tail;
    const segment = { index: this.nextIndex++, size: 0 };
    const file = await open(join(this.options.dir, segmentName(segment.index)), 'w', 0o600);
    await syncDir(this.options.dir);
    this.segments.push(segment);
    this.tail = { segment, file };
    return this.tail;
  }

  private async closeTail(): Promise<void> {
    const tail = this.tail;
    this.tail = undefined;
    await tail?.file.close().catch(() => undefined);
  }

  /** Whether written records wait to be sent. */
  get hasRecords(): boolean {
    return this.segments.some((s) =>
      s.index === this.head.segment ? s.size > this.head.offset : s.index > this.head.segment && s.size > 0,
    );
  }

  /** Resolves once written records wait to be sent (at once if some do), or the queue closed, or `signal` fired. */
  waitForRecords(signal?: AbortSignal): Promise<void> {
    if (this.hasRecords || this.closed || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener('abort', done);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /**
   * The oldest records not acknowledged, written ones only: at most `maxRecords`, at most `maxBytes` of lines
   * (but always one, if one is there), of one node and boot. Invalid lines are skipped and counted. Undefined
   * when nothing waits. Peeking again before an acknowledgement gives the same records (and maybe more).
   */
  async peek(maxRecords: number, maxBytes: number): Promise<Batch | undefined> {
    const start = { ...this.head };
    const pos = { ...this.head };
    const records: AgentRecord[] = [];
    let bytes = 0;
    let key: { node: string; boot: string } | undefined;
    const batch = (): Batch | undefined =>
      key && records.length > 0 ? { ...key, records, bytes, start, end: { ...pos } } : undefined;
    for (const segment of this.segments) {
      if (segment.index < pos.segment) continue;
      if (segment.index > pos.segment) {
        pos.segment = segment.index;
        pos.offset = 0;
      }
      const file = await open(join(this.options.dir, segmentName(segment.index)), 'r');
      try {
        let chunk = READ_CHUNK;
        while (pos.offset < segment.size) {
          const length = Math.min(chunk, segment.size - pos.offset);
          const data = Buffer.alloc(length);
          const { bytesRead } = await file.read(data, 0, length, pos.offset);
          const text = data.subarray(0, bytesRead);
          let at = 0;
          for (let nl = text.indexOf(10); nl !== -1; nl = text.indexOf(10, at)) {
            const lineBytes = nl + 1 - at;
            const parsed = parseJson(AgentRecordSchema, text.subarray(at, nl).toString('utf8'));
            if (!parsed.ok || lineBytes > maxBytes) {
              this.invalidLine(segment.index, pos.offset, parsed.ok ? 'larger than a report' : parsed.detail);
            } else {
              const record = parsed.value;
              if (key && (record.node !== key.node || record.boot !== key.boot)) return batch();
              if (records.length >= maxRecords || (records.length > 0 && bytes + lineBytes > maxBytes))
                return batch();
              key ??= { node: record.node, boot: record.boot };
              records.push(record);
              bytes += lineBytes;
            }
            at = nl + 1;
            pos.offset += lineBytes;
          }
          if (at === 0) {
            if (length < segment.size - pos.offset && bytesRead === length) {
              chunk *= 2; // one line longer than the chunk: read more of it
              continue;
            }
            // The written part ends inside a line: torn, and not repaired at open. Skip it.
            this.invalidLine(segment.index, pos.offset, 'a torn line');
            pos.offset = segment.size;
          }
        }
      } finally {
        await file.close();
      }
    }
    const found = batch();
    if (!found && (pos.segment !== start.segment || pos.offset !== start.offset)) {
      // Only invalid lines: nothing to send, but they are done with.
      await this.ack({ start, end: { ...pos } });
    }
    return found;
  }

  private invalidLine(segment: number, offset: number, reason: string): void {
    // A batch peeked again (not acknowledged yet) meets its invalid lines again: count each once.
    const key = `${segment}:${offset}`;
    if (this.invalidSeen.has(key)) return;
    this.invalidSeen.add(key);
    this.stats.invalid++;
    this.errors.add(`a queued record could not be read and was skipped: ${reason}`.slice(0, 1024));
    this.options.logger.error('Skipped an unreadable queued record', {
      [LogField.file]: join(this.options.dir, segmentName(segment)),
      [LogField.detail]: { offset },
      [LogField.reason]: reason.slice(0, 1024),
    });
  }

  /**
   * The operator has these records (or refused them for good): forgets them. Segments wholly acknowledged
   * are deleted (the open one too, once acknowledged to its end and a quarter full, or when records wait
   * to be reported as lost); a batch that does not start at the head (acknowledged already) is ignored.
   */
  ack(batch: Pick<Batch, 'start' | 'end'> & { records?: readonly unknown[] }): Promise<void> {
    // Between writes: the segments and the open one change only there.
    return this.tailOp(() => this.advance(batch));
  }

  private async advance(
    batch: Pick<Batch, 'start' | 'end'> & { records?: readonly unknown[] },
  ): Promise<void> {
    if (batch.start.segment !== this.head.segment || batch.start.offset !== this.head.offset) return;
    this.head = { ...batch.end };
    this.stats.acknowledged += batch.records?.length ?? 0;
    this.invalidSeen.clear();
    // A head at the end of a segment moves to the next one (past the open one too, when that is worth it).
    for (;;) {
      const segment = this.segments.find((s) => s.index === this.head.segment);
      if (segment && this.head.offset < segment.size) break; // records left in it
      const next = this.segments.find((s) => s.index > this.head.segment);
      if (segment && this.tail?.segment === segment) {
        // Acknowledged to its end but still open: a new file only once it is worth it (or room is short).
        if (segment.size < this.segmentBytes / 4 && !this.pendingLoss) break;
        await this.closeTail();
      }
      if (!segment && !next) break;
      this.head = next ? { segment: next.index, offset: 0 } : { segment: this.nextIndex, offset: 0 };
      if (!next) break;
    }
    // The cursor first: a crash before the deletions leaves segments the next open deletes, never a gap.
    await this.writeCursor();
    const gone = this.segments.filter((s) => s.index < this.head.segment);
    if (gone.length > 0) {
      this.segments = this.segments.filter((s) => s.index >= this.head.segment);
      for (const segment of gone)
        await rm(join(this.options.dir, segmentName(segment.index)), { force: true });
    }
    this.reportLoss();
  }

  /** Runs `op` between writes (writes and the tail's changes happen one at a time). */
  private tailOp<T>(op: () => Promise<T>): Promise<T> {
    const result = this.flushing.then(op);
    this.flushing = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private writeCursor(): Promise<void> {
    const head = { ...this.head };
    this.meta = this.meta.then(() =>
      writeAtomically(join(this.options.dir, CURSOR_FILE), JSON.stringify(head)).catch((error: unknown) => {
        this.options.logger.warn('Cannot write the queue cursor', { [LogField.error]: String(error) });
      }),
    );
    return this.meta;
  }

  /** Writes what is buffered, keeps the drop count, closes the files. Appends after this are dropped. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    clearTimeout(this.flushTimer);
    await this.closeTail();
    this.persistDrops();
    await this.meta;
    this.wakeWaiters();
  }
}

async function readState<S extends z.ZodType>(file: string, schema: S): Promise<z.output<S> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const parsed = parseJson(schema, text);
  return parsed.ok ? parsed.value : undefined;
}

async function writeAtomically(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Cuts a file after its last newline (a torn last line); returns the new size. */
async function repairTail(file: string, size: number): Promise<number> {
  if (size === 0) return 0;
  const handle = await open(file, 'r+');
  try {
    let end = size;
    while (end > 0) {
      const length = Math.min(64 * 1024, end);
      const data = Buffer.alloc(length);
      await handle.read(data, 0, length, end - length);
      const nl = data.lastIndexOf(10);
      if (nl !== -1) {
        const cut = end - length + nl + 1;
        if (cut < size) await handle.truncate(cut);
        return cut;
      }
      end -= length;
    }
    await handle.truncate(0);
    return 0;
  } finally {
    await handle.close();
  }
}

/**
 * The cluster agent's record sink: stamps each record (node, boot, seq) and appends it to the queue; records
 * the queue had to drop come back as one `queue-full` loss record, stamped by the same sink, once it fits.
 */
export function queueSink(node: string, queue: RecordQueue, boot?: string): StampingSink {
  const sink = new StampingSink(node, (record) => void queue.append(record), boot);
  queue.onLoss((loss) => sink.write(queueLossRecord(loss, { dir: queue.dir, maxBytes: queue.maxBytes })));
  return sink;
}
