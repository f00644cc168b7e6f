import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CapturedExec,
  ExecAssembler,
  type ExecAssemblerOptions,
  PATH_MAX_CHUNKS,
  parseExecLine,
  splitArgv,
} from './parse.js';
import { argvChunksFor, execTemplatePath, renderExecScript } from './script.js';

const samples = readFileSync(join(import.meta.dirname, 'samples.txt'), 'utf8').split('\n');

function assemble(lines: string[], options?: ExecAssemblerOptions) {
  const assembler = new ExecAssembler(options);
  const captured: CapturedExec[] = [];
  for (const line of lines) {
    const done = assembler.pushLine(line);
    if (done) captured.push(done);
  }
  return { captured, assembler };
}

const hex = (chunk: Buffer) => Array.from({ length: 8 }, (_, w) => chunk.readBigUInt64LE(w * 8).toString(16));

interface Exec {
  filename: Buffer | string;
  argv: (Buffer | string)[];
  max?: number;
  pid?: number;
  ns?: bigint;
  uid?: number;
}

/** The lines the script prints for one exec, built the way the kernel side builds them. */
function execLines({ filename, argv, max = 4096, pid = 7, ns = 1n, uid = 1000 }: Exec): string[] {
  const head = (tag: string) => `${tag} ${pid} ${pid} ${ns} ${uid} 42 4026532000`;
  const out: string[] = [];
  // the path: full chunks until the one holding the NUL, which is zeroed from the NUL on
  const path = Buffer.concat([Buffer.from(filename), Buffer.alloc(1)]);
  let pathChunks = 0;
  for (; pathChunks < PATH_MAX_CHUNKS; pathChunks++) {
    const chunk = Buffer.alloc(64);
    path.copy(chunk, 0, pathChunks * 64, pathChunks * 64 + 64);
    const last = chunk.includes(0);
    out.push(`${head(last ? 'Q' : 'P')} ${pathChunks} ${hex(chunk).join(' ')}`);
    if (last) {
      pathChunks++;
      break;
    }
  }
  // argv: the NUL-terminated strings, up to max bytes, zero after
  const area = Buffer.concat(argv.flatMap((a) => [Buffer.from(a), Buffer.alloc(1)]));
  const kept = Math.min(area.length, max);
  const argvChunks = Math.ceil(kept / 64);
  for (let i = 0; i < argvChunks; i++) {
    const chunk = Buffer.alloc(64);
    area.copy(chunk, 0, i * 64, Math.min(i * 64 + 64, kept));
    out.push(`${head('A')} ${i} ${hex(chunk).join(' ')}`);
  }
  out.push(`${head('E')} 1 ${area.length} ${kept} ${pathChunks} ${argvChunks}`);
  return out;
}

const b = (bytes: number[]) => Buffer.from(bytes);
const strings = (bufs: Buffer[]) => bufs.map((x) => x.toString('hex'));

