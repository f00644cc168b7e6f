/**
 * The exec capability against the real thing: Debian's bpftrace running the rendered exec script (through
 * the wrapper that mounts tracefs for it when the host has none), and real programs started in fresh mount
 * namespaces (`unshare -m`), as a container's processes are, with arguments no shell would keep as they are.
 * Every exec must come back byte for byte, with its parent and uid; execs in the host's mount namespace never.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecCapture, type ExecCaptureLoss } from './capture.js';
import type { CapturedExec } from './parse.js';
import { mountNamespaceOf } from './script.js';
import { until as waitFor } from '../../../e2e/support/wait.js';

/**
 * Not a multiple of 8: the cut falls inside a word. The environment follows argv in memory; the assembler
 * drops an exec with any byte after argv's end or the cut that is not zero, so every exec captured here also
 * proves that none of the environment left the kernel.
 */
const MAX = 1021;
const hostMntns = mountNamespaceOf('self'); // this test runs in the host's mount namespace
let dir: string;
let capture: ExecCapture;
const execs: CapturedExec[] = [];
const losses: ExecCaptureLoss[] = [];

/** Any bytes as one bash word: ANSI-C quoting, every byte escaped. */
function q(bytes: Buffer | string): string {
  return `$'${[...Buffer.from(bytes)].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('')}'`;
}

/** Runs a bash command line by exec'ing it, and returns the pid that every exec on the way shares. */
function run(words: (Buffer | string)[]): number {
  const result = spawnSync('bash', ['--norc', '--noprofile', '-c', `exec ${words.map(q).join(' ')}`], {
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', SECRET: 'environment-not-argv' },
    timeout: 30_000,
  });
  if (result.status !== 0)
    throw new Error(`${words.join(' ')} exited ${result.status}: ${String(result.stderr)}`);
  return result.pid;
}

/** Runs the words in a mount namespace of their own (unshare -m, itself exec'd in the host's). */
const inNewNamespace = (words: (Buffer | string)[]) => run(['unshare', '-m', ...words]);

/** The execs of one pid, once there are `count` of them. */
const execsOf = (pid: number, count = 1) =>
  waitFor(`${count} exec(s) of pid ${pid}`, () => {
    const mine = execs.filter((e) => e.pid === pid);
    return mine.length >= count ? mine : undefined;
  });

const hexes = (bufs: Buffer[]) => bufs.map((x) => x.toString('hex'));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'exec-node-test-'));
  capture = new ExecCapture({ hostMntns, maxArgvBytes: MAX, restartDelayMs: 200 });
  capture.on('exec', (e) => execs.push(e));
  capture.on('loss', (l) => losses.push(l));
  await capture.start();
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('exec capture through real bpftrace', () => {
  it('sees an exec started right after start() resolved', async () => {
    // the first exec of the suite: bpftrace's ready line means its tracepoint fires (README)
    const pid = inNewNamespace(['/bin/true', 'first']);
    const [first] = await execsOf(pid);
    expect(first!.argv.map(String)).toEqual(['/bin/true', 'first']);
  });

  it('records path, argv, parent and uid byte for byte', async () => {
    const args = [
      'a b',
      'tab\there',
      ' ',
      '',
      'é 日本 🗂',
      Buffer.from([0xff, 0xfe, 0x80]),
      `quotes " ' \\ $HOME \`id\` *`,
      'line\nbreak',
      '',
    ].map((a) => Buffer.from(a));
    const pid = inNewNamespace(['/bin/true', ...args]);
    const [exec] = await execsOf(pid);
    expect(exec!.filename.toString()).toBe('/bin/true');
    expect(hexes(exec!.argv)).toEqual(hexes([Buffer.from('/bin/true'), ...args]));
    expect(exec).toMatchObject({
      tid: pid,
      ppid: process.pid,
      uid: 0,
      truncated: false,
      filenameTruncated: false,
    });
    expect(exec!.mntns).not.toBe(hostMntns);
  });

  it('records a path that is not UTF-8', async () => {
    const path = Buffer.concat([Buffer.from(join(dir, 'my prog é')), Buffer.from([0xff])]);
    copyFileSync('/bin/true', path);
    chmodSync(path, 0o755);
    const pid = inNewNamespace([path, 'arg']);
    const [exec] = await execsOf(pid);
    expect(exec!.filename.toString('hex')).toBe(path.toString('hex'));
    expect(hexes(exec!.argv)).toEqual(hexes([path, Buffer.from('arg')]));
  });

  it('keeps argv of exactly maxArgvBytes whole and cuts a longer one', async () => {
    // '/bin/true' and its NUL are 10 bytes; one more argument and its NUL fill the bound exactly
    const exact = 'e'.repeat(MAX - 10 - 1);
    const [whole] = await execsOf(inNewNamespace(['/bin/true', exact]));
    expect(whole).toMatchObject({ truncated: false, argvBytes: MAX });
    expect(whole!.argv.map(String)).toEqual(['/bin/true', exact]);

    const [cut] = await execsOf(inNewNamespace(['/bin/true', 'a'.repeat(600), 'b'.repeat(600), 'c']));
    expect(cut).toMatchObject({ truncated: true, argvBytes: 10 + 601 + 601 + 2 });
    expect(cut!.argv.map(String)).toEqual(['/bin/true', 'a'.repeat(600), 'b'.repeat(MAX - 10 - 601)]);
    expect(execs.filter((e) => Buffer.concat(e.argv).includes('environment-not-argv'))).toEqual([]);
  });

  it('follows one process through several execs, with the uid each ran as', async () => {
    const pid = inNewNamespace([
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '/bin/true',
      'x',
    ]);
    const [setpriv, nobody] = await execsOf(pid, 2);
    expect(setpriv).toMatchObject({ uid: 0, ppid: process.pid });
    expect(setpriv!.filename.toString()).toBe('/usr/bin/setpriv'); // found by execvp in PATH
    expect(nobody).toMatchObject({ uid: 65534, ppid: process.pid, mntns: setpriv!.mntns });
    expect(nobody!.argv.map(String)).toEqual(['/bin/true', 'x']);
  });

  it('never sees an exec in the host mount namespace', async () => {
    const host = run(['/bin/true', 'host-namespace']);
    const pid = inNewNamespace(['/bin/true', 'after-host']);
    await execsOf(pid);
    // both came before the exec just seen: `unshare` (host namespace) and the plain /bin/true
    expect(execs.filter((e) => e.pid === pid).map((e) => e.filename.toString())).toEqual(['/bin/true']);
    expect(execs.filter((e) => e.pid === host)).toEqual([]);
    expect(execs.filter((e) => e.mntns === hostMntns)).toEqual([]);
  });

  it('reports a bpftrace that died as a loss and captures again', async () => {
    const before = capture.bpftracePid()!;
    process.kill(before, 'SIGKILL');
    const loss = await waitFor('a loss', () => losses.find((l) => l.reason === 'bpftrace-exited'));
    expect(loss.toNs! > loss.fromNs!).toBe(true);
    expect(loss.detail).toContain('signal SIGKILL');
    expect(capture.bpftracePid()).not.toBe(before);
    const [again] = await execsOf(inNewNamespace(['/bin/true', 'after-restart']));
    expect(again!.argv.map(String)).toEqual(['/bin/true', 'after-restart']);
    expect(capture.stats).toMatchObject({ restarts: 1, dropped: 0 });
    expect(losses.filter((l) => l.reason !== 'bpftrace-exited')).toEqual([]);
  });
});
