/**
 * The chart's workloads, run: `helm install` into a private control plane creates the operator's Deployment
 * and the agent's DaemonSet, and since no kubelet runs, this test is the kubelet. It creates a Node and, for
 * each workload, the Pod its controller would (name, labels, spec.nodeName), then runs the container exactly
 * as the API server holds the Pod with the host's runc (e2e/support/pod-runner.ts: the image emulated from
 * images/<name>/Dockerfile's ENTRYPOINT, USER, WORKDIR, ENV over the host's /usr and the repository at /app):
 * the chart's args, env, mounts, security contexts, RBAC, generated TLS certificate and tokens, as they are.
 *
 * - the operator (non-root 65532, read-only root, no capabilities, no_new_privs, in-cluster config from the
 *   default ServiceAccount token): ready by its own readiness probe, holds the Lease, and its log has no
 *   `forbidden` (the chart's RBAC suffices);
 * - the agent (privileged, hostPID, root, no API token mounted): reaches the operator by the Service name in
 *   its args (an /etc/hosts entry stands for cluster DNS) through TLS verified with the Secret's ca.crt item
 *   only, with its projected token (the chart's audience) bound to its Pod: the operator's TokenReview and
 *   node binding accept it, and the agent gets its node's plan, keeps it in its state hostPath and writes its
 *   heartbeat into the hand-off hostPath;
 * - a ContainerAuditPolicy then shows node chart-node with the plan version the agent applied: the whole loop.
 *
 * The agent's hostPaths are moved into a scratch directory with the chart's own values (agent.hostPaths.*),
 * so a developer's /run/container-auditor and /var/lib/container-auditor are never touched. One operator
 * replica: pods share the host's network namespace here, so two would contend for the same ports.
 *
 * Node tier: root, runc, bpftrace, and what `make build` and e2e/cluster/build.sh leave (dist/, helm,
 * kube-apiserver, etcd). Ports 8443 and 8081 (the chart's) must be free on the host.
 */
import { NODE_FLAGS } from '../../cli/node-flags.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Container,
  type V1DaemonSet,
  type V1Deployment,
  type V1Pod,
  type V1PodTemplateSpec,
} from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { PLAN_FILE } from '../../agent/cluster/plan-client.js';
import { HEARTBEAT_FILE } from '../../agent/handoff/spool.js';
import { GROUP, POLICY_PLURAL, VERSION } from '../../api/v1alpha1/index.js';
import { runCommand } from '../../e2e/support/command.js';
import { helm } from '../../e2e/support/helm.js';
import { CHART_DIR, HELM, REPO_ROOT } from '../../e2e/support/paths.js';
import {
  SERVICE_ACCOUNT_DIR,
  type StartedPodContainer,
  imageConfigFromDockerfile,
  probeUrl,
  startPodContainer,
} from '../../e2e/support/pod-runner.js';
import { type PrivateCluster, startPrivateCluster } from '../../e2e/support/private-cluster.js';

const RELEASE = 'audit';
const NAMESPACE = 'container-auditor';
const OPERATOR = 'audit-container-auditor-operator';
const AGENT = 'audit-container-auditor-agent';
const NODE = 'chart-node';
/** The Service name the agent's --operator names, which the generated certificate holds. */
const OPERATOR_HOST = `${OPERATOR}.${NAMESPACE}.svc`;
const POLICY_FILE = join(REPO_ROOT, 'examples', 'audit-all-shells.yaml');
const RUN = `${process.pid}-${randomBytes(2).toString('hex')}`;
/** Per hook and test: the node project does not get jest.config.js's global testTimeout. */
const TEST_TIMEOUT = 120_000;

let scratch = '';
let cluster: PrivateCluster | undefined;
let core: CoreV1Api;
let coordination: CoordinationV1Api;
let custom: CustomObjectsApi;
let clusterCa = '';
let apiServerPort = 0;
let operatorPod: V1Pod;
let agentPod: V1Pod;
let operator: StartedPodContainer | undefined;
let agent: StartedPodContainer | undefined;
/** The agent's host paths, as the chart is told them. */
let hostPaths: { handoff: string; state: string; bundles: string };

function progress(message: string): void {
  process.stderr.write(`[chart-pods] ${message}\n`);
}