describe('exec output', () => {
  it('decodes the captured samples byte for byte', () => {
    const { captured, assembler } = assemble(samples);
    expect(assembler.stats).toMatchObject({ execs: 6, dropped: 0, malformedLines: 0, truncated: 1 });
    expect(assembler.incomplete).toBe(0);
    const [tricky, path, long, exact, setpriv, nobody] = captured;
    expect(tricky!.filename.toString()).toBe('/bin/true');
    expect(strings(tricky!.argv)).toEqual(
      strings(
        ['/bin/true', 'a b', 'tab\there', 'é 日本 🗂', b([0xff, 0xfe]), '', 'end'].map((x) => Buffer.from(x)),
      ),
    );
    const strange = Buffer.concat([Buffer.from('/tmp/ex/dir/my prog é'), b([0xff])]);
    expect(path!.filename.equals(strange)).toBe(true);
    expect(strings(path!.argv)).toEqual(strings([strange, Buffer.from('arg')]));
    expect(long).toMatchObject({ truncated: true, argvBytes: 311 });
    // 256 bytes kept: '/bin/true' and its NUL, then 246 of the 300 x
    expect(long!.argv.map(String)).toEqual(['/bin/true', 'x'.repeat(246)]);
    expect(exact).toMatchObject({ truncated: false, argvBytes: 256 });
    expect(exact!.argv.map(String)).toEqual(['/bin/true', 'y'.repeat(245)]);
    expect(setpriv!.filename.toString()).toBe('/usr/bin/setpriv');
    expect(setpriv!.argv.map(String)).toEqual([
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '/bin/true',
      'as-nobody',
    ]);
    expect(nobody).toMatchObject({ pid: setpriv!.pid, uid: 65534 });
    expect(nobody!.argv.map(String)).toEqual(['/bin/true', 'as-nobody']);
    expect(setpriv!.uid).toBe(0);
    expect(captured.every((c) => c.ppid === 9469 && c.tid === c.pid && c.mntns === 4026532177)).toBe(true);
    expect(captured.some((c) => c.argv.some((a) => a.toString().includes('host-namespace')))).toBe(false);
  });

  it.each([
    ['spaces and tabs', '/bin/echo', ['echo', 'a b', ' ', '\t', 'x\ty']],
    ['empty arguments', '/bin/x', ['', '', 'b', '']],
    ['no argument at all (argc 0: the kernel adds one empty string)', '/bin/x', ['']],
    ['UTF-8', '/bin/é', ['é', '日本', '🗂']],
    [
      'invalid UTF-8 and every byte but NUL',
      '/bin/x',
      [b([0xff, 0xfe, 0x80]), b(Array.from({ length: 255 }, (_, i) => i + 1))],
    ],
    ['quotes and backslashes', '/bin/sh', ['sh', '-c', `printf '%s\\n' "a\\"b" \`id\` $((1+2))`]],
    ['argv of exactly one chunk', '/bin/x', ['x'.repeat(63)]],
    ['argv of one chunk and one byte', '/bin/x', ['x'.repeat(64)]],
    ['a path of 63 bytes', `/${'p'.repeat(62)}`, ['a']],
    ['a path of 64 bytes', `/${'p'.repeat(63)}`, ['a']],
    ['a path of 65 bytes', `/${'p'.repeat(64)}`, ['a']],
    ['a relative path', './run me', ['./run me']],
  ])('round-trips %s', (_name, filename, argv) => {
    const args = argv.map((a) => Buffer.from(a));
    const { captured, assembler } = assemble(execLines({ filename, argv: args }));
    expect(assembler.stats.dropped).toBe(0);
    expect(captured).toHaveLength(1);
    expect(captured[0]!.filename.equals(Buffer.from(filename))).toBe(true);
    expect(strings(captured[0]!.argv)).toEqual(strings(args));
    expect(captured[0]).toMatchObject({ truncated: false, filenameTruncated: false, ppid: 1, uid: 1000 });
  });

  it('keeps argv of exactly maxArgvBytes whole, and cuts one byte more', () => {
    const max = 128;
    const exact = ['/bin/x', 'y'.repeat(max - 7 - 1)]; // 7 + 121 bytes with their NULs
    expect(assemble(execLines({ filename: '/bin/x', argv: exact, max })).captured[0]).toMatchObject({
      truncated: false,
      argvBytes: max,
      argv: exact.map((a) => Buffer.from(a)),
    });
    const over = ['/bin/x', 'y'.repeat(max - 7)];
    const cut = assemble(execLines({ filename: '/bin/x', argv: over, max })).captured[0]!;
    expect(cut).toMatchObject({ truncated: true, argvBytes: max + 1 });
    // the cut fell on the last argument's NUL: it is whole, and `truncated` says more may have followed
    expect(cut.argv.map(String)).toEqual(over);
  });

  it('cuts argv over the bound in the middle of an argument', () => {
    const argv = ['/bin/x', 'a'.repeat(100), 'b'.repeat(100), 'c'];
    const { captured, assembler } = assemble(execLines({ filename: '/bin/x', argv, max: 150 }));
    expect(captured[0]).toMatchObject({ truncated: true, argvBytes: 7 + 101 + 101 + 2 });
    expect(captured[0]!.argv.map(String)).toEqual(['/bin/x', 'a'.repeat(100), 'b'.repeat(150 - 7 - 101)]);
    expect(assembler.stats.truncated).toBe(1);
  });

  it('marks a path longer than the chunks read as cut', () => {
    const long = `/${'d'.repeat(PATH_MAX_CHUNKS * 64 + 10)}`;
    const { captured } = assemble(execLines({ filename: long, argv: ['x'] }));
    expect(captured[0]).toMatchObject({ filenameTruncated: true });
    expect(captured[0]!.filename.equals(Buffer.from(long).subarray(0, PATH_MAX_CHUNKS * 64))).toBe(true);
  });

  it('keeps interleaved execs apart', () => {
    const a = execLines({ filename: '/bin/a', argv: ['a', 'x'.repeat(100)], pid: 1, ns: 10n });
    const c = execLines({ filename: '/bin/c', argv: ['c', 'y'.repeat(70)], pid: 2, ns: 11n });
    // same pid, a later exec (exec of exec): another ns, another exec
    const d = execLines({ filename: '/bin/d', argv: ['d'], pid: 1, ns: 12n });
    const mixed = [a[0]!, c[0]!, d[0]!, a[1]!, c[1]!, d[1]!, c[2]!, a[2]!, c[3]!, d[2]!, a[3]!];
    const { captured, assembler } = assemble(mixed);
    expect(captured.map((x) => [x.pid, x.filename.toString(), x.argv.length])).toEqual([
      [2, '/bin/c', 2],
      [1, '/bin/d', 1],
      [1, '/bin/a', 2],
    ]);
    expect(assembler.stats).toMatchObject({ execs: 3, dropped: 0 });
  });

  describe('never emits a wrong exec', () => {
    const lines = execLines({ filename: '/bin/x', argv: ['x', 'a'.repeat(200)] }); // Q, A0..A3, E
    it.each([
      ['a missing argv chunk', lines.filter((_, i) => i !== 2)],
      ['a missing last argv chunk', lines.filter((_, i) => i !== 4)],
      ['a missing path chunk', lines.slice(1)],
      ['a repeated chunk', [lines[0]!, lines[1]!, lines[1]!, ...lines.slice(2)]],
      ['chunks out of order', [lines[0]!, lines[2]!, lines[1]!, ...lines.slice(3)]],
      ['a path chunk after argv', [lines[1]!, lines[0]!, ...lines.slice(2)]],
      ['only the last line', lines.slice(-1)],
      ['a count that does not match', [...lines.slice(0, -1), lines.at(-1)!.replace(/ 4$/, ' 5')]],
      ['bytes after the end of argv', [...lines.slice(0, 4), lines[4]!.replace(/ 0$/, ' 1'), lines[5]!]],
      ['another process in the middle', [lines[0]!, lines[1]!.replace(' 1000 ', ' 0 '), ...lines.slice(2)]],
    ])('drops an exec with %s and counts it once', (_name, broken) => {
      const { captured, assembler } = assemble(broken);
      expect(captured).toEqual([]);
      expect(assembler.stats.dropped).toBe(1);
      expect(assembler.incomplete).toBe(0);
    });

    it('counts an exec whose last line never came, when it is long gone or bpftrace stops', () => {
      const lost = execLines({ filename: '/bin/lost', argv: ['lost'], ns: 1n }).slice(0, -1);
      const later = execLines({ filename: '/bin/y', argv: ['y'], ns: 10_000_000_000n });
      const { captured, assembler } = assemble([...lost, ...later]);
      expect(captured.map((c) => c.filename.toString())).toEqual(['/bin/y']);
      expect(assembler.stats.dropped).toBe(1);
      const stopped = assemble(lost).assembler;
      expect(stopped.incomplete).toBe(1);
      expect(stopped.flush()).toBe(1);
      expect(stopped.stats.dropped).toBe(1);
    });

    it('bounds the execs it waits for', () => {
      const firsts = [1, 2, 3].map((pid) => execLines({ filename: '/x', argv: ['x'], pid })[0]!);
      const { assembler } = assemble(firsts, { maxPending: 2 });
      expect(assembler.incomplete).toBe(2);
      expect(assembler.stats.dropped).toBe(1);
    });
  });

  it('reads the ready line', () => {
    expect(parseExecLine('R')).toEqual({ ok: true, event: { kind: 'ready' } });
  });

  it('keeps 64-bit times and cgroup ids exact', () => {
    const parsed = parseExecLine('E 5 5 18446744073709551615 0 18446744073709551614 4026532177 1 2 2 1 1');
    expect(parsed).toMatchObject({ ok: true, event: { ns: 2n ** 64n - 1n, cgroup: 2n ** 64n - 2n } });
  });

  it.each([
    ['bpftrace chatter', 'Attaching 2 probes...', 'noise'],
    ['a lost-events notice', 'Lost 12 events', 'noise'],
    ['a comment', '# captured from', 'noise'],
    ['an empty line', '', 'noise'],
    ['a prototype key as tag', 'constructor 1 1 1 0 1 4026531832 0 0 0 0 0 0 0 0 0', 'noise'],
    ['a short chunk', 'A 1 1 1 0 1 4026531832 0 ff', 'malformed'],
    ['a non-hex word', 'A 1 1 1 0 1 4026531832 0 zz 0 0 0 0 0 0 0', 'malformed'],
    ['a word too long', `P 1 1 1 0 1 4026531832 0 ${'f'.repeat(17)} 0 0 0 0 0 0 0`, 'malformed'],
    ['a negative pid', 'E -1 1 1 0 1 4026531832 1 2 2 1 1', 'malformed'],
    ['a size past 2^53', 'E 1 1 1 0 1 4026531832 1 9007199254740993 2 1 1', 'malformed'],
    ['a last line without counts', 'E 1 1 1 0 1 4026531832 1', 'malformed'],
  ])('sets aside %s', (_name, line, reason) => {
    expect(parseExecLine(line)).toEqual({ ok: false, reason });
    const { assembler } = assemble([line]);
    expect(assembler.stats[reason === 'noise' ? 'noise' : 'malformedLines']).toBe(1);
  });
});

