/**
 * The agent when bpftrace cannot attach one container's readline probe: that container gets a `coverage` gap
 * with the reason, the other shells keep being captured, and the probe is retried until it attaches (then a
 * `covered` record, late). Real parts: a private containerd whose runtime is the runc wrapper, the agent
 * (in this process) and real bpftrace, behind a stand-in that refuses every script probing a file whose real
 * path contains "unattachable" while a flag file exists: since the agent pins the files it probes, bpftrace's
 * own failures for one file are hard to cause on purpose (readline/capture.hostile.node.test.ts causes them
 * with paths).
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentRecord, CoverageRecord } from '../api/records/v1.js';
import { silentLogger } from '../common/logging.js';
import { compileCommandRules } from '../common/rules/command-rules.js';
import { Agent } from './agent.js';
import { loadStandalonePlan } from './plan/standalone-policy.js';
import { StampingSink } from './records/sink.js';
import {
  Containerd,
  criAnnotations,
  tearDown,
  writeWrapperRuntimeScript,
} from '../e2e/support/containerd.js';
import { buildRootfs } from '../e2e/support/rootfs.js';
import { Terminal } from '../e2e/support/terminal.js';
import { BASH_PROMPT, openContainerShell } from '../e2e/support/typing.js';
import { until as waitFor } from '../e2e/support/wait.js';

const NS = `probe-isolation-${process.pid}`;
const POLICY = `apiVersion: containeraudit.io/v1alpha1
kind: ContainerAuditPolicy
metadata: {name: shells}
spec:
  selector: {}
  capture: {maxCommandBytes: 512}
`;

let scratch: string;
let containerd: Containerd;
let agent: Agent | undefined;
let runtime: string;
let rootfs: string;
/** While it exists, the stand-in refuses scripts that probe the unattachable bash. */
let refuse: string;
const records: AgentRecord[] = [];
const terminals: Terminal[] = [];

/** bpftrace, but for a script probing a file whose real path says "unattachable" while `flag` exists. */
function writeStandIn(path: string, flag: string): void {
  writeFileSync(
    path,
    [
      '#!/bin/sh',
      `if [ -f '${flag}' ]; then`,
      `  for p in $(grep -o 'uretprobe:[^:"]*:readline' "$1" | sed 's/^uretprobe://; s/:readline$//'); do`,
      '    case "$(readlink -f "$p")" in',
      '      *unattachable*) echo "ERROR: Could not attach the probe" >&2; exit 1 ;;',
      '    esac',
      '  done',
      'fi',
      'exec bpftrace "$@"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
}

function coverageOf(id: string, bash: string): CoverageRecord[] {
  return records.filter(
    (r): r is CoverageRecord => r.kind === 'coverage' && r.containerId === id && r.bash === bash,
  );
}

const commandTyped = (text: string): boolean =>
  records.some((r) => r.kind === 'command' && r.command === text);

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'probe-isolation-test-'));
  const spool = join(scratch, 'spool');
  const state = join(scratch, 'state');
  const policy = join(scratch, 'policy.yaml');
  const bpftrace = join(scratch, 'bpftrace');
  runtime = join(scratch, 'runtime.sh');
  rootfs = join(scratch, 'rootfs');
  refuse = join(scratch, 'refuse');
  buildRootfs(rootfs, { bash: true });
  mkdirSync(join(rootfs, 'opt', 'unattachable'), { recursive: true });
  copyFileSync(join(rootfs, 'bin', 'bash'), join(rootfs, 'opt', 'unattachable', 'bash')); // its own inode
  writeFileSync(policy, POLICY);
  writeFileSync(refuse, '');
  writeStandIn(bpftrace, refuse);
  mkdirSync(spool, { mode: 0o700 });
  writeWrapperRuntimeScript(runtime, { handoffDir: spool, dir: scratch });
  containerd = await Containerd.start();
  const plan = await loadStandalonePlan(policy, (spec) => {
    const compiled = compileCommandRules(spec);
    return compiled.ok ? { ok: true, filter: compiled.rules } : compiled;
  });
  agent = new Agent({
    spoolDir: spool,
    stateDir: state,
    plan,
    sink: new StampingSink('probe-isolation-test', (r) => records.push(r)),
    logger: silentLogger(),
    bpftrace,
  });
  await agent.start();
}, 120_000);

afterAll(async () => {
  for (const t of terminals) t.kill();
  await agent?.stop();
  await tearDown(containerd, NS, scratch);
}, 120_000);

it('reports a probe bpftrace cannot attach as a gap of its container, captures the others, and retries it', async () => {
  const run = await containerd.run(NS, {
    id: 'isolated',
    rootfs,
    args: ['sleep', '3600'],
    detach: true,
    runcBinary: runtime,
    annotations: criAnnotations({ namespace: 'shop', pod: 'isolated', container: 'shell' }),
  });
  expect(run.code).toBe(0);
  await waitFor('/bin/bash covered', () => coverageOf('isolated', '/bin/bash')[0]);

  // As `kubectl exec -it pod -- /opt/unattachable/bash` would: the agent probes it from the exec on.
  const exec = containerd.execArgs({
    id: 'isolated',
    execId: 'unattachable',
    tty: true,
    args: ['/opt/unattachable/bash', '--norc', '-i'],
  });
  const odd = Terminal.open(containerd.ctrCommand(NS, exec));
  terminals.push(odd);
  await odd.waitForOutput(BASH_PROMPT);
  const [gap] = await waitFor('the gap', () => {
    const found = coverageOf('isolated', '/opt/unattachable/bash');
    return found.length > 0 ? found : undefined;
  });
  expect(gap).toMatchObject({ status: 'gap', via: 'bash' });
  expect(gap!.reason).toContain('Could not attach the probe');
  expect(agent!.condition.errors.some((e) => e.message.includes('Could not attach the probe'))).toBe(true);

  // The container's other shell is captured all along.
  const shell = await openContainerShell(containerd, NS, 'isolated');
  terminals.push(shell);
  shell.type(': the-other-shell\nexit\n');
  await shell.waitForExit();
  await waitFor('the other shell', () => commandTyped(': the-other-shell'));

  // Once bpftrace can attach it, a retry does, and says so.
  rmSync(refuse);
  const covered = await waitFor(
    'the retry',
    () => coverageOf('isolated', '/opt/unattachable/bash').find((r) => r.status === 'covered'),
    60_000,
  );
  expect(covered).toMatchObject({ status: 'covered', late: true });
  odd.type(': read-before-the-retry\n: after-the-retry\nexit\n');
  await odd.waitForExit();
  await waitFor('the odd shell after the retry', () => commandTyped(': after-the-retry'));
}, 180_000);
