/**
 * The Helm chart against the real local API server, with the helm built from its Go module: it lints; it renders
 * with the defaults and with realistic value sets, and every object it renders is accepted by a server-side dry
 * run; its values schema refuses bad values with the value's path; `helm install` creates the CRDs, RBAC,
 * RuntimeClass and workloads; `kubectl auth can-i`, as each ServiceAccount and as namespace admins, proves the
 * RBAC promises; and `helm uninstall` leaves the AuditRecords and the CRDs in place.
 *
 * No kubelet runs here: the operator's and agent's pods are created, never started (the demo, e2e/demo/, runs
 * both as processes under the same RBAC, rendered from this chart).
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { AGENT_TOKEN_AUDIENCE } from '../../api/agentapi/v1.js';
import { AGENT_USAGE } from '../../agent/main.js';
import { DEFAULT_FLUSH_MS } from '../../operator/ingest/records-writer.js';
import { OPERATOR_USAGE } from '../../operator/main.js';
import { kubectl, kubectlOk } from '../../e2e/support/cluster.js';
import { runCommand } from '../../e2e/support/command.js';
import { ControllerManager } from '../../e2e/support/controller-manager.js';
import { goModuleDir } from '../../e2e/support/go-module.js';
import { helm, helmOk } from '../../e2e/support/helm.js';
import { CHART_DIR, CRD_DIR, REPO_ROOT, RUNC_WRAPPER } from '../../e2e/support/paths.js';
import { until as waitFor } from '../../e2e/support/wait.js';

const VALUES_DIR = join(REPO_ROOT, 'charts', 'tests', 'values');
const VALUE_SETS = ['production', 'minimal', 'containerd2'];
/** The chart's defaults, and each value set. */
const ALL_SETS = ['defaults', ...VALUE_SETS];
/** Where the ServiceMonitor CRD comes from: the Prometheus Operator's module, through the Go module proxy. */
const PROMETHEUS_OPERATOR = {
  module: 'github.com/prometheus-operator/prometheus-operator',
  version: 'v0.85.0',
};

const RELEASE = 'audit';
const NAMESPACE = 'container-auditor';
/** What the default names come to for release "audit" (fullname: audit-container-auditor). */
const OPERATOR = 'audit-container-auditor-operator';
const AGENT = 'audit-container-auditor-agent';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface Container {
  name: string;
  args?: string[];
  command?: string[];
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes: { name: string; hostPath?: { path: string }; projected?: unknown; secret?: unknown }[];
  [key: string]: unknown;
}

const RECORD = 'web-0-app-4242-1';