/** Throws unless `port` can be listened on (all addresses), as the pods will in the host's network. */
async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (error) =>
      reject(new Error(`port ${port}, which the chart's operator listens on, is taken: ${error.message}`)),
    );
    server.listen(port, () => server.close(() => resolve()));
  });
}

/** A GET's status code, or 0 when nothing answers. */
function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const request = get(url, { timeout: 2000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(0));
  });
}

/** The JSON log lines of a container (winston: one object a line); other lines are skipped. */
function logEntries(run: StartedPodContainer): { message?: string; level?: string; [k: string]: unknown }[] {
  return run.container
    .log()
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as { message?: string }];
      } catch {
        return [];
      }
    });
}

/** Throws unless the container was started and still runs (with its log tail when it stopped). */
async function assertRunning(run: StartedPodContainer | undefined, name: string): Promise<void> {
  if (!run) throw new Error(`the ${name} did not start (see the error of the hook that starts it)`);
  const state = await run.container.state();
  if (state?.status !== 'running')
    throw new Error(
      `the ${name} (${run.container.id}) is ${state?.status ?? 'gone'}:\n${run.container.log().slice(-6000)}`,
    );
}

/**
 * Polls `check` until true. Fails at once when `run` (or a container in `needs`: what the check depends on)
 * is not running, and on timeout, with the log tail of `run`.
 */
