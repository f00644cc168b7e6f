import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentRecord, LossRecord } from '../../api/records/v1.js';
import { silentLogger } from '../../common/logging.js';
import { StampingSink } from '../records/sink.js';
import { type Batch, LOSS_RESERVE, RecordQueue, type QueueOptions, queueSink, segmentName } from './queue.js';

let dir: string;

beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'queue-test-')), 'queue');
});
afterEach(async () => {
  await rm(join(dir, '..'), { recursive: true, force: true });
});

function open(options: Partial<QueueOptions> = {}): Promise<RecordQueue> {
  return RecordQueue.open({ dir, logger: silentLogger(), syncDelayMs: 1, ...options });
}

/** A stamping sink writing into `queue`, and a way to write n records of about `size` bytes each. */
function writer(queue: RecordQueue, boot = 'boot-1') {
  const sink = new StampingSink('node-a', (r) => void queue.append(r), boot);
  return {
    sink,
    write(n: number, size = 100): void {
      for (let i = 0; i < n; i++)
        sink.write({
          kind: 'coverage',
          time: '2026-01-01T00:00:00.000Z',
          containerId: 'c1',
          status: 'gap',
          reason: 'x'.repeat(size),
        });
    },
  };
}

/** Everything the queue holds, batch by batch, acknowledging each. */
async function drain(queue: RecordQueue, maxRecords = 1000, maxBytes = 1 << 30): Promise<Batch[]> {
  const batches: Batch[] = [];
  for (let b = await queue.peek(maxRecords, maxBytes); b; b = await queue.peek(maxRecords, maxBytes)) {
    batches.push(b);
    await queue.ack(b);
  }
  return batches;
}

const seqs = (batches: Batch[]) => batches.flatMap((b) => b.records.map((r) => r.seq));