/** An AuditRecord in team-a as the operator writes one (spec only; status through its subresource). */
function auditRecord(name: string): string {
  return JSON.stringify({
    apiVersion: 'containeraudit.io/v1alpha1',
    kind: 'AuditRecord',
    metadata: { name, namespace: 'team-a' },
    spec: {
      pod: { name: 'web-0', uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' },
      container: { name: 'app', id: 'c0ffee', image: 'registry.example/web:1.2' },
      node: 'node-a',
      policy: 'production-shells',
      session: { kind: 'shell', pid: 4242, start: '2026-11-29T10:00:00Z' },
    },
  });
}

function valuesFile(set: string): string {
  return join(VALUES_DIR, `${set}.yaml`);
}

/** `helm template` into NAMESPACE with the given value files and flags; the objects it renders. */
async function render(extra: string[] = []): Promise<K8sObject[]> {
  const out = await helmOk(['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, ...extra]);
  return (loadAll(out) as (K8sObject | null)[]).filter((o): o is K8sObject => o !== null);
}

/** helm's arguments for a value set ('defaults': none). */
function valueArgs(set: string): string[] {
  return set === 'defaults' ? [] : ['-f', valuesFile(set)];
}

function renderSet(set: string): Promise<K8sObject[]> {
  return render(valueArgs(set));
}

function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!found) throw new Error(`no ${kind} ${name ?? ''} among: ${objects.map((o) => o.kind).join(', ')}`);
  return found;
}

function podSpec(workload: K8sObject): PodSpec {
  return (workload as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

/** The `--flag` names in args ("--node=$(NODE_NAME)" -> "--node"). */
function flagNames(args: string[]): string[] {
  return args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);
}

/**
 * `kubectl auth can-i` as someone, in a namespace ('*': all of them; none: cluster-scoped): true for yes (exit
 * 0), false for no (exit 1), throws otherwise. `resource` is TYPE, TYPE/NAME, or TYPE#SUBRESOURCE.
 */
async function canI(as: string, verb: string, resource: string, namespace?: string): Promise<boolean> {
  const [type, subresource] = resource.split('#');
  const args = ['auth', 'can-i', verb, type!, `--as=${as}`];
  if (subresource) args.push(`--subresource=${subresource}`);
  if (namespace === '*') args.push('--all-namespaces');
  else if (namespace) args.push('-n', namespace);
  const result = await kubectl(args);
  if (result.code > 1) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.code === 0;
}

beforeAll(async () => {
  // The ServiceMonitor CRD, as the Prometheus Operator ships it, so that the ServiceMonitor is judged for real.
  const dir = await goModuleDir(PROMETHEUS_OPERATOR.module, PROMETHEUS_OPERATOR.version);
  const crd = join(dir, 'example', 'prometheus-operator-crd', 'monitoring.coreos.com_servicemonitors.yaml');
  await kubectlOk(['apply', '--server-side', '-f', crd]);
  await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', '-f', crd]);
}, 300_000);

describe('helm lint', () => {
  it.each(ALL_SETS)('passes --strict with %s', async (set) => {
    const result = await helm(['lint', '--strict', CHART_DIR, ...valueArgs(set)]);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });
});

describe('helm template', () => {
  it('renders the operator, the agent, RBAC, the RuntimeClass and what they need, with the defaults', async () => {
    const kinds = (await render()).map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        `ClusterRole/${OPERATOR}`,
        'ClusterRole/audit-container-auditor-view',
        `ClusterRoleBinding/${OPERATOR}`,
        'ConfigMap/audit-container-auditor-node-setup',
        `DaemonSet/${AGENT}`,
        `Deployment/${OPERATOR}`,
        `NetworkPolicy/${AGENT}`,
        `NetworkPolicy/${OPERATOR}`,
        `PodDisruptionBudget/${OPERATOR}`,
        'PriorityClass/audit-container-auditor-node',
        `Role/${OPERATOR}`,
        `RoleBinding/${OPERATOR}`,
        'RuntimeClass/container-auditor',
        `Secret/${OPERATOR}-tls`,
        'ValidatingAdmissionPolicy/audit-container-auditor-record-protection',
        'ValidatingAdmissionPolicyBinding/audit-container-auditor-record-protection',
        `Service/${OPERATOR}`,
        `ServiceAccount/${AGENT}`,
        `ServiceAccount/${OPERATOR}`,
      ].sort(),
    );
  });

  it('the operator: two replicas, non-root, read-only root, RuntimeDefault seccomp, no capabilities', async () => {
    const deployment = find(await render(), 'Deployment');
    expect((deployment as unknown as { spec: { replicas: number } }).spec.replicas).toBe(2);
    const pod = podSpec(deployment);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers).toHaveLength(1);
    const [container] = pod.containers;
    expect(container!.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    // The chart's defaults are the operator's own, not a second opinion.
    expect(pod.containers[0]!.args).toContain(`--flush-ms=${DEFAULT_FLUSH_MS}`);
    expect(pod.containers[0]).toMatchObject({
      livenessProbe: { httpGet: { path: '/healthz' } },
      readinessProbe: { httpGet: { path: '/readyz' } },
      resources: { requests: { cpu: '50m' }, limits: { memory: '512Mi' } },
    });
  });

  it("the agent: privileged, hostPID, no API token, one projected token with the operator's audience", async () => {
    const pod = podSpec(find(await render(), 'DaemonSet'));
    expect(pod).toMatchObject({
      hostPID: true,
      automountServiceAccountToken: false,
      priorityClassName: 'audit-container-auditor-node',
      tolerations: [{ operator: 'Exists' }],
    });
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.containers[0]!.securityContext).toEqual({ privileged: true, readOnlyRootFilesystem: true });
    const token = pod.volumes.find((v) => v.name === 'token');
    expect(token?.projected).toEqual({
      sources: [
        { serviceAccountToken: { audience: AGENT_TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' } },
      ],
    });
    // Only the CA from the operator's Secret, never its key.
    expect(pod.volumes.find((v) => v.name === 'operator-ca')?.secret).toEqual({
      secretName: `${OPERATOR}-tls`,
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
  });

  it('the agent mounts from the host only the spool, its state and (read-only) the bundles and snapshots', async () => {
    const pod = podSpec(find(await render(), 'DaemonSet'));
    const hostPaths = Object.fromEntries(
      pod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!.path]),
    );
    expect(hostPaths).toEqual({
      handoff: '/run/container-auditor/handoff',
      state: '/var/lib/container-auditor',
      bundles: '/run/containerd/io.containerd.runtime.v2.task',
      snapshots: '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs',
    });
    const mounts = pod.containers[0]!.volumeMounts!;
    // The root filesystems containerd mounts after the agent started must reach it (the real-node tier
    // proves it); the layers are plain directories.
    expect(mounts.find((m) => m.name === 'bundles')).toMatchObject({
      readOnly: true,
      mountPropagation: 'HostToContainer',
    });
    expect(mounts.find((m) => m.name === 'snapshots')).toMatchObject({
      readOnly: true,
      mountPath: '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs',
    });
    expect(pod.initContainers).toBeUndefined();
  });

  it.each(ALL_SETS)("with %s, the workloads' arguments are flags their CLIs know", async (set) => {
    const objects = await renderSet(set);
    const operatorArgs = podSpec(find(objects, 'Deployment')).containers[0]!.args!;
    const agentArgs = podSpec(find(objects, 'DaemonSet')).containers[0]!.args!;
    expect(operatorArgs[0]).toBe('operator');
    expect(agentArgs[0]).toBe('agent');
    for (const flag of flagNames(operatorArgs)) expect(OPERATOR_USAGE).toContain(`${flag} `);
    for (const flag of flagNames(agentArgs)) expect(AGENT_USAGE).toContain(`${flag} `);
  });

  it("by default, NetworkPolicies let only the agents reach the operator's agents port, and nothing the agent", async () => {
    const objects = await render();
    const selector = (component: string) => ({
      'app.kubernetes.io/name': 'container-auditor',
      'app.kubernetes.io/instance': RELEASE,
      'app.kubernetes.io/component': component,
    });
    expect(find(objects, 'NetworkPolicy', OPERATOR)).toMatchObject({
      spec: {
        podSelector: { matchLabels: selector('operator') },
        policyTypes: ['Ingress'],
        ingress: [
          { from: [{ podSelector: { matchLabels: selector('agent') } }], ports: [{ port: 'agents' }] },
        ],
      },
    });
    expect(
      (find(objects, 'NetworkPolicy', OPERATOR) as { spec?: { ingress?: unknown[] } }).spec?.ingress,
    ).toHaveLength(1);
    expect(find(objects, 'NetworkPolicy', AGENT)).toMatchObject({
      spec: { podSelector: { matchLabels: selector('agent') }, policyTypes: ['Ingress'] },
    });
    expect(
      (find(objects, 'NetworkPolicy', AGENT) as { spec?: { ingress?: unknown } }).spec?.ingress,
    ).toBeUndefined();
  });

  it('networkPolicy.enabled=false leaves the NetworkPolicies out', async () => {
    const kinds = (await render(['--set', 'networkPolicy.enabled=false'])).map((o) => o.kind);
    expect(kinds).not.toContain('NetworkPolicy');
    expect(kinds).toContain('Deployment');
  });

  it('the agents reach the operator by a name its generated certificate holds', async () => {
    const objects = await render();
    const agentArgs = podSpec(find(objects, 'DaemonSet')).containers[0]!.args!;
    const url = new URL(agentArgs.find((a) => a.startsWith('--operator='))!.slice('--operator='.length));
    expect(url.host).toBe(`${OPERATOR}.${NAMESPACE}.svc:8443`);
    const secret = find(objects, 'Secret') as unknown as { data: Record<string, string> };
    const dir = mkdtempSync(join(tmpdir(), 'chart-tls-'));
    writeFileSync(join(dir, 'tls.crt'), Buffer.from(secret.data['tls.crt']!, 'base64'));
    writeFileSync(join(dir, 'ca.crt'), Buffer.from(secret.data['ca.crt']!, 'base64'));
    const verify = await runCommand('openssl', [
      'verify',
      '-CAfile',
      join(dir, 'ca.crt'),
      '-verify_hostname',
      url.hostname,
      join(dir, 'tls.crt'),
    ]);
    expect(verify).toMatchObject({ code: 0 });
  });

  it('production: the wrapper is installed by an init container, and everything is pinned and named', async () => {
    const objects = await renderSet('production');
    const pod = podSpec(find(objects, 'DaemonSet'));
    expect(pod.initContainers?.map((c) => c.name)).toEqual(['install-wrapper']);
    expect(pod.containers[0]).toMatchObject({
      image:
        'registry.example.com/security/container-auditor/agent@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210',
    });
    expect(find(objects, 'ServiceMonitor')).toBeDefined();
    expect(objects.filter((o) => o.kind === 'NetworkPolicy')).toHaveLength(2);
    // A certificate from elsewhere: none generated, both workloads use the one named.
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false);
    expect(pod.volumes.find((v) => v.name === 'operator-ca')?.secret).toMatchObject({
      secretName: 'container-auditor-operator-cert',
    });
    for (const o of objects) expect(o.metadata.labels).toMatchObject({ team: 'platform-security' });
  });

  it('minimal: one replica and no disruption budget; no RuntimeClass, PriorityClass or aggregated role', async () => {
    const kinds = (await renderSet('minimal')).map((o) => o.kind);
    for (const kind of ['PodDisruptionBudget', 'RuntimeClass', 'PriorityClass'])
      expect(kinds).not.toContain(kind);
    expect(kinds.filter((k) => k === 'ClusterRole')).toHaveLength(1);
  });

  it("the init container's script installs the wrapper and a configuration the wrapper reads", async () => {
    const objects = await renderSet('containerd2');
    const init = podSpec(find(objects, 'DaemonSet')).initContainers![0]!;
    const config = (find(objects, 'ConfigMap') as unknown as { data: Record<string, string> }).data;
    // The script as the pod runs it, with its absolute paths moved into a scratch directory.
    const dir = mkdtempSync(join(tmpdir(), 'chart-node-'));
    const [bin, etc, configDir, image] = ['bin', 'etc', 'config', 'image'].map((d) => join(dir, d));
    await runCommand('mkdir', ['-p', bin!, etc!, configDir!, image!]);
    writeFileSync(join(configDir!, 'runc-wrapper.conf'), config['runc-wrapper.conf']!);
    await runCommand('cp', [RUNC_WRAPPER, join(image!, 'container-auditor-runc')]);
    const script = init
      .command![2]!.replaceAll('/opt/container-auditor/bin/', `${image}/`)
      .replaceAll('/host/bin', bin!)
      .replaceAll('/host/etc', etc!)
      .replaceAll('/config/', `${configDir}/`);
    const run = await runCommand('/bin/sh', ['-ec', script]);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(statSync(join(bin!, 'container-auditor-runc')).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(etc!, 'runc-wrapper.conf'), 'utf8')).toBe(config['runc-wrapper.conf']);
    // The wrapper, given that configuration, runs the real runc it names and complains of nothing.
    const log = join(dir, 'wrapper.log');
    const version = await runCommand(join(bin!, 'container-auditor-runc'), ['--version'], {
      env: {
        ...process.env,
        CONTAINER_AUDITOR_RUNC_CONFIG: join(etc!, 'runc-wrapper.conf'),
        CONTAINER_AUDITOR_WRAPPER_LOG: log,
      },
    });
    expect(version).toMatchObject({ code: 0 });
    expect(version.stdout).toMatch(/^runc version/);
    expect(() => readFileSync(log, 'utf8')).toThrow(/ENOENT/);
  });

  it('the containerd snippet (config version 2) is one containerd reads, naming the wrapper for the handler', async () => {
    const config = (find(await render(), 'ConfigMap') as unknown as { data: Record<string, string> }).data;
    const dir = mkdtempSync(join(tmpdir(), 'chart-containerd-'));
    const file = join(dir, 'config.toml');
    writeFileSync(file, `version = 2\n${config['containerd-runtime.toml']}\n`);
    const dump = await runCommand('containerd', ['--config', file, 'config', 'dump']);
    expect(dump).toMatchObject({ code: 0 });
    // What containerd understood, not the text given: its whole configuration with the defaults filled in.
    const lines = dump.stdout.split('\n').map((l) => l.trim());
    const runtime = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.container-auditor]';
    expect(lines).toContain(runtime);
    const options = lines.indexOf(runtime.replace(/\]$/, '.options]'));
    expect(options).toBeGreaterThan(0);
    expect(lines[options + 1]).toBe('BinaryName = "/usr/local/bin/container-auditor-runc"');
  });

  it('for containerd 2, the snippet names the runtime in configuration version 3', async () => {
    const config = (
      find(await renderSet('containerd2'), 'ConfigMap') as unknown as { data: Record<string, string> }
    ).data;
    expect(config['containerd-runtime.toml']).toBe(
      [
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.audited-runc]',
        '  runtime_type = "io.containerd.runc.v2"',
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.audited-runc.options]',
        '  BinaryName = "/opt/bin/container-auditor-runc"',
        '',
      ].join('\n'),
    );
  });
});

