/**
 * Hostile probe paths against the real bpftrace: copies of the host's bash under directory names a container
 * can choose (`kubectl exec -- "/tmp/a b/bash"`), each a file of its own, so each needs its own uprobe. Every
 * path bpftrace's syntax can carry is probed in one bpftrace and its shell's lines are captured; a path it
 * cannot carry, and a file gone before the attach, are left out with the reason while the other shells keep
 * being captured; and a bpftrace killed after all that is restarted.
 */
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CapturedLine } from './parse.js';
import { type CaptureLoss, ReadlineCapture, type TargetRejection } from './capture.js';
import { Terminal } from '../../../e2e/support/terminal.js';
import { until as waitFor } from '../../../e2e/support/wait.js';

const bash = realpathSync('/bin/bash');
let scratch: string;
let capture: ReadlineCapture;
const lines: CapturedLine[] = [];
const losses: CaptureLoss[] = [];
const rejected: TargetRejection[] = [];

/** Paths a container may choose, each with something bpftrace's probe syntax treats specially. */
const HOSTILE_PATHS = [
  'with space/bash',
  "single'quote/bash",
  'double"quote/bash',
  'back\\slash/bash',
  'back\\"slash-quote/bash',
  'ends-in-backslash\\/bash',
  'the-file-ends-in-a/backslash\\',
  'the-file-ends-in-a/quote"',
  'tab\there/bash',
  'cr\rhere/bash',
  'ünï cödé 日本/bash',
  '$HOME ,;#%?[x]{y}!&|<>~`/bash',
];

/** A copy of the host's bash (its own inode, so its own probe) at `path` under the scratch directory. */
function bashAt(path: string): string {
  const file = join(scratch, path);
  mkdirSync(dirname(file), { recursive: true });
  copyFileSync(bash, file);
  return file;
}

/** Runs `path` as an interactive shell on a pty, types `marker` and exit; resolves once it exited. */
async function typeInto(path: string, marker: string): Promise<void> {
  const terminal = Terminal.open([path, '--norc', '--noprofile', '-i'], {
    HOME: scratch,
    LANG: 'C.UTF-8',
    INPUTRC: '/dev/null',
    TERM: 'dumb',
    PATH: '/usr/bin:/bin',
    PS1: 'ready> ', // the default names the program, whose name is the test's
  });
  await terminal.waitForOutput(/ready> /);
  terminal.type(`${marker}\nexit\n`);
  await terminal.waitForExit();
}

const captured = (marker: string): boolean => lines.some((l) => l.bytes.toString() === marker);

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'readline-hostile-test-'));
  capture = new ReadlineCapture({ maxCommandBytes: 4096, restartDelayMs: 200, retryDelayMs: 60_000 });
  capture.on('line', (l) => lines.push(l));
  capture.on('loss', (l) => losses.push(l));
  capture.on('rejected', (r) => rejected.push(r));
});

afterAll(async () => {
  await capture?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

it('probes a bash under every directory name bpftrace can quote, in one bpftrace', async () => {
  const paths = HOSTILE_PATHS.map(bashAt);
  const outcome = await capture.setTargets(paths);
  expect(outcome.rejected).toEqual([]);
  expect(outcome.probed).toEqual([...paths].sort());
  // R comes a few ms before the probes fire (capture.ts): give them that.
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const [i, path] of paths.entries()) await typeInto(path, `: hostile-${i}`);
  await waitFor('every shell', () => paths.every((_, i) => captured(`: hostile-${i}`)), 20_000).catch(
    () => undefined,
  );
  const missing = HOSTILE_PATHS.filter((_, i) => !captured(`: hostile-${i}`));
  expect(missing).toEqual([]);
}, 120_000);

it('leaves out a path bpftrace cannot take and a file gone before the attach; the other shells are captured', async () => {
  const good = bashAt('good one/bash');
  const colon = bashAt('a:b/bash');
  const star = bashAt('st*r/bash');
  const gone = bashAt('gone soon/bash');
  rmSync(gone);
  const outcome = await capture.setTargets([good, colon, star, gone]);
  expect(outcome.probed).toEqual([good]);
  const reasons = new Map(outcome.rejected.map((r) => [r.target, r.reason]));
  expect([...reasons.keys()].sort()).toEqual([colon, star, gone].sort());
  expect(reasons.get(colon)).toContain("a ':' in the path");
  expect(reasons.get(star)).toContain('wildcard');
  expect(reasons.get(gone)).toMatch(/does not exist/);
  // Refused paths are never retried; a file that failed to attach is.
  expect(rejected.find((r) => r.target === colon)?.retryInMs).toBeUndefined();
  expect(rejected.find((r) => r.target === gone)?.retryInMs).toBe(60_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await typeInto(good, ': good-after-isolation');
  await waitFor('the good shell', () => captured(': good-after-isolation'), 20_000);
}, 120_000);

it('restarts a bpftrace killed after targets were left out, and keeps capturing', async () => {
  const before = capture.bpftracePid();
  expect(before).toBeDefined();
  process.kill(before!, 'SIGKILL');
  await waitFor('the loss', () => losses.some((l) => l.reason === 'bpftrace-exited'), 60_000);
  const now = capture.bpftracePid();
  expect(now).toBeDefined();
  expect(now).not.toBe(before);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const [good] = capture.targets;
  await typeInto(good!, ': after-the-restart');
  await waitFor('the shell after the restart', () => captured(': after-the-restart'), 20_000);
}, 120_000);
