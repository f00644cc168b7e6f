import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LINE_LIMITS } from '../../records/line-limits.js';
import { type CapturedLine, ReadlineAssembler, parseReadlineLine } from './parse.js';
import {
  BUDGET_CHUNKS,
  BUDGET_WINDOW_NS,
  chunksFor,
  probePathSyntax,
  renderReadlineScript,
  templatePath,
  unprobeablePath,
} from './script.js';

const samples = readFileSync(join(import.meta.dirname, 'samples.txt'), 'utf8').split('\n');

function assemble(lines: string[]): { captured: CapturedLine[]; assembler: ReadlineAssembler } {
  const assembler = new ReadlineAssembler();
  const captured: CapturedLine[] = [];
  for (const line of lines) {
    const parsed = parseReadlineLine(line);
    if (!parsed.ok) continue;
    const done = assembler.push(parsed.event);
    if (done) captured.push(done);
  }
  return { captured, assembler };
}

/** The lines bpftrace would print for one hit reading `bytes` (as the script does, including the NUL cut). */
function hitLines(bytes: Buffer, ns: bigint, max = 4096, pid = 7, tid = 7): string[] {
  const chunks = chunksFor(max);
  const withNul = Buffer.concat([bytes, Buffer.alloc(1)]);
  const out: string[] = [];
  for (let i = 0; i < chunks; i++) {
    const chunk = Buffer.alloc(64);
    withNul.copy(chunk, 0, i * 64, i * 64 + 64);
    const hasNul = i * 64 + 64 > bytes.length;
    const words = Array.from({ length: 8 }, (_, w) => chunk.readBigUInt64LE(w * 8).toString(16));
    out.push(`${hasNul ? 'L' : 'C'} ${pid} ${tid} ${ns} 1000 42 4026532000 ${i} ${words.join(' ')}`);
    if (hasNul) return out;
  }
  out.push(`T ${pid} ${tid} ${ns} 1000 42 4026532000 ${chunks}`);
  return out;
}

describe('readline output', () => {
  it('decodes the captured samples byte for byte', () => {
    const { captured, assembler } = assemble(samples);
    expect(captured.map((c) => c.bytes.toString('utf8'))).toEqual([
      'echo "a\\x41 \\\\ é"',
      `echo ${'x'.repeat(150)}`,
      'exit',
    ]);
    expect(captured.every((c) => !c.truncated && c.uid === 0 && c.mntns > 0)).toBe(true);
    expect(new Set(captured.map((c) => c.pid)).size).toBe(1);
    expect(assembler.stats).toMatchObject({ lines: 3, malformed: 0 });
  });

  it.each([
    ['an empty line', Buffer.alloc(0)],
    ['63 bytes', Buffer.alloc(63, 'a')],
    ['64 bytes', Buffer.alloc(64, 'b')],
    ['65 bytes', Buffer.alloc(65, 'c')],
    ['every byte value but NUL', Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1))],
    ['invalid UTF-8', Buffer.from([0x65, 0xff, 0xfe, 0x80, 0x41])],
    ['tabs, quotes and escapes', Buffer.from('printf "%s\\t%s\\n" \'a\tb\' "$x" `id`')],
  ])('round-trips %s', (_name, bytes) => {
    const { captured } = assemble(hitLines(bytes, 1n));
    expect(captured).toHaveLength(1);
    expect(captured[0]!.bytes.equals(bytes)).toBe(true);
    expect(captured[0]!.truncated).toBe(false);
  });

  it('gives what the probe read, uncut, and says when the probe stopped before the end', () => {
    // Cutting to a limit is the record's, once (agent/records/build.ts): here only what was read.
    const max = 100;
    const long = Buffer.alloc(300, 'z');
    const { captured } = assemble(hitLines(long, 1n, max));
    expect(captured[0]!.bytes.equals(long.subarray(0, chunksFor(max) * 64))).toBe(true);
    expect(captured[0]!.truncated).toBe(true);
    const exact = Buffer.alloc(128, 'y'); // a multiple of the chunk size: the NUL is in the extra chunk
    expect(assemble(hitLines(exact, 2n, 128)).captured[0]).toMatchObject({ bytes: exact, truncated: false });
    // One byte over the limit, within the extra chunk: read whole, for the record to cut.
    const over = Buffer.alloc(129, 'y');
    expect(assemble(hitLines(over, 3n, 128)).captured[0]).toMatchObject({ bytes: over, truncated: false });
  });

  it('keeps interleaved hits apart and refuses a hit with a missing chunk', () => {
    const a = hitLines(Buffer.alloc(130, 'a'), 10n, 4096, 1, 1);
    const b = hitLines(Buffer.alloc(70, 'b'), 11n, 4096, 2, 2);
    const { captured } = assemble([a[0]!, b[0]!, a[1]!, b[1]!, a[2]!]);
    expect(captured.map((c) => [c.pid, c.bytes.length])).toEqual([
      [2, 70],
      [1, 130],
    ]);
    const gap = assemble([a[0]!, a[2]!]);
    expect(gap.captured).toEqual([]);
    expect(gap.assembler.stats.malformed).toBe(1);
  });

  it('reads the ready line', () => {
    expect(parseReadlineLine('R')).toEqual({ ok: true, event: { kind: 'ready' } });
    expect(assemble(['R']).captured).toEqual([]);
  });

  it('reads the kernel drop tallies of a run over the budget, and the lines within it', () => {
    const lines = readFileSync(join(import.meta.dirname, 'dropped-samples.txt'), 'utf8').split('\n');
    const { captured } = assemble(lines);
    expect(captured.map((c) => c.bytes.length)).toEqual([39, 69]);
    const tallies = lines
      .map(parseReadlineLine)
      .flatMap((p) => (p.ok && p.event.kind === 'dropped-total' ? [p.event] : []));
    expect(tallies.length).toBeGreaterThanOrEqual(4);
    for (const t of tallies) {
      expect(t).toEqual({
        kind: 'dropped-total',
        what: t.what,
        mntns: 4026531832,
        total: t.what === 'lines' ? 5 : 580,
      });
    }
    expect(new Set(tallies.map((t) => t.what))).toEqual(new Set(['lines', 'bytes']));
  });

  it('does not count end of input as a command', () => {
    const { captured, assembler } = assemble(['N 7 7 5 0 1 4026531832']);
    expect(captured).toEqual([]);
    expect(assembler.stats.eof).toBe(1);
  });

  it.each([
    ['bpftrace chatter', 'Attaching 1 probe...', 'noise'],
    ['an error line', 'ERROR: failed to detach probe: uretprobe:/bin/bash:readline', 'noise'],
    ['a short chunk', 'C 1 1 1 0 1 4026531832 0 ff', 'malformed'],
    ['a non-hex word', 'L 1 1 1 0 1 4026531832 0 zz 0 0 0 0 0 0 0', 'malformed'],
    ['a word too long', `L 1 1 1 0 1 4026531832 0 ${'f'.repeat(17)} 0 0 0 0 0 0 0`, 'malformed'],
    ['a negative pid', 'N -1 1 1 0 1 4026531832', 'malformed'],
    ['a tally with a negative count', '@rl_dropped_lines[4026531832]: -1', 'malformed'],
    ['a tally of another map', '@rl_dropped_words[4026531832]: 1', 'malformed'],
    ['another map', '@rl_used[4026531832]: 1', 'noise'],
  ])('sets aside %s', (_name, line, reason) => {
    expect(parseReadlineLine(line)).toEqual({ ok: false, reason });
  });
});

