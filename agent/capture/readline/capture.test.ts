/**
 * ReadlineCapture's supervision with a stand-in for bpftrace (testdata/fake-bpftrace.ts): a bpftrace that dies
 * is restarted with the targets wanted now and the gap is one loss; one that cannot attach a target costs
 * only that target, which is left out with the reason and tried again later; and no failure stops the
 * target changes and restarts that follow it. capture.node.test.ts and
 * capture.hostile.node.test.ts run the real bpftrace.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpftraceAttachError } from '../bpftrace-process.js';
import {
  type CaptureLoss,
  type KernelDrop,
  ReadlineCapture,
  type ReadlineCaptureOptions,
  type TargetRejection,
  lineNaming,
  reasonOf,
} from './capture.js';
import {
  type FakeRule,
  fakeBpftrace,
  fakeBpftraceByScript,
  setFakeRules,
} from '../testdata/fake-bpftrace.js';
import { until as waitFor } from '../../../e2e/support/wait.js';

let dir: string;
let capture: ReadlineCapture | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'readline-capture-test-'));
});

afterEach(async () => {
  await capture?.stop();
  capture = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** A capture whose bpftrace is the fake at `bpftrace`, with what it reports collected. */
function start(bpftrace: string, options: Partial<ReadlineCaptureOptions> = {}) {
  const c = new ReadlineCapture({
    maxCommandBytes: 64,
    bpftrace,
    restartDelayMs: 20,
    retryDelayMs: 20,
    readyTimeoutMs: 5000,
    ...options,
  });
  capture = c;
  const seen = {
    losses: [] as CaptureLoss[],
    errors: [] as Error[],
    rejected: [] as TargetRejection[],
    recovered: [] as string[],
  };
  c.on('loss', (l) => seen.losses.push(l));
  c.on('error', (e) => seen.errors.push(e));
  c.on('rejected', (r) => seen.rejected.push(r));
  c.on('recovered', (t) => seen.recovered.push(t));
  return { capture: c, ...seen };
}

const runs = (): number => Number(readFileSync(join(dir, 'runs'), 'utf8'));
/** The script of the fake's nth run. */
const scriptOf = (n: number): string => readFileSync(join(dir, `script.${n}`), 'utf8');

/** As bpftrace 0.17 says it of a file that is gone. */
const gone = (path: string): FakeRule => ({
  scriptHas: path,
  stderr: `/tmp/x/script.bt:1-2: ERROR: uprobe target file '${path}' does not exist or is not executable`,
});

it('reports what the kernel dropped over a budget as it grows, from cumulative tallies in any order', async () => {
  const tallies = [
    'R',
    '@rl_dropped_lines[4026532001]: 5',
    '@rl_dropped_bytes[4026532001]: 580',
    '@rl_dropped_lines[4026532002]: 1',
    '@rl_dropped_bytes[4026532002]: 4096',
    '',
    '@rl_dropped_lines[4026532001]: 5',
    '@rl_dropped_bytes[4026532001]: 580',
    '@rl_dropped_bytes[4026532001]: 700',
    '@rl_dropped_lines[4026532001]: 6',
  ];
  const { capture } = start(fakeBpftrace(dir, [{ stdout: tallies }]));
  const drops: KernelDrop[] = [];
  capture.on('dropped', (d) => drops.push(d));
  await capture.setTargets(['/bin/bash']);
  await waitFor('the tallies', () => drops.length === 6);
  expect(drops).toEqual([
    { mntns: 4026532001, lines: 5, bytes: 0 },
    { mntns: 4026532001, lines: 0, bytes: 580 },
    { mntns: 4026532002, lines: 1, bytes: 0 },
    { mntns: 4026532002, lines: 0, bytes: 4096 },
    { mntns: 4026532001, lines: 0, bytes: 120 },
    { mntns: 4026532001, lines: 1, bytes: 0 },
  ]);
});

it('restarts a dead bpftrace, leaving out and retrying what fails to attach, and reports the gap once', async () => {
  const bpftrace = fakeBpftrace(dir, [
    { stdout: ['R'], exit: 1, stderr: 'ERROR: lost it' }, // attaches, then dies
    { stdout: [], exit: 1, stderr: 'ERROR: could not attach' }, // the restart fails, and the first retry
    { stdout: [], exit: 1, stderr: 'ERROR: could not attach' },
    { stdout: ['R'] }, // back
  ]);
  const seen = start(bpftrace);
  await seen.capture.setTargets(['/bin/bash']);
  await waitFor('the target back', () => seen.recovered.length > 0);
  expect(runs()).toBe(4);
  expect(seen.errors.map((e) => e.message)).toEqual([
    expect.stringContaining('could not attach'),
    expect.stringContaining('could not attach'),
  ]);
  expect(seen.rejected).toEqual([
    { target: '/bin/bash', reason: 'bpftrace could not attach: ERROR: could not attach', retryInMs: 20 },
  ]);
  expect(seen.recovered).toEqual(['/bin/bash']);
  expect(seen.losses).toHaveLength(1);
  expect(seen.losses[0]).toMatchObject({ reason: 'bpftrace-exited' });
  expect(seen.losses[0]!.detail).toContain('lost it');
  expect(seen.losses[0]!.toNs! > seen.losses[0]!.fromNs!).toBe(true);
  expect(seen.capture.targets).toEqual(['/bin/bash']);
});

