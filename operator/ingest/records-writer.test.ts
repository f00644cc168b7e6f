import type { CommandRecord } from '../../api/records/v1.js';
import type { WriteOutcome } from './outcome.js';
import { RecordsWriter, type RecordsWriterOptions } from './records-writer.js';
import { recordedCommand, sessionOf } from './sessions.js';
import { apiError, command, exec, goJsonBytes, MemoryRecordStore, TEST_START } from './testdata/fakes.js';
import { FakeClock } from '../../test-support/fake-clock.js';

function setup(options: Partial<RecordsWriterOptions> = {}, store = new MemoryRecordStore()) {
  const clock = new FakeClock(TEST_START);
  const writer = new RecordsWriter({ store, clock, ...options });
  const write = (records: CommandRecord[]): Promise<WriteOutcome[]> =>
    Promise.all(records.map((r) => writer.write(sessionOf(r)!, recordedCommand(r))));
  /** Writes and lets the flush window pass. */
  const deliver = async (records: CommandRecord[]): Promise<WriteOutcome[]> => {
    const done = write(records);
    await clock.advance(500);
    return done;
  };
  return { clock, writer, store, write, deliver };
}

const seqs = (store: MemoryRecordStore) =>
  store.records().map((r) => [r.metadata.name, r.status?.commands?.map((c) => c.seq)]);