async function waitFor(
  what: string,
  run: StartedPodContainer | undefined,
  check: () => boolean | Promise<boolean>,
  needs: Record<string, StartedPodContainer | undefined> = {},
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await assertRunning(run, 'container');
    if (await check()) return;
    for (const [name, needed] of Object.entries(needs)) await assertRunning(needed, name);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}:\n${run!.container.log().slice(-6000)}`);
    await sleep(250);
  }
}

/** A Pod as the workload's controller would create it: from the template, with a name and the node. */
async function createPod(name: string, template: V1PodTemplateSpec): Promise<V1Pod> {
  return await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: NAMESPACE,
        labels: template.metadata?.labels ?? {},
        ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
      },
      spec: { ...template.spec!, nodeName: NODE },
    },
  });
}

function only(pod: V1Pod): V1Container {
  expect(pod.spec!.containers).toHaveLength(1);
  return pod.spec!.containers[0]!;
}

/** A line of /proc/<pid>/status, e.g. field('Uid'). */
function procStatus(pid: number, field: string): string {
  const m = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return m[1]!.trim();
}

async function stopAll(): Promise<void> {
  for (const run of [agent, operator]) {
    if (!run) continue;
    try {
      await run.container.stop(15_000);
    } catch (error) {
      progress(`stopping ${run.container.id}: ${(error as Error).message}`);
      await run.container.delete().catch(() => undefined);
    }
  }
  // Whatever else is under the private runc root (a container whose start failed half-way).
  const runcRoot = join(scratch, 'runc');
  if (existsSync(runcRoot)) {
    const list = await runCommand('runc', ['--root', runcRoot, 'list', '-q']);
    for (const id of list.stdout.split('\n').filter(Boolean))
      await runCommand('runc', ['--root', runcRoot, 'delete', '--force', id]);
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (runc, bpftrace)');
  if (!existsSync(HELM)) throw new Error(`${HELM} is missing: run 'bash e2e/cluster/build.sh helm'`);
  if (!existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js')))
    throw new Error('dist/ is missing: run make build');
  scratch = mkdtempSync(join(tmpdir(), 'chart-pods-'));
  hostPaths = {
    handoff: join(scratch, 'node', 'handoff'),
    state: join(scratch, 'node', 'state'),
    bundles: join(scratch, 'node', 'bundles'),
  };
  progress('starting a private control plane');
  cluster = await startPrivateCluster('chart-pods', 'ignore');
  apiServerPort = Number(new URL(cluster.server).port);
  clusterCa = readFileSync(join(cluster.dir, 'pki', 'ca.crt'), 'utf8');
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  coordination = kc.makeApiClient(CoordinationV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  const apps = kc.makeApiClient(AppsV1Api);

  progress('helm install');
  const install = await helm(
    [
      'install',
      RELEASE,
      CHART_DIR,
      '--namespace',
      NAMESPACE,
      '--create-namespace',
      '--set',
      'operator.replicas=1',
      '--set',
      `agent.hostPaths.handoff=${hostPaths.handoff}`,
      '--set',
      `agent.hostPaths.state=${hostPaths.state}`,
      '--set',
      `agent.hostPaths.bundles=${hostPaths.bundles}`,
    ],
    { kubeconfig: cluster.kubeconfig },
  );
  if (install.code !== 0) throw new Error(`helm install exited ${install.code}: ${install.stderr}`);

  await core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } } });
  // Read back from the API server, as a controller would see them (defaults filled in).
  const deployment: V1Deployment = await apps.readNamespacedDeployment({
    name: OPERATOR,
    namespace: NAMESPACE,
  });
  const daemonSet: V1DaemonSet = await apps.readNamespacedDaemonSet({ name: AGENT, namespace: NAMESPACE });
  const suffix = () => randomBytes(3).toString('hex').slice(0, 5);
  operatorPod = await createPod(
    `${OPERATOR}-${randomBytes(5).toString('hex')}-${suffix()}`,
    deployment.spec!.template,
  );
  agentPod = await createPod(`${AGENT}-${suffix()}`, daemonSet.spec!.template);
  for (const port of only(operatorPod).ports ?? []) await assertPortFree(port.containerPort);
}, 300_000);

afterAll(async () => {
  try {
    await stopAll();
  } finally {
    cluster?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}, 120_000);

/** Runs one container of a Pod with runc, as a kubelet would. */
async function runPod(pod: V1Pod, image: 'operator' | 'agent', extraHosts?: Record<string, string>) {
  const serviceAccount = await core.readNamespacedServiceAccount({
    name: pod.spec!.serviceAccountName!,
    namespace: NAMESPACE,
  });
  return await startPodContainer({
    core,
    pod,
    container: only(pod).name,
    image: imageConfigFromDockerfile(join(REPO_ROOT, 'images', image, 'Dockerfile')),
    imageRoot: {
      app: REPO_ROOT,
      // What the operator's Dockerfile adds (groupadd/useradd nonroot), which its build cannot be asked for.
      ...(image === 'operator'
        ? {
            passwd: ['nonroot:x:65532:65532::/nonexistent:/usr/sbin/nologin'],
            group: ['nonroot:x:65532:'],
          }
        : {}),
    },
    serviceAccount,
    dir: join(scratch, image),
    runcRoot: join(scratch, 'runc'),
    id: `chart-pods-${RUN}-${image}`,
    clusterCa,
    kubernetesService: { host: '127.0.0.1', port: apiServerPort },
    ...(extraHosts ? { extraHosts } : {}),
  });
}

describe('the operator, run from the Deployment as helm installed it', () => {
  beforeAll(async () => {
    progress('running the operator with runc');
    operator = await runPod(operatorPod, 'operator');
  }, TEST_TIMEOUT);

  it(
    'becomes ready and live by its own probes',
    async () => {
      const container = only(operatorPod);
      const ready = probeUrl(container, container.readinessProbe, '127.0.0.1');
      const live = probeUrl(container, container.livenessProbe, '127.0.0.1');
      progress(`waiting for ${ready}`);
      await waitFor(
        `the operator's readiness (${ready})`,
        operator,
        async () => (await httpStatus(ready)) === 200,
      );
      expect(await httpStatus(live)).toBe(200);
    },
    TEST_TIMEOUT,
  );

  it(
    'leads: the Lease names it (its pod name as host name, pid 1 of its own pid namespace)',
    async () => {
      const holder = async () =>
        (
          await coordination
            .readNamespacedLease({ name: OPERATOR, namespace: NAMESPACE })
            .catch(() => undefined)
        )?.spec?.holderIdentity ?? '';
      await waitFor('the operator to hold the Lease', operator, async () => (await holder()) !== '');
      expect(await holder()).toMatch(new RegExp(`^${operatorPod.metadata!.name}_1_[0-9a-f]+$`));
    },
    TEST_TIMEOUT,
  );

  it(
    'runs as the chart says: uid/gid 65532, no capabilities, no_new_privs, read-only root, writable /tmp',
    async () => {
      const state = await operator!.container.state();
      const pid = state!.pid;
      expect(procStatus(pid, 'Uid')).toBe('65532\t65532\t65532\t65532');
      expect(procStatus(pid, 'Gid')).toBe('65532\t65532\t65532\t65532');
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
        expect([set, procStatus(pid, set)]).toEqual([set, '0000000000000000']);
      expect(procStatus(pid, 'NoNewPrivs')).toBe('1');
      expect(readlinkSync(`/proc/${pid}/ns/pid`)).not.toBe(readlinkSync('/proc/self/ns/pid'));
      // The command line: the Dockerfile's ENTRYPOINT, then the chart's args; `node` is the Node.js of
      // .node-version that these tests run on (the image's, not the host's /usr/bin/node).
      const args = only(operatorPod).args!;
      expect(operator!.config.process.args).toEqual([
        'node',
        ...NODE_FLAGS,
        '/app/bin/container-auditor.js',
        ...args,
      ]);
      const exe = statSync(`/proc/${pid}/exe`);
      expect([exe.dev, exe.ino]).toEqual([statSync(process.execPath).dev, statSync(process.execPath).ino]);
      const tls = args.filter((a) => /^--tls-(cert|key)=/.test(a)).map((a) => a.split('=')[1]!);
      expect(tls).toHaveLength(2);
      const probe = await operator!.container.exec([
        '/bin/sh',
        '-c',
        [
          'id -u',
          ...tls.map((f) => `test -r ${f} && echo readable ${f}`),
          `test -r ${SERVICE_ACCOUNT_DIR}/token && echo api-token`,
          'touch /app/x 2>/dev/null && echo app-writable',
          'touch /etc/x 2>/dev/null && echo root-writable',
          'touch /tmp/x && echo tmp-writable',
        ].join('; '),
      ]);
      expect(probe.stdout.split('\n').filter(Boolean)).toEqual([
        '65532',
        ...tls.map((f) => `readable ${f}`),
        'api-token',
        'tmp-writable',
      ]);
      const starting = logEntries(operator!).find((e) => e.message === 'Starting');
      expect(starting).toMatchObject({ detail: { source: 'in-cluster' } });
    },
    TEST_TIMEOUT,
  );
});