it('takes target changes after a start that failed', async () => {
  const seen = start(fakeBpftraceByScript(dir, [gone('/gone/bash')]));
  const first = await seen.capture.setTargets(['/gone/bash']);
  expect(first.probed).toEqual([]);
  expect(first.rejected).toEqual([
    {
      target: '/gone/bash',
      reason:
        "bpftrace could not attach: ERROR: uprobe target file '/gone/bash' does not exist or is not executable",
    },
  ]);
  const second = await seen.capture.setTargets(['/bin/bash']);
  expect(second).toEqual({ probed: ['/bin/bash'], rejected: [] });
  expect(seen.capture.targets).toEqual(['/bin/bash']);
  expect(scriptOf(runs())).toContain('uretprobe:/bin/bash:readline');
});

it('restarts a bpftrace that dies after a target change failed', async () => {
  const seen = start(fakeBpftraceByScript(dir, [gone('/gone/bash')]), { retryDelayMs: 60_000 });
  await seen.capture.setTargets(['/bin/bash']);
  // Whatever this call came to, the capture must go on.
  await seen.capture.setTargets(['/bin/bash', '/gone/bash']).catch(() => undefined);
  const before = seen.capture.bpftracePid()!;
  expect(before).toBeDefined();
  process.kill(before, 'SIGKILL');
  await waitFor('a new bpftrace', () => {
    const pid = seen.capture.bpftracePid();
    return pid !== undefined && pid !== before;
  });
  await waitFor('the loss', () => seen.losses.length > 0);
  expect(seen.losses[0]).toMatchObject({ reason: 'bpftrace-exited' });
  expect(seen.capture.targets).toEqual(['/bin/bash']);
  expect(seen.capture.rejectionOf('/gone/bash')).toMatch(/does not exist/);
});

it('leaves out a target bpftrace names, and attaches the others at once', async () => {
  const seen = start(fakeBpftraceByScript(dir, [gone('/gone/bash')]));
  const outcome = await seen.capture.setTargets(['/a/bash', '/gone/bash', '/b/libreadline.so.8']);
  expect(outcome.probed).toEqual(['/a/bash', '/b/libreadline.so.8']);
  expect(outcome.rejected.map((r) => r.target)).toEqual(['/gone/bash']);
  expect(runs()).toBe(2); // no search: bpftrace said which
  expect(scriptOf(2)).not.toContain('/gone/bash');
});

it('finds a bad target among good ones by halves when bpftrace does not say which, and retries it', async () => {
  const bpftrace = fakeBpftraceByScript(dir, [
    { scriptHas: '/bad/bash', stderr: 'ERROR: Error loading program' },
  ]);
  const seen = start(bpftrace, { retryDelayMs: 300 });
  const targets = ['/a/bash', '/b/bash', '/bad/bash', '/c/bash'];
  const outcome = await seen.capture.setTargets(targets);
  expect(outcome.probed).toEqual(['/a/bash', '/b/bash', '/c/bash']);
  expect(outcome.rejected).toEqual([
    { target: '/bad/bash', reason: 'bpftrace could not attach: ERROR: Error loading program' },
  ]);
  expect(seen.rejected).toEqual([{ ...outcome.rejected[0], retryInMs: 300 }]);
  // The whole set, [a, b] (good), [bad, c] (not), [bad], [c], then the good ones together.
  expect(runs()).toBe(6);
  expect(scriptOf(6)).not.toContain('/bad/bash');

  // Once it can be attached, the retry brings it in.
  setFakeRules(dir, []);
  await waitFor('the retry', () => seen.recovered.length > 0);
  expect(seen.recovered).toEqual(['/bad/bash']);
  expect(seen.capture.targets).toEqual([...targets].sort());
  expect(seen.capture.rejectionOf('/bad/bash')).toBeUndefined();
});

