/**
 * ReadlineCapture's supervision with a stand-in for bpftrace (testdata/fake-bpftrace.ts): a bpftrace that dies
 * is restarted with the targets wanted now, failed restarts back off and are retried, and the gap is one loss.
 * readline-capture.node.test.ts runs the real bpftrace.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CaptureLoss, ReadlineCapture } from './readline-capture.js';
import { fakeBpftrace } from './testdata/fake-bpftrace.js';
import { until as waitFor } from '../../e2e/support/wait.js';

let dir: string;
let capture: ReadlineCapture | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'readline-capture-test-'));
});

afterEach(async () => {
  await capture?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('restarts a dead bpftrace, retrying failed starts with backoff, and reports the gap once', async () => {
  const bpftrace = fakeBpftrace(dir, [
    { stdout: ['R'], exit: 1, stderr: 'ERROR: lost it' }, // attaches, then dies
    { stdout: [], exit: 1, stderr: 'ERROR: could not attach' }, // two failed restarts
    { stdout: [], exit: 1, stderr: 'ERROR: could not attach' },
    { stdout: ['R'] }, // back
  ]);
  capture = new ReadlineCapture({ maxCommandBytes: 64, bpftrace, restartDelayMs: 20, readyTimeoutMs: 5000 });
  const losses: CaptureLoss[] = [];
  const errors: Error[] = [];
  capture.on('loss', (l) => losses.push(l));
  capture.on('error', (e) => errors.push(e));
  await capture.setTargets(['/bin/bash']);
  await waitFor('the loss', () => losses.length > 0);
  expect(readFileSync(join(dir, 'runs'), 'utf8').trim()).toBe('4');
  expect(errors.map((e) => e.message)).toEqual([
    expect.stringContaining('could not attach'),
    expect.stringContaining('could not attach'),
  ]);
  expect(losses).toHaveLength(1);
  expect(losses[0]).toMatchObject({ reason: 'bpftrace-exited' });
  expect(losses[0]!.detail).toContain('lost it');
  expect(losses[0]!.toNs! > losses[0]!.fromNs!).toBe(true);
  expect(capture.targets).toEqual(['/bin/bash']);
});
