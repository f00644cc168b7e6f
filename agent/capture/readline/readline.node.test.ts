/**
 * The readline capability against the real thing: Debian's bpftrace running the rendered script with a
 * uretprobe on the host's bash, and a real `bash -i` on a pseudo-terminal (util-linux `script`) reading what
 * a person would type. Every line readline returned must come back byte for byte.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CapturedLine, ReadlineAssembler, parseReadlineLine } from './parse.js';
import { chunksFor, renderReadlineScript } from './script.js';

const MAX = 4096;
const bash = realpathSync('/bin/bash');
let dir: string;
let bpftrace: ChildProcess;
const captured: CapturedLine[] = [];
let ready = false;

/** Types `input` into an interactive bash on a pty and waits for it to exit. */
function typeIntoBash(input: Buffer): void {
  const result = spawnSync('script', ['-qfc', `${bash} --norc --noprofile -i`, '/dev/null'], {
    input,
    env: { HOME: dir, LANG: 'C.UTF-8', INPUTRC: '/dev/null', TERM: 'dumb', PATH: '/usr/bin:/bin' },
    timeout: 30_000,
  });
  if (result.status !== 0) throw new Error(`bash on a pty exited ${result.status}: ${String(result.stderr)}`);
}

/** The lines captured for the shell whose first line was `marker`. */
async function linesOf(marker: string, count: number): Promise<Buffer[]> {
  for (let waited = 0; waited < 20_000; waited += 100) {
    const first = captured.find((c) => c.bytes.toString() === marker);
    if (first) {
      const mine = captured.filter((c) => c.pid === first.pid).map((c) => c.bytes);
      if (mine.length >= count) return mine;
    }
    await sleep(100);
  }
  throw new Error(
    `lines of ${marker} not captured: ${captured.map((c) => JSON.stringify(c.bytes.toString())).join(', ')}`,
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'readline-node-test-'));
  const script = join(dir, 'readline.bt');
  writeFileSync(script, renderReadlineScript([bash], MAX));
  const assembler = new ReadlineAssembler();
  bpftrace = spawn('bpftrace', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let rest = '';
  bpftrace.stdout!.setEncoding('utf8').on('data', (data: string) => {
    const lines = (rest + data).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      const parsed = parseReadlineLine(line);
      if (parsed.ok && parsed.event.kind === 'ready') ready = true;
      const done = parsed.ok ? assembler.push(parsed.event) : undefined;
      if (done) captured.push(done);
    }
  });
  // R says bpftrace's output loop runs; its uprobes fire a few ms later (agent/capture/readline/README.md), so
  // type until a line comes back.
  for (let waited = 0; !ready; waited += 50) {
    if (waited > 30_000 || bpftrace.exitCode !== null) throw new Error('bpftrace did not report ready');
    await sleep(50);
  }
  for (let attempt = 0; !captured.some((c) => c.bytes.toString().startsWith(': ready-')); attempt++) {
    if (attempt > 40) throw new Error('no line captured after ready');
    typeIntoBash(Buffer.from(`: ready-${attempt}\nexit\n`));
    await sleep(100);
  }
}, 60_000);

afterAll(() => {
  bpftrace?.kill('SIGINT');
  rmSync(dir, { recursive: true, force: true });
});

describe('readline capture through real bpftrace', () => {
  it('records every line a person types, byte for byte', async () => {
    // A literal tab: readline's quoted-insert (C-v) then Tab. The pty's line discipline takes the first C-v
    // as its own "literal next", so a person (and this test) types C-v twice.
    const LITERAL_TAB = '\x16\x16\t';
    const long = `: ${'y'.repeat(250)}`; // longer than bpftrace's 200-byte strings
    const typed = Buffer.concat([
      Buffer.from(': marker-exact\n'),
      Buffer.from(`printf '%s\\n' "double \\"quoted\\"" 'single' \`echo back\` $((1+2))\n`),
      Buffer.from(`echo a${LITERAL_TAB}b\n`),
      Buffer.from('echo é 日本 🗂\n'),
      Buffer.from([...Buffer.from('echo '), 0xff, 0xfe, ...Buffer.from(' not utf-8\n')]),
      Buffer.from(`${long}\n`),
      Buffer.from('echo one \\\ntwo\n'),
      Buffer.from('cat <<EOF\nhere line\nEOF\n'),
      Buffer.from('\n'),
      Buffer.from('exit\n'),
    ]);
    const expected = [
      ': marker-exact',
      `printf '%s\\n' "double \\"quoted\\"" 'single' \`echo back\` $((1+2))`,
      'echo a\tb',
      'echo é 日本 🗂',
      Buffer.from([...Buffer.from('echo '), 0xff, 0xfe, ...Buffer.from(' not utf-8')]),
      long,
      'echo one \\',
      'two',
      'cat <<EOF',
      'here line',
      'EOF',
      '',
      'exit',
    ].map((e) => (typeof e === 'string' ? Buffer.from(e) : e));
    typeIntoBash(typed);
    const lines = await linesOf(': marker-exact', expected.length);
    expect(lines.map((b) => b.toString('hex'))).toEqual(expected.map((b) => b.toString('hex')));
  });

  it('stops reading a line longer than maxCommandBytes and marks it truncated (the record cuts it)', async () => {
    const long = `: ${'z'.repeat(MAX + 500)}`;
    typeIntoBash(Buffer.from(`: marker-long\n${long}\nexit\n`));
    await linesOf(': marker-long', 3);
    const first = captured.find((c) => c.bytes.toString() === ': marker-long')!;
    const cut = captured.find((c) => c.pid === first.pid && c.bytes.toString().startsWith(': zzz'))!;
    expect(cut.truncated).toBe(true);
    // attributed by mount namespace: these shells run in ours
    expect(cut.mntns).toBe(statSync('/proc/self/ns/mnt').ino);
    // The probe reads chunksFor(MAX) chunks of 64 bytes; the record is cut to its container's limit later
    // (agent/records/build.ts), once.
    expect(cut.bytes.equals(Buffer.from(long).subarray(0, chunksFor(MAX) * 64))).toBe(true);
  });
});