it('blames a new target that does not attach within the time-out, and keeps the running probes', async () => {
  const bpftrace = fakeBpftraceByScript(dir, [{ scriptHas: '/slow/bash', stderr: '', hang: true }]);
  const seen = start(bpftrace, { readyTimeoutMs: 300, retryDelayMs: 60_000 });
  await seen.capture.setTargets(['/a/bash']);
  const pid = seen.capture.bpftracePid();
  const outcome = await seen.capture.setTargets(['/a/bash', '/slow/bash']);
  expect(outcome.rejected).toEqual([
    { target: '/slow/bash', reason: 'bpftrace did not attach within 300 ms' },
  ]);
  expect(outcome.probed).toEqual(['/a/bash']);
  expect(seen.capture.bpftracePid()).toBe(pid); // the running one stays
  expect(runs()).toBe(2);
});

it('keeps the running probes when bpftrace cannot be run any more, and reports the new target', async () => {
  const bpftrace = fakeBpftraceByScript(dir, []);
  const seen = start(bpftrace, { retryDelayMs: 100 });
  await seen.capture.setTargets(['/a/bash', '/c/bash']);
  rmSync(bpftrace);
  const outcome = await seen.capture.setTargets(['/a/bash', '/b/bash', '/c/bash']);
  expect(outcome.probed).toEqual(['/a/bash', '/c/bash']);
  expect(outcome.rejected.map((r) => r.target)).toEqual(['/b/bash']);
  expect(outcome.rejected[0]!.reason).toContain('ENOENT');
  // A smaller set cannot be started either: the running generation stays (a probe too many costs nothing),
  // nothing it probes is reported missing, and the change is tried again later.
  const smaller = await seen.capture.setTargets(['/a/bash']);
  expect(smaller).toEqual({ probed: ['/a/bash', '/c/bash'], rejected: [] });
  fakeBpftraceByScript(dir, []);
  await waitFor('the smaller set', () => seen.capture.targets.length === 1);
  expect(seen.capture.targets).toEqual(['/a/bash']);
});

it('refuses a path bpftrace cannot take, without trying it or retrying it', async () => {
  const seen = start(fakeBpftraceByScript(dir, []));
  const outcome = await seen.capture.setTargets(['/x/a:b/bash', '/a b/bash', '/bin/bash']);
  expect(outcome.probed).toEqual(['/a b/bash', '/bin/bash']);
  expect(outcome.rejected.map((r) => r.target)).toEqual(['/x/a:b/bash']);
  expect(outcome.rejected[0]!.reason).toContain("a ':' in the path");
  expect(seen.rejected).toEqual([outcome.rejected[0]]); // no retryInMs: never retried
  expect(runs()).toBe(1);
  expect(scriptOf(1)).toContain('uretprobe:"/a b/bash":readline');
});

it('forgets a rejected target that is no longer wanted', async () => {
  const seen = start(fakeBpftraceByScript(dir, [gone('/gone/bash')]), { retryDelayMs: 100 });
  await seen.capture.setTargets(['/gone/bash', '/bin/bash']);
  await seen.capture.setTargets(['/bin/bash']);
  expect(seen.capture.rejectionOf('/gone/bash')).toBeUndefined();
  const before = runs();
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(runs()).toBe(before); // no retry of it
  expect(existsSync(join(dir, `script.${before + 1}`))).toBe(false);
});

describe('reading why bpftrace failed', () => {
  const stderr = [
    'ERROR: Unknown error -1: couldn\'t set RLIMIT_MEMLOCK for bpftrace. If your program is not loading, you can try "ulimit -l 8192" to fix the problem',
    "/tmp/x/script.bt:1-2: ERROR: uprobe target file '/x/a b/bash' does not exist or is not executable",
    'ERROR: failed to detach probe: uretprobe:/bin/bash:readline',
  ].join('\n');

  it('finds the line naming a target, and no other target', () => {
    expect(lineNaming(stderr, '/x/a b/bash')).toBe(
      "ERROR: uprobe target file '/x/a b/bash' does not exist or is not executable",
    );
    expect(lineNaming(stderr, '/bin/bash')).toBeUndefined(); // detaching names every probe
    expect(lineNaming(stderr, '/a b/bash')).toBeUndefined(); // a suffix of the path named
    expect(lineNaming('ERROR: Could not resolve symbol: /y/bash:readline', '/y/bash')).toBe(
      'ERROR: Could not resolve symbol: /y/bash:readline',
    );
  });

  it('gives the telling ERROR line as the reason, not the noise', () => {
    expect(reasonOf(new BpftraceAttachError('exited', stderr))).toBe(
      "bpftrace could not attach: ERROR: uprobe target file '/x/a b/bash' does not exist or is not executable",
    );
    expect(reasonOf(new BpftraceAttachError('bpftrace did not attach within 5 ms', ''))).toBe(
      'bpftrace did not attach within 5 ms',
    );
  });
});
