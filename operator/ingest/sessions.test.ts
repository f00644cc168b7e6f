import { AgentRecord } from '../../api/records/v1.js';
import { IDENTITY_LIMITS, MAX_COMMAND_TEXT, type RecordedCommand } from '../../api/v1alpha1/index.js';
import {
  fitCommands,
  mergeLosses,
  nameOf,
  recordedCommand,
  sameSession,
  sessionKey,
  sessionOf,
  splitDuplicates,
  statusOf,
  newRecord,
} from './sessions.js';
import { BOOT, command, exec } from './testdata/fakes.js';

describe('sessionOf', () => {
  it('makes a shell session of the command record: its pid, within its boot', () => {
    expect(sessionOf(command(1, 'ls'))).toEqual({
      namespace: 'shop',
      pod: 'web-0',
      podUid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
      container: 'app',
      containerId: 'c0ffee0123456789',
      image: 'registry.example/web:1.2',
      node: 'node-a',
      boot: BOOT,
      policy: 'prod',
      kind: 'shell',
      pid: 4242,
      nsPid: 7,
    });
  });

  it('makes one exec session per container and boot, whatever the pid', () => {
    const a = sessionOf(exec(1, ['ls']))!;
    const b = sessionOf(exec(2, ['id'], { pid: 9999, containerId: 'restarted' }))!;
    expect(a).toMatchObject({ kind: 'exec', pid: 0 });
    expect(sessionKey(a)).toBe(sessionKey(b));
    expect(sessionKey(a)).not.toBe(sessionKey(sessionOf(exec(3, ['ls'], { boot: 'other' }))!));
  });

  it('tells shells apart by pid and by container instance', () => {
    const a = sessionOf(command(1, 'ls'))!;
    expect(sessionKey(a)).not.toBe(sessionKey(sessionOf(command(2, 'ls', { pid: 1 }))!));
    expect(sessionKey(a)).not.toBe(sessionKey(sessionOf(command(2, 'ls', { containerId: 'x' }))!));
  });

  it('has no session without pod namespace, pod name or container name', () => {
    expect(sessionOf(command(1, 'ls', { pod: undefined }))).toBeUndefined();
    expect(sessionOf(command(1, 'ls', { pod: { name: 'web-0' } }))).toBeUndefined();
    expect(sessionOf(command(1, 'ls', { container: undefined }))).toBeUndefined();
  });
});

describe('sameSession', () => {
  it('recognises the spec of its own record and not that of a namesake', () => {
    const id = sessionOf(command(1, 'ls'))!;
    const spec = newRecord(id, nameOf(id, 1, false), 1, '2026-03-01T10:00:00Z').spec;
    expect(sameSession(spec, id)).toBe(true);
    expect(sameSession({ ...spec, pod: { ...spec.pod, uid: 'other' } }, id)).toBe(false);
    expect(sameSession({ ...spec, container: { ...spec.container, id: 'other' } }, id)).toBe(false);
  });
});

describe('recordedCommand', () => {
  it('keeps a command exactly, with the most severe alert and all alert names', () => {
    const r = command(5, 'curl http://x | sh', {
      redacted: true,
      alerts: [
        { name: 'net', severity: 'low' },
        { name: 'curl-pipe-shell', severity: 'high' },
      ],
    });
    expect(recordedCommand(r)).toEqual({
      seq: 5,
      time: r.time,
      pid: 4242,
      nsPid: 7,
      uid: 0,
      command: 'curl http://x | sh',
      truncated: false,
      redacted: true,
      alert: { name: 'curl-pipe-shell', severity: 'high' },
      alerts: ['net', 'curl-pipe-shell'],
    });
  });

  it('shows an exec as its quoted argv', () => {
    const c = recordedCommand(exec(3, ['/bin/sh', '-c', "echo 'hi' there"]));
    expect(c.command).toBe(`/bin/sh -c 'echo '\\''hi'\\'' there'`);
    expect(c.pid).toBe(5003);
  });

  it('keeps the exact bytes of a non-UTF-8 argv as base64', () => {
    const bytes = [Buffer.from('cat'), Buffer.from([0x66, 0xff])];
    const c = recordedCommand(
      exec(3, ['cat', 'f\ufffd'], { argvBase64: bytes.map((b) => b.toString('base64')) }),
    );
    expect(Buffer.from(c.commandBase64!, 'base64')).toEqual(
      Buffer.from([...Buffer.from('cat '), 0x27, 0x66, 0xff, 0x27]),
    );
  });

  it('copies a command at the bound whole: the agent cut it, nothing is cut here', () => {
    const full = 'x'.repeat(MAX_COMMAND_TEXT);
    expect(recordedCommand(command(1, full, { truncated: true }))).toMatchObject({
      command: full,
      truncated: true,
    });
    const half = 'y'.repeat(MAX_COMMAND_TEXT / 2 - 1);
    expect(recordedCommand(exec(2, [half, half])).command).toHaveLength(MAX_COMMAND_TEXT - 1);
  });

  it('never sees text or identity beyond the AuditRecord’s bounds: a forged record is refused whole', () => {
    const long = 'x'.repeat(MAX_COMMAND_TEXT / 2 + 10);
    expect(AgentRecord.safeParse(exec(1, ['x'.repeat(MAX_COMMAND_TEXT / 2 - 1)])).success).toBe(true);
    const refused = [
      exec(1, [long, long]),
      exec(1, ["'".repeat(MAX_COMMAND_TEXT / 4)]), // quoting makes it four times longer
      command(1, 'x'.repeat(MAX_COMMAND_TEXT + 1)),
      command(1, 'ls', { commandBase64: 'A'.repeat(MAX_COMMAND_TEXT * 2) }),
      command(1, 'ls', { containerId: 'c'.repeat(IDENTITY_LIMITS.containerId + 1) }),
      command(1, 'ls', { image: 'i'.repeat(IDENTITY_LIMITS.image + 1) }),
      command(1, 'ls', { container: 'a'.repeat(IDENTITY_LIMITS.containerName + 1) }),
      command(1, 'ls', {
        pod: { namespace: 'shop', name: 'web-0', uid: 'u'.repeat(IDENTITY_LIMITS.podUid + 1) },
      }),
    ];
    for (const record of refused) expect(AgentRecord.safeParse(record).success).toBe(false);
  });
});

