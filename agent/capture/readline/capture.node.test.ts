/**
 * ReadlineCapture against real bpftrace and a real `bash -i` on a pseudo-terminal that keeps typing: the
 * target set changes under it without losing or doubling a line, and a bpftrace killed mid-session is
 * reported as a loss and replaced.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CapturedLine } from './parse.js';
import { type CaptureLoss, ReadlineCapture } from './capture.js';
import { until as waitFor } from '../../../e2e/support/wait.js';

const bash = realpathSync('/bin/bash');
const libreadline = ['/usr/lib/x86_64-linux-gnu/libreadline.so.8', '/lib/x86_64-linux-gnu/libreadline.so.8']
  .filter((p) => existsSync(p))
  .map((p) => realpathSync(p))[0];
let home: string;
let capture: ReadlineCapture;
const lines: CapturedLine[] = [];
const losses: CaptureLoss[] = [];

/** An interactive bash on a pty whose keyboard is this test. */
function openShell(): ChildProcess {
  return spawn('script', ['-qfc', `${bash} --norc --noprofile -i`, '/dev/null'], {
    env: { HOME: home, LANG: 'C.UTF-8', INPUTRC: '/dev/null', TERM: 'dumb', PATH: '/usr/bin:/bin' },
    stdio: ['pipe', 'ignore', 'ignore'],
  });
}

function closed(shell: ChildProcess): Promise<void> {
  return new Promise((resolve) => shell.on('close', () => resolve()));
}

/** The texts captured from the shell whose lines include `marker`. */
function textsOf(marker: string): string[] {
  const pid = lines.find((l) => l.bytes.toString() === marker)?.pid;
  return lines.filter((l) => l.pid === pid).map((l) => l.bytes.toString());
}

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'readline-capture-test-'));
  capture = new ReadlineCapture({ maxCommandBytes: 4096, restartDelayMs: 200 });
  capture.on('line', (l) => lines.push(l));
  capture.on('loss', (l) => losses.push(l));
  await capture.setTargets([bash]);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  rmSync(home, { recursive: true, force: true });
});

it('changes the probed files under a typing shell without losing or doubling a line', async () => {
  expect(libreadline).toBeDefined();
  const shell = openShell();
  const done = closed(shell);
  const typed = Array.from({ length: 200 }, (_, i) => `: switch-${i}`);
  let switched: Promise<unknown> | undefined;
  for (const [i, line] of typed.entries()) {
    shell.stdin!.write(`${line}\n`);
    if (i === 60) switched = capture.setTargets([bash, libreadline!]);
    if (i === 140) switched = switched!.then(() => capture.setTargets([bash]));
    await sleep(10);
  }
  await switched;
  shell.stdin!.end('exit\n');
  await done;
  await waitFor('the last line', () => textsOf(': switch-0').includes('exit'));
  expect(textsOf(': switch-0')).toEqual([...typed, 'exit']);
  expect(capture.targets).toEqual([bash]);
}, 90_000);

it('reports a killed bpftrace as a loss and resumes capture', async () => {
  const before = capture.bpftracePid();
  expect(before).toBeDefined();
  process.kill(before!, 'SIGKILL');
  await waitFor('the loss', () => losses.some((l) => l.reason === 'bpftrace-exited'));
  await waitFor(
    'a new bpftrace',
    () => capture.bpftracePid() !== undefined && capture.bpftracePid() !== before,
  );
  const loss = losses.find((l) => l.reason === 'bpftrace-exited')!;
  expect(loss.fromNs).toBeDefined();
  expect(loss.toNs! > loss.fromNs!).toBe(true);

  const shell = openShell();
  const done = closed(shell);
  shell.stdin!.end(': after-restart\nexit\n');
  await done;
  await waitFor('the line typed after the restart', () => textsOf(': after-restart').length === 2);
}, 90_000);
