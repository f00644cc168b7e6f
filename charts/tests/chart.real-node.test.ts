/**
 * The chart on a real node, installed and used exactly as users do it: `helm install` with the images built
 * from the Dockerfiles in images/, the runtime handler added to containerd from the snippet the chart publishes,
 * audited pods scheduled by the scheduler and started by the kubelet, commands typed through
 * `kubectl exec -it` (the API server, the kubelet, containerd's streaming server). The real-node tier
 * (e2e/jest/real-node-setup.mjs) brings the node up and imports the images.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { PLAN_FILE } from '../../agent/cluster/plan-client.js';
import { HEARTBEAT_FILE } from '../../agent/handoff/spool.js';
import type { AuditRecord } from '../../api/v1alpha1/auditrecord.js';
import {
  createAuditPolicy,
  kubectl,
  kubectlOk,
  listAuditRecords,
  testKubeConfig,
} from '../../e2e/support/cluster.js';
import { helmOk } from '../../e2e/support/helm.js';
import { buildImageArchive } from '../../e2e/support/image.js';
import { CHART_DIR, KUBECTL } from '../../e2e/support/paths.js';
import { buildRootfs } from '../../e2e/support/rootfs.js';
import { CTRL_D, Terminal } from '../../e2e/support/terminal.js';
import { until } from '../../e2e/support/wait.js';
import { NODE_NAME, SYSTEM_NS, TEST_NODE_DIR, nodeScript } from '../../e2e/support/real-node.js';

const NODE_DIR = TEST_NODE_DIR;
const RELEASE = 'audit';
const SHOP = 'shop';
/** A namespace that enforces the `restricted` Pod Security Standard. */
const VAULT = 'vault';
const POLICY = 'shop-shells';
/** Two workload images: the same shell in each, in layers of their own (so distinct files on the node). */
const IMAGE_A = 'container-auditor.local/shell-a:1';
const IMAGE_B = 'container-auditor.local/shell-b:1';
const BASH_PROMPT = /bash-[\d.]+[#$] /;

let scratch: string;
let custom: CustomObjectsApi;

async function nodeScriptOk(args: string[]): Promise<void> {
  const r = await nodeScript(args);
  if (r.code !== 0) throw new Error(`node.sh ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
}

/** The workload images: busybox and the host's bash (dynamic, readline inside), in one layer each. */
async function importWorkloadImages(): Promise<void> {
  const root = join(scratch, 'shell-root');
  buildRootfs(root, { bash: true });
  const archives = [IMAGE_A, IMAGE_B].map((ref, i) => {
    // Image B's layer differs by one file: the same bash, another snapshot, another inode.
    writeFileSync(join(root, 'etc', 'image'), `${ref}\n`);
    return buildImageArchive(root, join(scratch, `shell-${i}.tar`), { ref, cmd: ['sleep', 'infinity'] }).path;
  });
  await nodeScriptOk(['import', ...archives]);
}

/** A pod of the audited RuntimeClass, created now and Ready; `container` adds to its one container `app`. */
async function auditedPod(
  name: string,
  image: string,
  options: { namespace?: string; container?: object; securityContext?: object } = {},
): Promise<void> {
  const namespace = options.namespace ?? SHOP;
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      runtimeClassName: 'container-auditor',
      terminationGracePeriodSeconds: 1,
      ...(options.securityContext ? { securityContext: options.securityContext } : {}),
      containers: [
        {
          name: 'app',
          image,
          imagePullPolicy: 'Never',
          command: ['sleep', 'infinity'],
          ...options.container,
        },
      ],
    },
  };
  await kubectlOk(['apply', '-f', '-'], JSON.stringify(pod));
  await kubectlOk(['wait', '-n', namespace, '--for=condition=Ready', `pod/${name}`, '--timeout=120s']);
}

function nodeKubectl(args: string[]): string[] {
  return [KUBECTL, '--kubeconfig', join(NODE_DIR, 'kubeconfig'), ...args];
}

/** `kubectl exec -it POD -- bash -i` on a terminal of its own, the lines typed one by one, then Ctrl-D. */
async function typeInto(pod: string, lines: string[], namespace = SHOP, container = 'app'): Promise<void> {
  const terminal = Terminal.open([
    KUBECTL,
    '--kubeconfig',
    join(NODE_DIR, 'kubeconfig'),
    'exec',
    '-it',
    '-n',
    namespace,
    pod,
    '-c',
    container,
    '--',
    'env',
    'LANG=C.UTF-8',
    'INPUTRC=/dev/null',
    'TERM=dumb',
    'HOME=/root',
    'bash',
    '--norc',
    '--noprofile',
    '-i',
  ]);
  try {
    await terminal.waitForOutput(BASH_PROMPT, 60_000);
    for (const [i, line] of lines.entries()) {
      terminal.type(`${line}\n`);
      await terminal.waitForOutput(BASH_PROMPT, 20_000, i + 2);
    }
    terminal.type(CTRL_D);
    expect((await terminal.waitForExit(30_000)).code).toBe(0);
  } finally {
    terminal.kill();
  }
}

interface PolicyStatus {
  auditedContainers?: number;
  nodes?: { name: string; planVersion?: string; auditedContainers?: number; probesAttached?: number }[];
}

async function policyStatus(): Promise<PolicyStatus> {
  return JSON.parse(
    (await kubectlOk(['get', 'containerauditpolicy', POLICY, '-o', 'jsonpath={.status}'])) || '{}',
  ) as PolicyStatus;
}

/**
 * What the node's agent last reported, once it reports `audited` containers and at least `probes` probes
 * (through the leading operator; its reports follow its state by a few seconds).
 */
async function agentReports(
  audited: number,
  probes = 0,
): Promise<NonNullable<PolicyStatus['nodes']>[number]> {
  return until(
    `the agent to report ${audited} audited containers and ${probes} probes`,
    async () => {
      const node = (await policyStatus()).nodes?.find((n) => n.name === NODE_NAME);
      return node?.auditedContainers === audited && (node.probesAttached ?? 0) >= probes ? node : undefined;
    },
    90_000,
  );
}

/** Warning Events saying a container of the pod was audited late (commands before that may be missing). */
async function lateAudits(pod: string): Promise<string[]> {
  const out = await kubectlOk([
    'get',
    'events',
    '-n',
    SHOP,
    '--field-selector',
    `involvedObject.name=${pod},reason=AuditedLate`,
    '-o',
    'name',
  ]);
  return out.split('\n').filter(Boolean);
}

async function records(): Promise<AuditRecord[]> {
  return [...(await listAuditRecords(custom, SHOP)), ...(await listAuditRecords(custom, VAULT))];
}

/** Every command recorded in SHOP, with the pod it was recorded for. */
async function recordedCommands(): Promise<{ pod: string; command: string }[]> {
  return (await records()).flatMap((r) =>
    (r.status?.commands ?? []).map((c) => ({ pod: r.spec.pod.name, command: c.command })),
  );
}

/** Every line typed so far in this file: checked again after each disruption (nothing lost, nothing twice). */
const typedSoFar: { pod: string; command: string }[] = [];

/** Waits until every line is recorded (or fails with what was), then a little longer for duplicates. */
async function expectRecordedOnce(expected: { pod: string; command: string }[]): Promise<void> {
  await until(
    `the commands ${JSON.stringify(expected)} as AuditRecords`,
    async () => {
      // A CRD this new may still answer 429 ("storage is (re)initializing") for a moment: ask again.
      const got = await recordedCommands().catch(() => []);
      return expected.every((e) => got.some((g) => g.pod === e.pod && g.command === e.command));
    },
    60_000,
  ).catch(async (error: Error) => {
    throw new Error(
      `${error.message}\nrecorded: ${JSON.stringify(await recordedCommands())}\n${await agentLogs()}`,
    );
  });
  typedSoFar.push(...expected.filter((e) => !typedSoFar.some((t) => t.command === e.command)));
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const got = await recordedCommands();
  for (const e of typedSoFar) expect(got.filter((g) => g.command === e.command)).toEqual([e]);
}

async function agentLogs(): Promise<string> {
  const r = await kubectl([
    'logs',
    '-n',
    SYSTEM_NS,
    `daemonset/${RELEASE}-container-auditor-agent`,
    '--tail=60',
  ]);
  return `agent log:\n${r.stdout}${r.stderr}`;
}

beforeAll(async () => {
  if (!NODE_DIR)
    throw new Error('CONTAINER_AUDITOR_TEST_NODE_DIR is not set: run this test in the real-node tier');
  scratch = mkdtempSync(join(tmpdir(), 'ca-real-node-'));
  custom = testKubeConfig().makeApiClient(CustomObjectsApi);

  // The agent's namespace must allow privileged pods (Pod Security Admission is on in the API server).
  await kubectlOk(['create', 'namespace', SYSTEM_NS]);
  await kubectlOk(['label', 'namespace', SYSTEM_NS, 'pod-security.kubernetes.io/enforce=privileged']);
  // Everything the agent and the wrapper keep on the node, inside the node's directory (the defaults are
  // the host's /run and /var/lib; containerd's are private to this node).
  const hostPaths = {
    handoff: join(NODE_DIR, 'run', 'container-auditor', 'handoff'),
    state: join(NODE_DIR, 'agent-state'),
    bundles: join(NODE_DIR, 'run', 'containerd', 'io.containerd.runtime.v2.task'),
    snapshots: join(NODE_DIR, 'containerd', 'root', 'io.containerd.snapshotter.v1.overlayfs'),
  };
  mkdirSync(hostPaths.state, { recursive: true });
  await helmOk(
    [
      'install',
      RELEASE,
      CHART_DIR,
      '--namespace',
      SYSTEM_NS,
      '--set',
      'nodeSetup.installWrapper=true',
      '--set',
      `nodeSetup.hostBinDir=${join(NODE_DIR, 'bin')}`,
      ...Object.entries(hostPaths).flatMap(([k, v]) => ['--set', `agent.hostPaths.${k}=${v}`]),
      '--set',
      'image.pullPolicy=Never',
      '--wait',
      '--timeout',
      '5m',
    ],
    { kubeconfig: join(NODE_DIR, 'kubeconfig') },
  );
  // What the chart's NOTES tell a node's administrator to add to containerd's configuration.
  const snippet = join(scratch, 'containerd-runtime.toml');
  writeFileSync(
    snippet,
    await kubectlOk([
      'get',
      'configmap',
      '-n',
      SYSTEM_NS,
      `${RELEASE}-container-auditor-node-setup`,
      '-o',
      'jsonpath={.data.containerd-runtime\\.toml}',
    ]),
  );
  await nodeScriptOk(['runtime-handler', snippet]);
  await importWorkloadImages();
  await kubectlOk(['create', 'namespace', SHOP]);
  await kubectlOk(['create', 'namespace', VAULT]);
  await kubectlOk(['label', 'namespace', VAULT, 'pod-security.kubernetes.io/enforce=restricted']);
  await createAuditPolicy(custom, POLICY, {
    selector: {
      namespaceSelector: {
        matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [SHOP, VAULT] }],
      },
    },
    capture: { interactiveShells: true, execs: true },
  });
}, 900_000);

afterAll(async () => {
  if (!NODE_DIR) return;
  await kubectl(['delete', 'namespace', SHOP, VAULT, '--timeout=120s']);
  await kubectl(['delete', 'containerauditpolicy', POLICY, '--ignore-not-found']);
  await helmOk(['uninstall', RELEASE, '--namespace', SYSTEM_NS, '--wait', '--timeout', '3m'], {
    kubeconfig: join(NODE_DIR, 'kubeconfig'),
  }).catch(() => undefined);
  await kubectl(['delete', 'namespace', SYSTEM_NS, '--timeout=120s']);
  rmSync(scratch, { recursive: true, force: true });
}, 300_000);

/** Host pids of the node's processes whose command line has `needle` (the kubelet's containers are ours). */
function hostProcesses(needle: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0').join(' ').includes(needle);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Fields of /proc/<pid>/status. */
function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

interface ReleasePod {
  metadata: { name: string };
  spec: { hostPID?: boolean; volumes: { name: string }[] };
  status: { conditions?: { type: string; status: string }[] };
}

/** The operator pod holding the Lease (its identity is `<pod>_<boot>_<random>`), '' when none does. */
async function leaderPod(): Promise<string> {
  const identity = await kubectlOk([
    'get',
    'lease',
    '-n',
    SYSTEM_NS,
    `${RELEASE}-container-auditor-operator`,
    '-o',
    'jsonpath={.spec.holderIdentity}',
  ]);
  return identity.split('_')[0] ?? '';
}

/** The release's pods of one component (operator, agent), as the API server has them. */
async function releasePods(component: string): Promise<{ items: ReleasePod[] }> {
  const out = await kubectlOk([
    'get',
    'pods',
    '-n',
    SYSTEM_NS,
    '-l',
    `app.kubernetes.io/component=${component}`,
    '-o',
    'json',
  ]);
  return JSON.parse(out) as { items: ReleasePod[] };
}

describe('the chart installed by helm on a real node', () => {
  it('the operator replicas run as 65532 with no capabilities, Ready by their probes; one holds the Lease; no API refusal', async () => {
    const pods = await releasePods('operator');
    expect(pods.items).toHaveLength(2);
    for (const pod of pods.items)
      expect(pod.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const pids = hostProcesses('/app/cli/container-auditor.js operator');
    expect(pids).toHaveLength(2);
    for (const pid of pids) {
      const status = procStatus(pid);
      expect(status.Uid!.split(/\s+/)).toEqual(['65532', '65532', '65532', '65532']);
      expect(status.CapEff).toBe('0000000000000000');
      expect(status.NoNewPrivs).toBe('1');
    }
    expect(pods.items.map((p) => p.metadata.name)).toContain(await leaderPod());
    for (const pod of pods.items)
      expect(await kubectlOk(['logs', '-n', SYSTEM_NS, pod.metadata.name])).not.toMatch(/forbidden/i);
  }, 120_000);

  it('the agent is root and privileged in the host pid namespace without an API token, Ready once it has its plan', async () => {
    const pod = await releasePods('agent');
    expect(pod.items).toHaveLength(1);
    const [agent] = pod.items;
    expect(agent!.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(agent!.spec.hostPID).toBe(true);
    // Its only token is the projected one for the operator's audience: no kube-api-access volume.
    expect(agent!.spec.volumes.filter((v) => v.name.startsWith('kube-api-access'))).toEqual([]);
    const [pid] = hostProcesses('/app/cli/container-auditor.js agent');
    expect(procStatus(pid!).Uid!.split(/\s+/)[0]).toBe('0');
    // What it keeps on the node, in the chart's hostPaths: the plan, and the heartbeat the wrapper reads.
    expect(existsSync(join(NODE_DIR, 'agent-state', PLAN_FILE))).toBe(true);
    expect(existsSync(join(NODE_DIR, 'run', 'container-auditor', 'handoff', HEARTBEAT_FILE))).toBe(true);
  }, 120_000);
});

describe('the chart on a real node, through helm install and kubectl exec -it', () => {
  it('audits a pod created after the agent pod is Ready: typed commands are AuditRecords, exact, once each', async () => {
    await auditedPod('late', IMAGE_A);
    // Probed before its first command could be typed: the container start waited for the agent.
    expect(await lateAudits('late')).toEqual([]);
    const lines = ['echo typed-after-the-agent', 'cd /tmp && pwd', 'printf "%s\\n" "two  spaces"'];
    await typeInto('late', lines);
    await expectRecordedOnce(lines.map((command) => ({ pod: 'late', command })));
  }, 300_000);

  it('two pods of one image and one of another: every command once, in its own pod', async () => {
    await Promise.all([auditedPod('a1', IMAGE_A), auditedPod('a2', IMAGE_A), auditedPod('b1', IMAGE_B)]);
    for (const pod of ['a1', 'a2', 'b1']) expect(await lateAudits(pod)).toEqual([]);
    // Four audited containers (late, a1, a2, b1), two distinct bash files: one probe each.
    expect((await agentReports(4, 2)).probesAttached).toBe(2);
    const typed = ['a1', 'a2', 'b1'].map((pod) => ({ pod, command: `echo typed-in-${pod}` }));
    for (const { pod, command } of typed) await typeInto(pod, [command]);
    await expectRecordedOnce(typed);
  }, 300_000);
  it('kubectl exec POD -- program: one exec record for the program', async () => {
    const marker = `exec-marker-${process.pid}`;
    await kubectlOk(['exec', '-n', SHOP, 'late', '--', '/bin/echo', marker]);
    const found = await until(
      'an exec record of the program',
      async () => {
        const execs = (await records().catch(() => [])).filter(
          (r) => r.spec.pod.name === 'late' && r.spec.session.kind === 'exec',
        );
        const hits = execs.flatMap((r) =>
          (r.status?.commands ?? []).filter((c) => c.command.includes(marker)),
        );
        return hits.length > 0 ? hits : undefined;
      },
      60_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(found).toHaveLength(1);
    expect(found[0]!.command).toBe(`/bin/echo ${marker}`);
  }, 120_000);

  it("a shell as the container's main process (kubectl run -it's pod), typed into through kubectl attach", async () => {
    await auditedPod('console', IMAGE_A, {
      container: {
        command: ['bash', '--norc', '--noprofile', '-i'],
        stdin: true,
        tty: true,
        env: [
          { name: 'LANG', value: 'C.UTF-8' },
          { name: 'INPUTRC', value: '/dev/null' },
          { name: 'TERM', value: 'dumb' },
          { name: 'HOME', value: '/root' },
        ],
      },
    });
    expect(await lateAudits('console')).toEqual([]);
    const terminal = Terminal.open(nodeKubectl(['attach', '-it', '-n', SHOP, 'console', '-c', 'app']));
    try {
      await terminal.waitForOutput(/If you don't see a command prompt|bash-[\d.]+# /, 60_000);
      terminal.type('echo attached-one\n');
      await terminal.waitForOutput(/\r?\nattached-one\r?\n/, 20_000);
    } finally {
      terminal.kill();
    }
    await expectRecordedOnce([{ pod: 'console', command: 'echo attached-one' }]);
  }, 180_000);

  it('a pod in a namespace that enforces the restricted Pod Security Standard is audited too (uid 1000)', async () => {
    await auditedPod('locked', IMAGE_A, {
      namespace: VAULT,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      container: { securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } },
    });
    await typeInto('locked', ['echo restricted-one'], VAULT);
    await expectRecordedOnce([{ pod: 'locked', command: 'echo restricted-one' }]);
    const record = (await listAuditRecords(custom, VAULT)).find((r) => r.spec.pod.name === 'locked');
    expect(record?.status?.commands?.[0]?.uid).toBe(1000);
  }, 180_000);

  it('an ephemeral container from kubectl debug is audited like the others', async () => {
    await kubectlOk([
      'debug',
      '-n',
      SHOP,
      'late',
      `--image=${IMAGE_A}`,
      '--image-pull-policy=Never',
      '-c',
      'dbg',
      '--',
      'sleep',
      'infinity',
    ]);
    await until(
      'the ephemeral container to run',
      async () => {
        const pod = JSON.parse(await kubectlOk(['get', 'pod', '-n', SHOP, 'late', '-o', 'json'])) as {
          status: { ephemeralContainerStatuses?: { name: string; state?: { running?: unknown } }[] };
        };
        return (pod.status.ephemeralContainerStatuses ?? []).some(
          (c) => c.name === 'dbg' && c.state?.running,
        );
      },
      120_000,
    );
    await typeInto('late', ['echo typed-in-the-debug-container'], SHOP, 'dbg');
    await expectRecordedOnce([{ pod: 'late', command: 'echo typed-in-the-debug-container' }]);
  }, 240_000);

  it('the agent pod deleted: the DaemonSet brings it back, the running containers stay audited, nothing twice', async () => {
    await kubectlOk(['delete', 'pod', '-n', SYSTEM_NS, '-l', 'app.kubernetes.io/component=agent', '--wait']);
    await kubectlOk([
      'rollout',
      'status',
      '-n',
      SYSTEM_NS,
      `daemonset/${RELEASE}-container-auditor-agent`,
      '--timeout=180s',
    ]);
    await typeInto('late', ['echo after-the-agent-came-back']);
    await expectRecordedOnce([{ pod: 'late', command: 'echo after-the-agent-came-back' }]);
    // The time it was away is a loss, on the policy that audits the node's containers.
    await until(
      'the agent-down loss in the policy status',
      async () =>
        (await kubectlOk(['get', 'containerauditpolicy', POLICY, '-o', 'json'])).includes('agent-down'),
      60_000,
    );
  }, 300_000);

  it('the leading operator pod deleted: the other replica leads, and what is typed meanwhile is recorded once', async () => {
    const leader = await leaderPod();
    await kubectlOk(['delete', 'pod', '-n', SYSTEM_NS, leader, '--wait=false']);
    await typeInto('a1', ['echo while-the-leader-changed']);
    await until(
      'another replica to lead',
      async () => {
        const holder = await leaderPod();
        return holder !== '' && holder !== leader;
      },
      120_000,
    );
    await expectRecordedOnce([{ pod: 'a1', command: 'echo while-the-leader-changed' }]);
  }, 300_000);

  it('containerd restarted: the running containers stay audited', async () => {
    await nodeScriptOk(['restart', 'containerd']);
    await typeInto('b1', ['echo after-containerd-restarted']);
    await expectRecordedOnce([{ pod: 'b1', command: 'echo after-containerd-restarted' }]);
  }, 300_000);

  it('helm upgrade with changed values rolls the agent and keeps auditing; helm uninstall keeps the records and leaves nothing running', async () => {
    const before = (await records()).length;
    await helmOk([
      'upgrade',
      RELEASE,
      CHART_DIR,
      '--namespace',
      SYSTEM_NS,
      '--reuse-values',
      '--set',
      'agent.logLevel=debug',
      '--wait',
      '--timeout',
      '5m',
    ]);
    const args = await kubectlOk([
      'get',
      'daemonset',
      '-n',
      SYSTEM_NS,
      `${RELEASE}-container-auditor-agent`,
      '-o',
      'jsonpath={.spec.template.spec.containers[0].args}',
    ]);
    expect(args).toContain('--log-level=debug');
    await typeInto('a2', ['echo after-the-upgrade']);
    await expectRecordedOnce([{ pod: 'a2', command: 'echo after-the-upgrade' }]);

    await helmOk(['uninstall', RELEASE, '--namespace', SYSTEM_NS, '--wait', '--timeout', '3m']);
    await until(
      'the release pods to be gone',
      async () => (await kubectlOk(['get', 'pods', '-n', SYSTEM_NS, '-o', 'name'])).trim() === '',
      120_000,
    );
    expect(hostProcesses('/app/cli/container-auditor.js')).toEqual([]);
    // The audit trail stays: CRDs and every record.
    expect((await records()).length).toBeGreaterThanOrEqual(before);
    const got = await recordedCommands();
    for (const e of typedSoFar) expect(got.filter((g) => g.command === e.command)).toEqual([e]);
  }, 600_000);
});