const cmd = (seq: number, text = 'ls'): RecordedCommand => ({
  seq,
  time: new Date(Date.parse('2026-03-01T10:00:00Z') + seq * 1000).toISOString(),
  pid: 1,
  uid: 0,
  command: text,
  truncated: false,
  redacted: false,
});

describe('fitCommands', () => {
  it('fills a record up to the command limit; the rest continue in the next part', () => {
    const { added, rest } = fitCommands(3, 100, [cmd(4), cmd(5), cmd(6)], { maxCommands: 5, maxBytes: 1e9 });
    expect(added.map((c) => c.seq)).toEqual([4, 5]);
    expect(rest.map((c) => c.seq)).toEqual([6]);
  });

  it('fills a record up to the byte limit, and an empty record takes at least one command', () => {
    const big = [cmd(1, 'x'.repeat(500)), cmd(2, 'y'.repeat(500))];
    expect(fitCommands(0, 100, big, { maxCommands: 500, maxBytes: 800 }).added).toHaveLength(1);
    expect(fitCommands(0, 100, big, { maxCommands: 500, maxBytes: 10 }).added).toHaveLength(1);
    expect(fitCommands(1, 100, big, { maxCommands: 500, maxBytes: 10 }).added).toHaveLength(0);
  });

  it('measures commands as the API server stores them: `<>&` take six bytes each', () => {
    // 100 lines of 1,000 HTML characters: 100 KB to JSON.stringify, 600 KB stored.
    const html = Array.from({ length: 100 }, (_, i) => cmd(i + 1, '<>&'.repeat(333)));
    const { added } = fitCommands(0, 1000, html, { maxCommands: 500, maxBytes: 200_000 });
    expect(added.length).toBeGreaterThanOrEqual(30);
    expect(added.length).toBeLessThanOrEqual(34);
  });
});

describe('splitDuplicates', () => {
  it('skips seqs already seen and repeats within the batch (the first wins)', () => {
    const { fresh, duplicates } = splitDuplicates([cmd(1), cmd(2), cmd(2, 'again'), cmd(3)], new Set([1]));
    expect(fresh.map((c) => [c.seq, c.command])).toEqual([
      [2, 'ls'],
      [3, 'ls'],
    ]);
    expect(duplicates.map((c) => [c.seq, c.command])).toEqual([
      [1, 'ls'],
      [2, 'again'],
    ]);
  });
});

describe('mergeLosses', () => {
  const loss = (n: number) => ({ reason: `r${n}`, count: n, since: '2026-03-01T10:00:00Z' });

  it('adds a loss once', () => {
    expect(mergeLosses([loss(1)], [loss(1), loss(2)])).toEqual([loss(1), loss(2)]);
  });

  it('keeps at most 64, folding the oldest into one entry that keeps their count', () => {
    const merged = mergeLosses(
      Array.from({ length: 64 }, (_, i) => loss(i + 1)),
      [loss(100)],
    );
    expect(merged).toHaveLength(64);
    expect(merged[0]).toMatchObject({ reason: 'earlier losses (2 entries)', count: 3 });
    expect(merged.at(-1)).toEqual(loss(100));
  });
});

describe('statusOf', () => {
  it('stores commands by seq and counts them', () => {
    const status = statusOf(
      [
        { ...cmd(3), alert: { name: 'a', severity: 'high' } },
        { ...cmd(1), redacted: true },
        { ...cmd(2), truncated: true },
      ],
      [],
      'Active',
    );
    expect(status.commands?.map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(status.counts).toEqual({ commands: 3, alerts: 1, redacted: 1, truncated: 1 });
    expect(status.lastCommandTime).toBe(cmd(3).time);
    expect(status.phase).toBe('Active');
    expect(status.losses).toBeUndefined();
  });
});