describe('server-side dry run: every object the chart renders is valid', () => {
  beforeAll(async () => {
    await kubectl(['create', 'namespace', NAMESPACE]);
  });

  it.each(ALL_SETS)('with %s', async (set) => {
    const manifest = await helmOk([
      'template',
      RELEASE,
      CHART_DIR,
      '--namespace',
      NAMESPACE,
      ...valueArgs(set),
    ]);
    const applied = await kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], manifest);
    expect({ code: applied.code, stderr: applied.stderr }).toEqual({ code: 0, stderr: '' });
    const objects = (loadAll(manifest) as (K8sObject | null)[]).filter((o) => o !== null);
    expect(applied.stdout.trim().split('\n')).toHaveLength(objects.length);
  });

  it("the operator's pod meets the restricted Pod Security Standard; the agent's is refused by it", async () => {
    await kubectl(['create', 'namespace', 'chart-restricted']);
    await kubectlOk([
      'label',
      '--overwrite',
      'namespace',
      'chart-restricted',
      'pod-security.kubernetes.io/enforce=restricted',
    ]);
    const objects = await render(['--namespace', 'chart-restricted']);
    // As bare pods (the standard is enforced on pods), without the PriorityClass this test does not create.
    const asPod = (workload: K8sObject, name: string) =>
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name },
        spec: { ...podSpec(workload), priorityClassName: undefined },
      });
    const operator = await kubectl(
      ['create', '--dry-run=server', '-n', 'chart-restricted', '-f', '-'],
      asPod(find(objects, 'Deployment'), 'operator'),
    );
    expect({ code: operator.code, stderr: operator.stderr }).toEqual({ code: 0, stderr: '' });
    const agent = await kubectl(
      ['create', '--dry-run=server', '-n', 'chart-restricted', '-f', '-'],
      asPod(find(objects, 'DaemonSet'), 'agent'),
    );
    expect(agent.code).not.toBe(0);
    expect(agent.stderr).toMatch(
      /violates PodSecurity "restricted.*": .*host namespaces \(hostPID=true\).*privileged/,
    );
  });
});

