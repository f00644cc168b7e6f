/**
 * ExecCapture's supervision with a stand-in for bpftrace (a shell script that prints what the test wrote for
 * each of its runs, then dies or waits): events, losses, restart after a death, and stop. No root needed;
 * exec.node.test.ts runs the real bpftrace.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecCapture, type ExecCaptureLoss, type ExecCaptureOptions } from './capture.js';
import type { CapturedExec } from './parse.js';
import { type FakeRun as Run, fakeBpftrace } from '../testdata/fake-bpftrace.js';
import { until as waitFor } from '../../../e2e/support/wait.js';

let dir: string;
let capture: ExecCapture | undefined;

const samples = readFileSync(join(import.meta.dirname, 'samples.txt'), 'utf8');
const sampleExecs = samples.split('\n').filter((l) => /^[PQAE] /.test(l));

function start(runs: Run[], options: Partial<ExecCaptureOptions> = {}) {
  const execs: CapturedExec[] = [];
  const losses: ExecCaptureLoss[] = [];
  capture = new ExecCapture({
    hostMntns: 4026531832,
    maxArgvBytes: 256,
    bpftrace: fakeBpftrace(dir, runs),
    restartDelayMs: 50,
    readyTimeoutMs: 10_000,
    ...options,
  });
  capture.on('exec', (e) => execs.push(e));
  capture.on('loss', (l) => losses.push(l));
  return { capture, execs, losses, started: capture.start() };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'exec-capture-test-'));
});

afterEach(async () => {
  await capture?.stop();
  capture = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('ExecCapture', () => {
  it('emits execs, and reports lost events and execs missing a line as losses', async () => {
    const broken = sampleExecs.slice(0, 3).filter((l) => !l.startsWith('A ')); // Q and E, its A lost
    const { execs, losses, started } = start([
      { stdout: ['Attaching 2 probes...', 'R', ...broken, 'Lost 3 events', ...sampleExecs] },
    ]);
    await started;
    await waitFor('six execs', () => execs.length === 6);
    expect(execs[0]!.argv.map(String)).toContain('a b');
    expect(losses).toEqual([
      { reason: 'incomplete-exec', count: 1 },
      { reason: 'kernel-lost-events', count: 3 },
    ]);
    expect(capture!.stats).toEqual({ execs: 6, truncated: 1, dropped: 1, restarts: 0 });
  });

  it('restarts a bpftrace that died, reports the gap, and counts what it left half-printed', async () => {
    const half = sampleExecs.slice(0, 2); // Q and A, no E
    const { capture, execs, losses, started } = start([
      { stdout: ['R', ...half], stderr: 'ERROR: boom\n', exit: 1 },
      { stdout: ['R', ...sampleExecs.slice(0, 3)] },
    ]);
    await started;
    await waitFor('the exec after the restart', () => execs.length === 1);
    expect(losses.map((l) => l.reason)).toEqual(['incomplete-exec', 'bpftrace-exited']);
    const gap = losses[1]!;
    expect(gap.toNs! > gap.fromNs!).toBe(true);
    expect(gap.detail).toMatch(/code 1.*ERROR: boom/);
    expect(capture.attached).toBe(true);
    expect(capture.stats).toMatchObject({ execs: 1, dropped: 1, restarts: 1 });
  });

  it('keeps retrying a restart that fails, and reports the whole gap once it attaches', async () => {
    const errors: Error[] = [];
    const { capture, losses, started } = start([
      { stdout: ['R'], exit: 1 },
      { stdout: [], stderr: 'ERROR: still broken\n', exit: 1 },
      { stdout: ['R'] },
    ]);
    capture.on('error', (e) => errors.push(e));
    await started;
    await waitFor('the gap', () => losses.length === 1);
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('still broken')]);
    expect(losses[0]).toMatchObject({ reason: 'bpftrace-exited' });
    expect(capture.stats.restarts).toBe(1);
  });

  it('reports a gap still open when stopped', async () => {
    const { capture, losses, started } = start([{ stdout: ['R'], exit: 1 }], { restartDelayMs: 60_000 });
    await started;
    await waitFor('bpftrace to die', () => !capture.attached);
    await capture.stop();
    expect(losses.map((l) => l.reason)).toEqual(['bpftrace-exited']);
    expect(losses[0]!.toNs! > losses[0]!.fromNs!).toBe(true);
  });

  it('rejects start when bpftrace cannot attach, and can start again', async () => {
    const { capture, started } = start([
      { stdout: [], stderr: 'ERROR: tracepoint not found: sched:sched_process_exec\n', exit: 1 },
      { stdout: ['R'] },
    ]);
    await expect(started).rejects.toThrow('tracepoint not found');
    expect(capture.attached).toBe(false);
    await capture.start();
    expect(capture.attached).toBe(true);
  });

  it('refuses bad options when constructed', () => {
    expect(() => new ExecCapture({ hostMntns: 0, maxArgvBytes: 256 })).toThrow('hostMntns');
    expect(() => new ExecCapture({ hostMntns: 1, maxArgvBytes: 10 ** 6 })).toThrow('maxArgvBytes');
  });
});