describe('the agent, run from the DaemonSet as helm installed it', () => {
  beforeAll(async () => {
    progress('running the agent with runc');
    // What cluster DNS and the Service would do: the operator's name to where it listens.
    agent = await runPod(agentPod, 'agent', { [OPERATOR_HOST]: '127.0.0.1' });
  }, TEST_TIMEOUT);

  it(
    "gets its node's plan from the operator, through the chart's TLS and token, and audits",
    async () => {
      progress('waiting for the agent to audit and get its plan');
      await waitFor('the agent to log Auditing', agent, () =>
        logEntries(agent!).some((e) => e.message === 'Auditing'),
      );
      await waitFor(
        'a plan from the operator',
        agent,
        () => logEntries(agent!).some((e) => e.message === 'New node plan'),
        { operator },
      );
      // Kept in its state hostPath (read-write), for its node: the operator bound the token to chart-node.
      const plan = JSON.parse(readFileSync(join(hostPaths.state, PLAN_FILE), 'utf8')) as { node: string };
      expect(plan.node).toBe(NODE);
      // `--node=$(NODE_NAME)`, expanded from the fieldRef spec.nodeName.
      expect(agent!.config.process.args).toContain(`--node=${NODE}`);
      expect(agent!.config.process.args.slice(0, 2 + NODE_FLAGS.length)).toEqual([
        'node',
        ...NODE_FLAGS,
        '/app/bin/container-auditor.js',
      ]);
    },
    TEST_TIMEOUT,
  );

  it(
    'writes its heartbeat into the hand-off hostPath',
    async () => {
      const heartbeat = join(hostPaths.handoff, HEARTBEAT_FILE);
      await waitFor('the heartbeat', agent, () => existsSync(heartbeat));
      expect(statSync(heartbeat).isFile()).toBe(true);
      const first = statSync(heartbeat).mtimeMs;
      await waitFor('the heartbeat to be refreshed', agent, () => statSync(heartbeat).mtimeMs !== first);
      expect(statSync(hostPaths.handoff).mode & 0o777).toBe(0o700);
    },
    TEST_TIMEOUT,
  );

  it(
    'holds no Kubernetes API token, only its projected token and the CA of the operator',
    async () => {
      const mounts = agent!.config.mounts.map((m) => m.destination);
      expect(mounts.filter((m) => m.startsWith('/var/run/secrets/kubernetes.io'))).toEqual([]);
      const args = only(agentPod).args!;
      const value = (flag: string) => args.find((a) => a.startsWith(`${flag}=`))!.slice(flag.length + 1);
      const probe = await agent!.container.exec([
        '/bin/sh',
        '-c',
        [
          'id -u',
          'test -e /var/run/secrets/kubernetes.io || echo no-api-token',
          `test -r ${value('--token-file')} && echo token`,
          `ls ${join(value('--operator-ca'), '..')}`,
        ].join('; '),
      ]);
      expect(probe.stdout.split('\n').filter(Boolean)).toEqual(['0', 'no-api-token', 'token', 'ca.crt']);
    },
    TEST_TIMEOUT,
  );

  it(
    "runs privileged in the host's pid namespace, on the image's Node.js (.node-version's)",
    async () => {
      const pid = (await agent!.container.state())!.pid;
      expect(readlinkSync(`/proc/${pid}/ns/pid`)).toBe(readlinkSync('/proc/self/ns/pid'));
      const exe = statSync(`/proc/${pid}/exe`);
      expect([exe.dev, exe.ino]).toEqual([statSync(process.execPath).dev, statSync(process.execPath).ino]);
      expect(procStatus(pid, 'Uid')).toBe('0\t0\t0\t0');
      expect(procStatus(pid, 'CapEff')).toBe(procStatus(process.pid, 'CapEff'));
      expect(procStatus(pid, 'NoNewPrivs')).toBe('0');
    },
    TEST_TIMEOUT,
  );
});