describe('renderReadlineScript', () => {
  const template = 'P={{PROBES}} N={{MAX_CHUNKS}}';
  it('probes each distinct file once and sizes the loop from maxCommandBytes', () => {
    expect(renderReadlineScript(['/a/bash', '/b/libreadline.so.8', '/a/bash'], 4096, template)).toBe(
      'P=uretprobe:/a/bash:readline,\nuretprobe:/b/libreadline.so.8:readline N=65',
    );
  });
  it('fills in the per-container kernel budget, which no typed line at the userspace line rate reaches', () => {
    expect(renderReadlineScript(['/a/bash'], 4096, 'B={{BUDGET_CHUNKS}} W={{BUDGET_WINDOW_NS}}')).toBe(
      `B=${BUDGET_CHUNKS} W=${BUDGET_WINDOW_NS}`,
    );
    const script = renderReadlineScript(['/a/bash'], 4096);
    expect(script).not.toMatch(/\{\{\w+\}\}/);
    // Typed lines are one or two chunks each: the userspace line rate binds first.
    expect((BUDGET_CHUNKS * 1e9) / BUDGET_WINDOW_NS).toBeGreaterThan(2 * DEFAULT_LINE_LIMITS.linesPerSecond);
    // A 4 KiB line (65 events) fits in a window many times over.
    expect(BUDGET_CHUNKS).toBeGreaterThan(4 * chunksFor(4096));
  });
  it('fills placeholders only in code: a multi-line probe list in a comment would spill out of it', () => {
    const template = readFileSync(templatePath(), 'utf8');
    const commentsWithPlaceholders = template
      .split('\n')
      .filter((line) => line.trimStart().startsWith('//') && line.includes('{{'));
    expect(commentsWithPlaceholders).toEqual([]);
  });

  it('quotes a path that is not plain, as bpftrace unescapes it (a backslash twice, a quote once)', () => {
    expect(renderReadlineScript(['/x/ba sh', '/y/é\\"z'], 4096, template)).toBe(
      'P=uretprobe:"/x/ba sh":readline,\nuretprobe:"/y/é\\\\\\\\\\"z":readline N=65',
    );
    expect(probePathSyntax('/usr/lib/x86_64-linux-gnu/libreadline.so.8.2')).toBe(
      '/usr/lib/x86_64-linux-gnu/libreadline.so.8.2',
    );
    expect(probePathSyntax("/a'b\tc$d/bash")).toBe('"/a\'b\tc$d/bash"');
  });

  it('refuses paths bpftrace cannot take, saying why', () => {
    expect(unprobeablePath('/x/ba sh')).toBeUndefined();
    expect(unprobeablePath('/x/a:b')).toMatch(/':'/);
    expect(unprobeablePath('/x/a*/bash')).toMatch(/wildcard/);
    expect(unprobeablePath('/x/a\nb/bash')).toMatch(/newline/);
    expect(unprobeablePath('x/bash')).toMatch(/absolute/);
    expect(() => renderReadlineScript(['/x/a:b'], 4096, template)).toThrow(`cannot probe "/x/a:b": a ':'`);
    expect(() => renderReadlineScript([], 4096, template)).toThrow('no readline targets');
  });
});