describe('splitArgv', () => {
  it('splits at each NUL and keeps a cut last string', () => {
    expect(splitArgv(Buffer.from('a\0\0b\0')).map(String)).toEqual(['a', '', 'b']);
    expect(splitArgv(Buffer.from('a\0bc')).map(String)).toEqual(['a', 'bc']);
    expect(splitArgv(Buffer.from('\0')).map(String)).toEqual(['']);
    expect(splitArgv(Buffer.alloc(0))).toEqual([]);
  });
});

describe('renderExecScript', () => {
  const template = 'M={{HOST_MNTNS}} B={{MAX_ARGV_BYTES}} C={{MAX_ARGV_CHUNKS}} B={{MAX_ARGV_BYTES}}';
  it('fills the host mount namespace and sizes argv in chunks', () => {
    expect(renderExecScript({ hostMntns: 4026531832, maxArgvBytes: 4096 }, template)).toBe(
      'M=4026531832 B=4096 C=64 B=4096',
    );
    expect(argvChunksFor(1)).toBe(1);
    expect(argvChunksFor(64)).toBe(1);
    expect(argvChunksFor(65)).toBe(2);
  });

  it('fills every placeholder of the real template, and none sits in a comment', () => {
    const real = readFileSync(execTemplatePath(), 'utf8');
    const inComments = real.split('\n').filter((l) => l.trimStart().startsWith('//') && l.includes('{{'));
    expect(inComments).toEqual([]);
    expect(renderExecScript({ hostMntns: 1, maxArgvBytes: 100 }, real)).not.toContain('{{');
  });

  it.each([
    [{ hostMntns: 0, maxArgvBytes: 100 }, 'hostMntns'],
    [{ hostMntns: 2 ** 32, maxArgvBytes: 100 }, 'hostMntns'],
    [{ hostMntns: 1.5, maxArgvBytes: 100 }, 'hostMntns'],
    [{ hostMntns: 1, maxArgvBytes: 0 }, 'maxArgvBytes'],
    [{ hostMntns: 1, maxArgvBytes: 65537 }, 'maxArgvBytes'],
    [{ hostMntns: 1, maxArgvBytes: Number.NaN }, 'maxArgvBytes'],
  ])('refuses %o', (options, field) => {
    expect(() => renderExecScript(options, template)).toThrow(field);
  });
});