describe('the record queue', () => {
  it('hands out written records in order, and forgets them once acknowledged', async () => {
    const queue = await open();
    writer(queue).write(5);
    expect(queue.hasRecords).toBe(false); // not written yet
    await queue.flush();
    expect(queue.hasRecords).toBe(true);
    const batch = (await queue.peek(1000, 1 << 20))!;
    expect(batch).toMatchObject({ node: 'node-a', boot: 'boot-1' });
    expect(batch.records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    // Peeking again before an acknowledgement gives the same records.
    expect((await queue.peek(1000, 1 << 20))!.records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    await queue.ack(batch);
    expect(await queue.peek(1000, 1 << 20)).toBeUndefined();
    expect(queue.hasRecords).toBe(false);
    expect(queue.stats).toMatchObject({ appended: 5, acknowledged: 5, dropped: 0, invalid: 0 });
    await queue.close();
  });

  it('puts records back at its end, on disk and kept across a restart, before their batch is acknowledged', async () => {
    let queue = await open();
    writer(queue).write(5);
    await queue.flush();
    const batch = (await queue.peek(1000, 1 << 20))!;
    writer(queue).sink.write({ kind: 'loss', time: '2026-01-01T00:00:00.000Z', reason: 'agent-down' });
    // The operator could not write seq 2 and 4 for now.
    await expect(queue.requeue(batch.records.filter((r) => r.seq === 2 || r.seq === 4))).resolves.toBe(true);
    await queue.ack(batch);
    await queue.close();
    queue = await open();
    const left = (await drain(queue)).flatMap((b) => b.records.map((r) => `${r.kind} ${r.seq}`));
    // A record appended meanwhile (its own seq 1) comes first: the requeued ones go to the end.
    expect(left).toEqual(['loss 1', 'coverage 2', 'coverage 4']);
    expect(queue.stats.dropped).toBe(0);
    await queue.close();
  });

  it('bounds a batch by records and bytes, but never leaves a record behind for its size', async () => {
    const queue = await open();
    writer(queue).write(10, 200);
    await queue.flush();
    const byCount = (await queue.peek(3, 1 << 20))!;
    expect(byCount.records.map((r) => r.seq)).toEqual([1, 2, 3]);
    const lineBytes = byCount.bytes / 3;
    const byBytes = (await queue.peek(1000, lineBytes * 4 + 10))!;
    expect(byBytes.records).toHaveLength(4);
    expect(byBytes.bytes).toBeLessThanOrEqual(lineBytes * 4 + 10);
    expect(seqs(await drain(queue, 4, 1 << 20))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await queue.close();
  });

  it('keeps each batch to one boot, older boots first', async () => {
    const first = await open();
    writer(first, 'boot-old').write(3);
    await first.close();
    const queue = await open();
    writer(queue, 'boot-new').write(2);
    await queue.flush();
    const batches = await drain(queue);
    expect(batches.map((b) => [b.boot, b.records.map((r) => r.seq)])).toEqual([
      ['boot-old', [1, 2, 3]],
      ['boot-new', [1, 2]],
    ]);
    for (const b of batches) for (const r of b.records) expect(r.boot).toBe(b.boot);
    await queue.close();
  });

  it('sends again after a restart what was not acknowledged, and only that', async () => {
    const first = await open();
    writer(first).write(6);
    await first.flush();
    await first.ack((await first.peek(2, 1 << 20))!); // 1, 2 acknowledged
    await first.peek(2, 1 << 20); // 3, 4 sent, never acknowledged
    await first.close();

    const second = await open();
    expect(seqs(await drain(second))).toEqual([3, 4, 5, 6]);
    await second.close();
    const third = await open();
    expect(await third.peek(1000, 1 << 20)).toBeUndefined();
    await third.close();
  });

  it('ignores a torn last line after a crash, and goes on appending', async () => {
    const first = await open();
    writer(first).write(3);
    await first.flush();
    // The agent died in a write: half a record at the end of the segment, no newline.
    const [segment] = (await readdir(dir)).filter((n) => n.endsWith('.jsonl'));
    const path = join(dir, segment!);
    const sizeBefore = (await stat(path)).size;
    await appendFile(path, '{"kind":"command","seq":4,"boot":"boot-1","ti');

    const second = await open();
    expect((await stat(path)).size).toBe(sizeBefore); // cut back to the last full line
    writer(second, 'boot-2').write(2);
    await second.flush();
    const batches = await drain(second);
    expect(batches.map((b) => [b.boot, b.records.map((r) => r.seq)])).toEqual([
      ['boot-1', [1, 2, 3]],
      ['boot-2', [1, 2]],
    ]);
    await second.close();
  });

  it('skips and counts lines that are not valid records, never fatal', async () => {
    const first = await open();
    writer(first).write(2);
    await first.close();
    const [segment] = (await readdir(dir)).filter((n) => n.endsWith('.jsonl'));
    await appendFile(join(dir, segment!), 'not json at all\n{"kind":"command","seq":3}\n');
    const second = await open();
    writer(second, 'boot-2').write(1);
    await second.flush();
    await second.peek(1000, 1 << 20); // peeked twice before its acknowledgement: counted once
    const batches = await drain(second);
    expect(batches.map((b) => [b.boot, b.records.map((r) => r.seq)])).toEqual([
      ['boot-1', [1, 2]],
      ['boot-2', [1]],
    ]);
    expect(second.stats.invalid).toBe(2);
    expect(second.errors.list().length).toBeGreaterThan(0);
    await second.close();
  });

  it('skips a segment of nothing but garbage without sending anything', async () => {
    const queue = await open();
    writer(queue).write(1);
    await queue.flush();
    await queue.ack((await queue.peek(10, 1 << 20))!);
    await queue.close();
    await writeFile(join(dir, segmentName(900)), 'garbage\nmore garbage\n');
    const again = await open();
    expect(await again.peek(10, 1 << 20)).toBeUndefined();
    expect(again.stats.invalid).toBe(2);
    expect(again.hasRecords).toBe(false);
    await again.close();
  });

  it('re-sends everything when the cursor is lost (the operator drops duplicates), never skips', async () => {
    const first = await open();
    writer(first).write(4);
    await first.flush();
    await first.ack((await first.peek(2, 1 << 20))!);
    await first.close();
    await rm(join(dir, 'cursor.json'));
    const second = await open();
    expect(seqs(await drain(second))).toEqual([1, 2, 3, 4]);
    await second.close();
  });

  it('rolls segments and deletes those acknowledged', async () => {
    const queue = await open({ segmentBytes: 1024 });
    const w = writer(queue);
    for (let i = 0; i < 10; i++) {
      w.write(3, 100);
      await queue.flush();
    }
    const segments = async () => (await readdir(dir)).filter((n) => n.endsWith('.jsonl'));
    expect((await segments()).length).toBeGreaterThan(3);
    const batches = await drain(queue, 5);
    expect(seqs(batches)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect((await segments()).length).toBeLessThanOrEqual(1);
    expect(queue.usedBytes).toBeLessThan(1024);
    await queue.close();
  });

  it('deletes at open a segment whose acknowledgement was cut short by a crash', async () => {
    const queue = await open({ segmentBytes: 512 });
    const w = writer(queue);
    w.write(3, 200);
    await queue.flush();
    w.write(3, 200);
    await queue.flush();
    await queue.close();
    // The cursor moved past the first segment, but the agent died before deleting it.
    const names = (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort();
    expect(names.length).toBeGreaterThan(1);
    const second = Number(names[1]!.slice(0, 16));
    await writeFile(join(dir, 'cursor.json'), JSON.stringify({ segment: second, offset: 0 }));
    const again = await open();
    await expect(readdir(dir)).resolves.not.toContain(names[0]);
    const records = seqs(await drain(again));
    expect(records[0]).toBeGreaterThan(1);
    expect(records).toEqual([...records].sort((a, b) => a - b));
    await again.close();
  });

  it('delivers everything once, in order, while appends, writes and acknowledgements interleave', async () => {
    const queue = await open({ segmentBytes: 4096, syncDelayMs: 0 });
    const w = writer(queue);
    const got: number[] = [];
    let writing = true;
    const consumer = (async () => {
      while (writing || queue.hasRecords || queue.pendingBytes > 0) {
        await queue.waitForRecords(AbortSignal.timeout(50));
        const batch = await queue.peek(7, 1 << 20);
        if (!batch) continue;
        got.push(...batch.records.map((r) => r.seq));
        await queue.ack(batch);
      }
    })();
    for (let i = 0; i < 60; i++) {
      w.write(1 + (i % 5), 50 + ((i * 37) % 400));
      if (i % 3 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await queue.flush();
    writing = false;
    await consumer;
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(got.length).toBe(queue.stats.appended);
    expect((await readdir(dir)).filter((n) => n.endsWith('.jsonl')).length).toBeLessThanOrEqual(1);
    await queue.close();
  });

  it('wakes a waiter once records are written', async () => {
    const queue = await open({ syncDelayMs: 5 });
    let woke = false;
    const waiting = queue.waitForRecords().then(() => (woke = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    writer(queue).write(1);
    await waiting;
    expect(queue.hasRecords).toBe(true);
    await queue.close();
  });
});

describe('a full queue', () => {
  const maxBytes = 16 * 1024;

  it('drops what does not fit, counts it, and reports one loss record once there is room', async () => {
    const queue = await open({ maxBytes, segmentBytes: 2048 });
    const sink = queueSink('node-a', queue, 'boot-1');
    const write = (n: number) => {
      for (let i = 0; i < n; i++)
        sink.write({
          kind: 'coverage',
          time: '2026-01-01T00:00:00.000Z',
          containerId: 'c1',
          status: 'gap',
          reason: 'y'.repeat(300),
        });
    };
    write(100); // about 40 KiB: more than fits
    await queue.flush();
    expect(queue.stats.dropped).toBeGreaterThan(0);
    expect(queue.usedBytes).toBeLessThanOrEqual(maxBytes - LOSS_RESERVE);
    const dropped = queue.stats.dropped;
    expect(queue.stats.appended + dropped).toBe(100);
    expect(queue.errors.list().at(-1)!.message).toMatch(/queue is full/);
    expect(JSON.parse(await readFile(join(dir, 'dropped.json'), 'utf8'))).toMatchObject({
      count: expect.any(Number) as number,
    });

    const all = await drain(queue, 7);
    await queue.flush();
    const rest = await drain(queue);
    const records: AgentRecord[] = [...all, ...rest].flatMap((b) => b.records);
    const losses = records.filter((r): r is LossRecord => r.kind === 'loss');
    expect(losses).toHaveLength(1);
    expect(losses[0]).toMatchObject({ reason: 'queue-full', count: dropped, node: 'node-a', boot: 'boot-1' });
    expect(Date.parse(losses[0]!.until!)).toBeGreaterThanOrEqual(Date.parse(losses[0]!.since!));
    // The seqs of the dropped records are the gap before the loss record.
    const kept = records.filter((r) => r.kind !== 'loss').map((r) => r.seq);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => i + 1));
    expect(losses[0]!.seq).toBe(101);
    await queue.close();
    await expect(stat(join(dir, 'dropped.json'))).rejects.toThrow();
  });

  it('keeps a drop count across a restart and reports it then', async () => {
    const queue = await open({ maxBytes, segmentBytes: 2048 });
    writer(queue, 'boot-1').write(100, 300);
    const dropped = queue.stats.dropped;
    expect(dropped).toBeGreaterThan(0);
    await queue.close();

    const again = await open({ maxBytes, segmentBytes: 2048 });
    const sink = queueSink('node-a', again, 'boot-2');
    const before = await drain(again, 10); // room again: the loss record is appended
    sink.write({ kind: 'loss', time: '2026-01-01T00:00:00.000Z', reason: 'agent-down' });
    await again.flush();
    const records = [...before, ...(await drain(again))].flatMap((b) => b.records);
    expect(records.filter((r) => r.kind === 'loss' && r.reason === 'queue-full')).toEqual([
      expect.objectContaining({ count: dropped, boot: 'boot-2' }),
    ]);
    await again.close();
  });
});