describe('the values schema and checks refuse bad values, naming them', () => {
  it.each([
    ['operator.replicas=0', /operator.*replicas.*minimum: got 0, want 1/],
    ['operator.replica=2', /operator.*additional properties? 'replica' not allowed/],
    ['agent.securityContext.privileged=false', /privileged.*value must be true/],
    ['nodeSetup.containerdConfigVersion=4', /containerdConfigVersion.*value must be one of 2, 3/],
    ['image.pullPolicy=Sometimes', /pullPolicy.*value must be one of 'Always', 'IfNotPresent', 'Never'/],
    ['agent.hostPaths.state=var/lib/x', /agent.*hostPaths.*state.*does not match pattern/],
    ['operator.logLevel=verbose', /logLevel.*value must be one of 'error', 'warn', 'info', 'debug'/],
    ['agent.tokenExpirationSeconds=60', /tokenExpirationSeconds.*minimum: got 60, want 600/],
    ['operator.image.digest=latest', /digest.*does not match pattern/],
    ['runtimeClass.handler=Audited_Runc', /handler.*does not match pattern/],
    [
      'operator.leaderElection.renewDeadlineSeconds=20',
      /renewDeadlineSeconds \(20\) must be shorter than leaseDurationSeconds \(15\)/,
    ],
    ['operator.ports.probes=8443', /operator.ports.agents and operator.ports.probes must differ/],
    ['agent.priorityClass.create=false', /agent.priorityClass.name/],
    ['metrics.serviceMonitor.enabled=true', /set networkPolicy.metricsFrom to where Prometheus runs/],
  ])('--set %s', async (setting, message) => {
    const result = await helm(['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--set', setting]);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
  });
});