describe('a ContainerAuditPolicy, through the whole loop', () => {
  it(
    'shows node chart-node with the plan the agent applied',
    async () => {
      // A Pod of the audit RuntimeClass on the node (never run): what makes the node one the policy audits.
      await core.createNamespace({ body: { metadata: { name: 'team-a' } } });
      await core.createNamespacedPod({
        namespace: 'team-a',
        body: {
          metadata: { name: 'web-0' },
          spec: {
            nodeName: NODE,
            runtimeClassName: 'container-auditor',
            containers: [{ name: 'app', image: 'registry.example/web:1.2' }],
          },
        },
      });
      const policy = load(readFileSync(POLICY_FILE, 'utf8')) as { metadata: { name: string } };
      await custom.createClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: POLICY_PLURAL,
        body: policy,
      });
      progress('waiting for the policy status to show the node');
      type Status = {
        nodes?: { name: string; planVersion?: string; lastReportTime?: string; errors?: string[] }[];
      };
      let status: Status = {};
      const planOnDisk = () =>
        JSON.parse(readFileSync(join(hostPaths.state, PLAN_FILE), 'utf8')) as {
          version: string;
          containers: { podNamespace: string; podName: string; containerName: string }[];
        };
      await waitFor(
        'the policy status to show the plan the agent applied',
        agent,
        async () => {
          const object = (await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: POLICY_PLURAL,
            name: policy.metadata.name,
          })) as { status?: Status };
          status = object.status ?? {};
          const node = status.nodes?.find((n) => n.name === NODE);
          // The plan that names web-0 (not the empty one the agent got first), applied and reported.
          const plan = planOnDisk();
          return plan.containers.some((c) => c.podName === 'web-0') && node?.planVersion === plan.version;
        },
        { operator },
      );
      expect(status.nodes!.map((n) => n.name)).toEqual([NODE]);
      const [node] = status.nodes!;
      expect(typeof node!.lastReportTime).toBe('string');
      // The agent reports no problem: bpftrace, the queue and the plan polls are well.
      expect(node!.errors).toBeUndefined();
      expect(planOnDisk().containers.map((c) => `${c.podNamespace}/${c.podName}/${c.containerName}`)).toEqual(
        ['team-a/web-0/app'],
      );
    },
    TEST_TIMEOUT,
  );

  it('the operator was never refused by the API server', () => {
    expect(operator!.container.log()).not.toMatch(/forbidden/i);
  });
});