describe('RecordsWriter', () => {
  it('creates the session record at its first batch and writes the batch in one status write', async () => {
    const { store, deliver } = setup();
    const outcomes = await deliver([
      command(1, 'ls -la /'),
      command(2, 'id'),
      command(3, 'cat /etc/os-release'),
    ]);
    expect(outcomes).toEqual(['accepted', 'accepted', 'accepted']);
    expect(store.calls).toMatchObject({ create: 1, replaceStatus: 1 });
    const [record] = store.records();
    expect(record?.metadata).toMatchObject({
      name: 'web-0-app-4242-0f1e2d3c-1',
      namespace: 'shop',
      labels: {
        'containeraudit.io/pod': 'web-0',
        'containeraudit.io/container': 'app',
        'containeraudit.io/node': 'node-a',
        'containeraudit.io/policy': 'prod',
        'containeraudit.io/session-kind': 'shell',
      },
    });
    expect(record?.metadata.ownerReferences).toBeUndefined();
    expect(record?.spec.session).toMatchObject({
      kind: 'shell',
      pid: 4242,
      part: 1,
      start: command(1, '').time,
    });
    expect(record?.status).toMatchObject({
      phase: 'Active',
      counts: { commands: 3, alerts: 0, redacted: 0, truncated: 0 },
      lastCommandTime: command(3, '').time,
    });
    expect(record?.status?.commands?.map((c) => c.command)).toEqual([
      'ls -la /',
      'id',
      'cat /etc/os-release',
    ]);
  });

  it('writes a full batch before the window ends', async () => {
    const { store, write } = setup({ maxBatch: 2 });
    await expect(write([command(1, 'a'), command(2, 'b')])).resolves.toEqual(['accepted', 'accepted']);
    expect(store.calls.replaceStatus).toBe(1);
  });

  it('skips a command whose seq is in the record already: a retried batch writes nothing', async () => {
    const { store, deliver } = setup();
    await deliver([command(1, 'a'), command(2, 'b')]);
    const writes = store.calls.replaceStatus;
    await expect(deliver([command(1, 'a'), command(2, 'b')])).resolves.toEqual(['duplicate', 'duplicate']);
    await expect(deliver([command(2, 'b'), command(3, 'c')])).resolves.toEqual(['duplicate', 'accepted']);
    expect(store.calls.replaceStatus).toBe(writes + 1);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1, 2, 3]]]);
  });

  it('counts a seq sent twice in one batch once', async () => {
    const { deliver, store } = setup();
    await expect(deliver([command(1, 'a'), command(1, 'a')])).resolves.toEqual(['accepted', 'duplicate']);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1]]]);
  });

  it('finds what an earlier process wrote (restart, new leader) and adds only what is new', async () => {
    const store = new MemoryRecordStore();
    await setup({}, store).deliver([command(1, 'a'), command(2, 'b')]);
    const fresh = setup({}, store);
    await expect(fresh.deliver([command(2, 'b'), command(3, 'c')])).resolves.toEqual([
      'duplicate',
      'accepted',
    ]);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1, 2, 3]]]);
  });

  it('continues a long session in part 2, 3, ..., closing the full parts', async () => {
    const { store, deliver } = setup({ limits: { maxCommands: 3 } });
    const outcomes = await deliver(Array.from({ length: 7 }, (_, i) => command(i + 1, `echo ${i + 1}`)));
    expect(outcomes.every((o) => o === 'accepted')).toBe(true);
    expect(seqs(store)).toEqual([
      ['web-0-app-4242-0f1e2d3c-1', [1, 2, 3]],
      ['web-0-app-4242-0f1e2d3c-2', [4, 5, 6]],
      ['web-0-app-4242-0f1e2d3c-3', [7]],
    ]);
    expect(store.records().map((r) => [r.spec.session.part, r.status?.phase])).toEqual([
      [1, 'Closed'],
      [2, 'Closed'],
      [3, 'Active'],
    ]);
    // Every part says when the session started.
    expect(new Set(store.records().map((r) => r.spec.session.start)).size).toBe(1);
  });

  it('knows the seqs of earlier parts after a restart', async () => {
    const store = new MemoryRecordStore();
    await setup({ limits: { maxCommands: 2 } }, store).deliver([1, 2, 3].map((i) => command(i, `c${i}`)));
    const fresh = setup({ limits: { maxCommands: 2 } }, store);
    await expect(fresh.deliver([command(1, 'c1'), command(4, 'c4')])).resolves.toEqual([
      'duplicate',
      'accepted',
    ]);
    expect(seqs(store)).toEqual([
      ['web-0-app-4242-0f1e2d3c-1', [1, 2]],
      ['web-0-app-4242-0f1e2d3c-2', [3, 4]],
    ]);
  });

  it('cuts parts by encoded size too', async () => {
    const { store, deliver } = setup({ limits: { maxBytes: 2500 } });
    await deliver([1, 2, 3, 4].map((i) => command(i, 'x'.repeat(600))));
    expect(store.records().length).toBeGreaterThan(1);
    expect(store.records().flatMap((r) => r.status?.commands?.map((c) => c.seq))).toEqual([1, 2, 3, 4]);
    for (const r of store.records()) expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThanOrEqual(2500);
  });

  it('on a conflict reads the record again and writes only what is not there, losing nothing', async () => {
    const { store, deliver, writer } = setup();
    await deliver([command(1, 'a')]);
    // Another writer (a second replica that thought it led) adds seq 2 and 5 between our read and write.
    let once = true;
    store.beforeReplace = (r) => {
      if (!once) return;
      once = false;
      store.mutate('shop', r.metadata.name!, (stored) => {
        stored.status!.commands!.push(recordedCommand(command(2, 'b')), recordedCommand(command(5, 'e')));
      });
    };
    const outcomes = await deliver([command(2, 'b'), command(3, 'c'), command(4, 'd')]);
    expect(outcomes).toEqual(['duplicate', 'accepted', 'accepted']);
    const [record] = store.records();
    expect(record?.status?.commands?.map((c) => c.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(record?.status?.counts?.commands).toBe(5);
    expect(writer.counters.get('conflicts')).toBe(1);
  });

  it('uses a hashed name when the plain one belongs to another session', async () => {
    const store = new MemoryRecordStore();
    await setup({}, store).deliver([command(1, 'old pod')]);
    // The pod was recreated under the same name, and a shell got the same pid in the same agent boot.
    const other = { pod: { namespace: 'shop', name: 'web-0', uid: 'new-uid' } };
    const { deliver } = setup({}, store);
    await expect(deliver([command(9, 'new pod', other)])).resolves.toEqual(['accepted']);
    const names = store.records().map((r) => [r.metadata.name, r.spec.pod.uid]);
    expect(names).toEqual(
      expect.arrayContaining([
        ['web-0-app-4242-0f1e2d3c-1', '1b4e28ba-2fa1-11d2-883f-0016d3cca427'],
        [expect.stringMatching(/^web-0-app-4242-0f1e2d3c-1-[0-9a-f]{8}$/), 'new-uid'],
      ]),
    );
  });

  it('puts exec records of a container into one exec session', async () => {
    const store = new MemoryRecordStore();
    const clock = new FakeClock(TEST_START);
    const writer = new RecordsWriter({ store, clock });
    const records = [exec(1, ['ls']), exec(2, ['cat', 'x'], { pid: 7777 })];
    const done = Promise.all(records.map((r) => writer.write(sessionOf(r)!, recordedCommand(r))));
    await clock.advance(500);
    await expect(done).resolves.toEqual(['accepted', 'accepted']);
    expect(
      store.records().map((r) => [r.metadata.name, r.spec.session.kind, r.status?.counts?.commands]),
    ).toEqual([['web-0-app-exec-0f1e2d3c-1', 'exec', 2]]);
  });

  it('reports failed writes as failed, and a later retry writes them once', async () => {
    const { store, deliver } = setup();
    store.failNext = { error: apiError(500, 'InternalError'), times: 1 };
    await expect(deliver([command(1, 'a')])).resolves.toEqual(['failed']);
    await expect(deliver([command(1, 'a')])).resolves.toEqual(['accepted']);
    await expect(deliver([command(1, 'a')])).resolves.toEqual(['duplicate']);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1]]]);
  });

  it('adds a loss to the records of the container’s active sessions, once', async () => {
    const { store, deliver, writer, clock } = setup();
    await deliver([command(1, 'a')]);
    const target = { node: 'node-a', namespace: 'shop', pod: 'web-0', container: 'app' };
    const loss = {
      reason: 'attached late: earlier commands may be missing',
      count: 0,
      until: command(1, '').time,
    };
    const noted = writer.noteLoss(target, loss);
    await clock.advance(500);
    await expect(noted).resolves.toEqual(['accepted']);
    const again = writer.noteLoss(target, loss);
    await clock.advance(500);
    await again;
    expect(store.records()[0]?.status?.losses).toEqual([loss]);
    await expect(writer.noteLoss({ ...target, container: 'other' }, loss)).resolves.toEqual([]);
  });

  it('writes a record again when it was deleted meanwhile, instead of failing forever', async () => {
    const { store, deliver } = setup();
    await deliver([command(1, 'a')]);
    store.objects.clear();
    await expect(deliver([command(2, 'b')])).resolves.toEqual(['accepted']);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [2]]]);
  });

  it('forgets idle sessions and reads them back when they speak again', async () => {
    const { store, deliver, writer, clock } = setup({ idleMs: 60_000 });
    await deliver([command(1, 'a')]);
    await clock.advance(61_000);
    await deliver([command(1, 'a', { pid: 1 })]);
    expect(writer.sessionCount).toBe(1);
    await expect(deliver([command(1, 'a'), command(2, 'b')])).resolves.toEqual(['duplicate', 'accepted']);
    expect(store.records().map((r) => r.status?.commands?.length)).toEqual([1, 2]);
  });

  it('close() writes what is pending at once', async () => {
    const { store, write, writer } = setup({ flushMs: 60_000 });
    const pending = write([command(1, 'a')]);
    await writer.close();
    await expect(pending).resolves.toEqual(['accepted']);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1]]]);
  });
  it('loses what is left of a batch whose namespace is gone, and writes the other sessions', async () => {
    const { store, deliver, writer } = setup();
    store.deleteNamespace('ci-42');
    const gone = { pod: { namespace: 'ci-42', name: 'test-0', uid: 'u-ci' } };
    const outcomes = await deliver([
      command(1, 'make test', gone),
      command(2, 'ls'),
      command(3, 'exit', gone),
      command(4, 'id'),
    ]);
    expect(outcomes).toEqual([
      { lost: 'namespace-gone' },
      'accepted',
      { lost: 'namespace-gone' },
      'accepted',
    ]);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [2, 4]]]);
    expect(writer.counters.snapshot()).toMatchObject({ lost: 2, accepted: 2 });
    // Later commands of that session are lost at once, and the others go on.
    await expect(deliver([command(5, 'x', gone), command(6, 'y')])).resolves.toEqual([
      { lost: 'namespace-gone' },
      'accepted',
    ]);
  });

  it('loses the records of a session whose namespace goes away after its first part', async () => {
    const { store, deliver } = setup();
    await deliver([command(1, 'a')]);
    store.deleteNamespace('shop');
    await expect(deliver([command(2, 'b')])).resolves.toEqual([{ lost: 'namespace-gone' }]);
  });

  it('narrows a refused batch down to the command refused, and writes the rest', async () => {
    const { store, deliver, writer } = setup();
    store.refuseStatus = (r) => r.status?.commands?.some((c) => c.command === 'refused') ?? false;
    const batch = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => command(i, i === 6 ? 'refused' : `echo ${i}`));
    const outcomes = await deliver(batch);
    expect(outcomes).toEqual([
      ...Array.from({ length: 5 }, () => 'accepted'),
      { lost: 'invalid' },
      'accepted',
      'accepted',
    ]);
    expect(seqs(store)).toEqual([['web-0-app-4242-0f1e2d3c-1', [1, 2, 3, 4, 5, 7, 8]]]);
    expect(writer.counters.get('lost')).toBe(1);
  });

  it('sizes parts as the API server stores them: lines of < > & are never refused', async () => {
    // etcd's default limit; each line is 6 KiB to JSON.stringify and 36 KiB once Go has escaped it.
    const { store, deliver } = setup({ maxBatch: 1000 });
    store.maxStoredBytes = 1.5 * 1024 * 1024;
    const html = '<>&'.repeat(2048);
    const lines = Array.from({ length: 120 }, (_, i) => command(i + 1, `${i} ${html}`));
    const outcomes = await deliver(lines);
    expect(outcomes).toEqual(lines.map(() => 'accepted'));
    expect(store.records().length).toBeGreaterThanOrEqual(4);
    for (const r of store.records()) expect(goJsonBytes(r)).toBeLessThanOrEqual(1024 * 1024);
    expect(store.records().flatMap((r) => r.status?.commands?.map((c) => c.seq))).toEqual(
      lines.map((l) => l.seq),
    );
  });

  it('closes a part the API server finds too large, and loses only a command too large alone', async () => {
    const { store, deliver } = setup();
    store.maxStoredBytes = 6000; // an etcd stricter than the writer's margin
    const small = [1, 2, 3, 4, 5, 6].map((i) => command(i, `${i}`.repeat(1000)));
    const huge = command(7, 'x'.repeat(8000));
    const outcomes = await deliver([...small, huge, command(8, 'after')]);
    expect(outcomes).toEqual([...small.map(() => 'accepted'), { lost: 'too-large' }, 'accepted']);
    expect(store.records().flatMap((r) => r.status?.commands?.map((c) => c.seq))).toEqual([
      1, 2, 3, 4, 5, 6, 8,
    ]);
    for (const r of store.records()) expect(goJsonBytes(r)).toBeLessThanOrEqual(6000);
  });
});