describe('helm install, the RBAC it grants, and helm uninstall', () => {
  let controllerManager: ControllerManager | undefined;
  let installOutput = '';

  beforeAll(async () => {
    // The CRDs must come from the chart: other tests' copies go first (and their objects with them).
    await kubectlOk(['delete', '--ignore-not-found', '--wait', '-f', CRD_DIR]);
    // Fills the built-in admin/edit/view roles from the roles labelled to aggregate into them.
    controllerManager = ControllerManager.start(['clusterrole-aggregation']);
    installOutput = await helmOk([
      'install',
      RELEASE,
      CHART_DIR,
      '--namespace',
      'chart-install',
      '--create-namespace',
    ]);
  }, 180_000);

  afterAll(async () => {
    await helm(['uninstall', RELEASE, '--namespace', 'chart-install']);
    await controllerManager?.stop();
  });

  const ns = 'chart-install';
  const operatorSa = `system:serviceaccount:${ns}:${OPERATOR}`;
  const agentSa = `system:serviceaccount:${ns}:${AGENT}`;

  it('installs the CRDs, RBAC, RuntimeClass, workloads and NetworkPolicies, and NOTES tells the node step', async () => {
    expect(installOutput).toMatch(/STATUS: deployed/);
    expect(installOutput).toContain('BinaryName = "/usr/local/bin/container-auditor-runc"');
    expect(installOutput).toContain('kubectl get auditrecords');
    for (const crd of ['containerauditpolicies.containeraudit.io', 'auditrecords.containeraudit.io'])
      await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', `crd/${crd}`]);
    await kubectlOk([
      'get',
      `clusterrole/${OPERATOR}`,
      `clusterrolebinding/${OPERATOR}`,
      'clusterrole/audit-container-auditor-view',
    ]);
    await kubectlOk(['get', 'runtimeclass/container-auditor', 'priorityclass/audit-container-auditor-node']);
    await kubectlOk(['get', '-n', ns, `deployment/${OPERATOR}`, `daemonset/${AGENT}`, `service/${OPERATOR}`]);
    await kubectlOk(['get', '-n', ns, `networkpolicy/${OPERATOR}`, `networkpolicy/${AGENT}`]);
    await kubectlOk([
      'get',
      '-n',
      ns,
      `role/${OPERATOR}`,
      `rolebinding/${OPERATOR}`,
      `secret/${OPERATOR}-tls`,
    ]);
    await kubectlOk(['get', '-n', ns, `serviceaccount/${OPERATOR}`, `serviceaccount/${AGENT}`]);
  });

  it('the operator may do exactly what it does', async () => {
    const allowed: [string, string, string?][] = [
      ['list', 'containerauditpolicies.containeraudit.io'],
      ['watch', 'containerauditpolicies.containeraudit.io'],
      ['patch', 'containerauditpolicies.containeraudit.io#status'],
      ['get', 'auditrecords.containeraudit.io', 'team-a'],
      ['create', 'auditrecords.containeraudit.io', 'team-a'],
      ['update', 'auditrecords.containeraudit.io#status', 'team-a'],
      ['get', 'pods', 'team-a'],
      ['watch', 'pods', '*'],
      ['list', 'namespaces'],
      ['create', 'events', 'team-a'],
      ['patch', 'events', 'team-a'],
      ['create', 'tokenreviews.authentication.k8s.io'],
      ['create', 'leases.coordination.k8s.io', ns],
      [`update`, `leases.coordination.k8s.io/${OPERATOR}`, ns],
    ];
    const refused: [string, string, string?][] = [
      ['delete', 'auditrecords.containeraudit.io', 'team-a'],
      ['update', 'auditrecords.containeraudit.io', 'team-a'],
      ['patch', 'auditrecords.containeraudit.io', 'team-a'],
      ['update', 'containerauditpolicies.containeraudit.io'],
      ['delete', 'containerauditpolicies.containeraudit.io'],
      ['get', 'secrets', ns],
      ['list', 'secrets', 'team-a'],
      ['create', 'pods', 'team-a'],
      ['delete', 'events', 'team-a'],
      ['create', 'leases.coordination.k8s.io', 'default'],
      ['update', 'leases.coordination.k8s.io/someone-else', ns],
      ['get', 'nodes'],
    ];
    const expected = [
      ...allowed.map(([verb, resource, namespace]) => ({ verb, resource, namespace, allowed: true })),
      ...refused.map(([verb, resource, namespace]) => ({ verb, resource, namespace, allowed: false })),
    ];
    const answers = [];
    for (const { verb, resource, namespace } of expected)
      answers.push({ verb, resource, namespace, allowed: await canI(operatorSa, verb, resource, namespace) });
    // One comparison: a failure lists every question whose answer differs.
    expect(answers).toEqual(expected);
  });

  it('the agent may do nothing an unbound ServiceAccount may not', async () => {
    for (const namespace of [ns, 'team-a']) {
      const list = async (as: string) =>
        await kubectlOk(['auth', 'can-i', '--list', `--as=${as}`, '-n', namespace]);
      expect(await list(agentSa)).toBe(await list(`system:serviceaccount:${ns}:nobody`));
    }
    expect(await canI(agentSa, 'create', 'tokenreviews.authentication.k8s.io')).toBe(false);
    expect(await canI(agentSa, 'get', 'pods', ns)).toBe(false);
  });

  it('namespace admins, editors and viewers may read AuditRecords of their namespace, never change them', async () => {
    await kubectl(['create', 'namespace', 'team-a']);
    for (const [user, role] of [
      ['alice', 'admin'],
      ['erin', 'edit'],
      ['victor', 'view'],
    ] as const) {
      await kubectlOk([
        'create',
        'rolebinding',
        `${user}-${role}`,
        '-n',
        'team-a',
        `--clusterrole=${role}`,
        `--user=${user}`,
      ]);
      await waitFor(
        `${user} (${role}) to read auditrecords`,
        () => canI(user, 'list', 'auditrecords.containeraudit.io', 'team-a'),
        60_000,
      );
      for (const verb of ['get', 'watch'])
        expect(await canI(user, verb, 'auditrecords.containeraudit.io', 'team-a')).toBe(true);
      for (const verb of ['create', 'update', 'patch', 'delete', 'deletecollection'])
        expect([user, verb, await canI(user, verb, 'auditrecords.containeraudit.io', 'team-a')]).toEqual([
          user,
          verb,
          false,
        ]);
      expect(await canI(user, 'update', 'auditrecords.containeraudit.io#status', 'team-a')).toBe(false);
      expect(await canI(user, 'list', 'auditrecords.containeraudit.io', 'team-b')).toBe(false);
    }
  });

  it('helm upgrade keeps the generated certificate', async () => {
    const ca = async () =>
      await kubectlOk(['get', 'secret', `${OPERATOR}-tls`, '-n', ns, '-o', "jsonpath={.data['ca\\.crt']}"]);
    const before = await ca();
    await helmOk([
      'upgrade',
      RELEASE,
      CHART_DIR,
      '--namespace',
      ns,
      '--reuse-values',
      '--set',
      'operator.logLevel=debug',
    ]);
    expect(await ca()).toBe(before);
  });

  it('only the operator may create or write an AuditRecord, and nobody may delete one: cluster-admin neither', async () => {
    const asOperator = `--as=${operatorSa}`;
    // The test's own credentials are system:masters, which RBAC never refuses: the admission policy does.
    const forged = await kubectl(['create', '-f', '-'], auditRecord('forged-1'));
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/AuditRecords are written by container-auditor's operator only/);
    await kubectlOk(['create', asOperator, '-f', '-'], auditRecord(RECORD));
    const record = JSON.parse(
      await kubectlOk(['get', 'auditrecord', RECORD, '-n', 'team-a', '-o', 'json']),
    ) as {
      status?: unknown;
    };
    const withStatus = JSON.stringify({
      ...record,
      status: {
        phase: 'Active',
        commands: [{ seq: 1, time: '2026-11-29T10:00:01Z', pid: 4242, uid: 0, command: 'ls' }],
        counts: { commands: 1 },
      },
    });
    await kubectlOk(['replace', asOperator, '--subresource=status', '-f', '-'], withStatus);
    const edits = [
      ['patch', 'auditrecord', RECORD, '-n', 'team-a', '--subresource=status', '--type=merge', '-p'],
      ['patch', 'auditrecord', RECORD, '-n', 'team-a', '--type=merge', '-p'],
    ];
    for (const edit of edits) {
      const result = await kubectl([...edit, '{"status":{"commands":[]},"spec":{"node":"elsewhere"}}']);
      expect([edit.join(' '), result.code]).toEqual([edit.join(' '), 1]);
      expect(result.stderr).toMatch(/AuditRecords are written by container-auditor's operator only/);
    }
    const erased = await kubectl(['delete', 'auditrecord', RECORD, '-n', 'team-a']);
    expect(erased.code).not.toBe(0);
    expect(erased.stderr).toMatch(
      /AuditRecords are deleted only with their namespace, or by container-auditor's operator/,
    );
    const stored = JSON.parse(
      await kubectlOk(['get', 'auditrecord', RECORD, '-n', 'team-a', '-o', 'json']),
    ) as {
      spec: { node: string };
      status: { commands: unknown[] };
    };
    expect([stored.spec.node, stored.status.commands]).toEqual([
      'node-a',
      [expect.objectContaining({ command: 'ls' })],
    ]);
  });

  it('helm uninstall leaves the AuditRecords and the CRDs, and removes the rest', async () => {
    await helmOk(['uninstall', RELEASE, '--namespace', ns, '--wait']);
    await kubectlOk(['get', 'auditrecord', RECORD, '-n', 'team-a']);
    await kubectlOk([
      'get',
      'crd',
      'auditrecords.containeraudit.io',
      'containerauditpolicies.containeraudit.io',
    ]);
    for (const object of [
      `clusterrole/${OPERATOR}`,
      'runtimeclass/container-auditor',
      `deployment/${OPERATOR}`,
      'validatingadmissionpolicy/audit-container-auditor-record-protection',
    ]) {
      const result = await kubectl(['get', '-n', ns, object]);
      expect([object, result.code, result.stderr]).toEqual([object, 1, expect.stringMatching(/NotFound/)]);
    }
  });
});
