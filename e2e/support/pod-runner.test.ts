/**
 * pod-runner's pure half: a Pod's container, an image config and materialised volumes into the OCI config a
 * kubelet with containerd would have runc run, and the kubelet's own rules (`$(VAR)` expansion, command and
 * args against ENTRYPOINT and CMD, env, /etc/hosts, probes, runAsNonRoot). The runner half runs in
 * charts/tests/chart-pods.node.test.ts.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  type ContainerSpecInput,
  type ImageConfig,
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  PodSpecError,
  SERVICE_ACCOUNT_DIR,
  automountsServiceAccountToken,
  capabilitySet,
  commandLine,
  containerSpec,
  expandKubeVars,
  kubeletHostsFile,
  kubeletResolvConf,
  parseQuantity,
  probeUrl,
} from './pod-runner.js';

const IMAGE: ImageConfig = {
  entrypoint: ['node', '/app/bin/container-auditor.js'],
  cmd: ['operator'],
  env: { NODE_ENV: 'production' },
  user: '65532:65532',
  workdir: '/app',
};
const HOST = {
  capabilities: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_BPF', 'CAP_PERFMON'],
  devices: [{ path: '/dev/null', type: 'c' as const, major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 }],
};

/** The operator's Pod as the API server returns it (defaults filled in), like the chart's. */
function operatorPod(): V1Pod {
  return {
    metadata: { name: 'op-abc', namespace: 'container-auditor', uid: 'uid-op' },
    spec: {
      nodeName: 'node-a',
      serviceAccountName: 'op',
      dnsPolicy: 'ClusterFirst',
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'operator',
          image: 'container-auditor/operator:0.1.0',
          args: ['operator', '--tls-cert=/etc/tls/tls.crt', '--lease-namespace=$(POD_NAMESPACE)'],
          env: [{ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }],
          ports: [
            { name: 'agents', containerPort: 8443 },
            { name: 'probes', containerPort: 8081 },
          ],
          readinessProbe: { httpGet: { path: '/readyz', port: 'probes', scheme: 'HTTP' } },
          resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } },
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
          terminationMessagePath: '/dev/termination-log',
          volumeMounts: [
            { name: 'tls', mountPath: '/etc/tls', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        {
          name: 'tls',
          secret: { secretName: 'op-tls', items: [{ key: 'tls.crt', path: 'tls.crt' }], defaultMode: 420 },
        },
        { name: 'tmp', emptyDir: { sizeLimit: '16Mi' } },
      ],
    },
  };
}

/** The agent's Pod, like the chart's: privileged, hostPID, no API token, hostPaths under /tmp. */
function agentPod(): V1Pod {
  return {
    metadata: { name: 'agent-xyz', namespace: 'container-auditor', uid: 'uid-agent' },
    spec: {
      nodeName: 'node-a',
      serviceAccountName: 'agent',
      automountServiceAccountToken: false,
      hostPID: true,
      containers: [
        {
          name: 'agent',
          image: 'container-auditor/agent:0.1.0',
          args: ['agent', '--node=$(NODE_NAME)', '--keep=$$(NODE_NAME)', '--x=$(UNSET)'],
          env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
          securityContext: { privileged: true, readOnlyRootFilesystem: true },
          volumeMounts: [
            { name: 'handoff', mountPath: '/tmp/scratch/handoff' },
            { name: 'bundles', mountPath: '/run/bundles', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        { name: 'handoff', hostPath: { path: '/tmp/scratch/handoff', type: 'DirectoryOrCreate' } },
        { name: 'bundles', hostPath: { path: '/run/bundles', type: 'DirectoryOrCreate' } },
        { name: 'tmp', emptyDir: {} },
      ],
    },
  };
}

function input(pod: V1Pod, overrides: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  const spec = pod.spec!;
  return {
    pod,
    container: spec.containers[0]!.name,
    image: IMAGE,
    rootfs: '/scratch/rootfs',
    imageMounts: [
      { destination: '/usr', type: 'bind', source: '/usr', options: ['rbind', 'rprivate', 'ro'] },
    ],
    // As materializeVolumes leaves them: a hostPath is the host's path, the others are under the scratch dir.
    volumes: Object.fromEntries(
      (spec.volumes ?? []).map((v) => [
        v.name,
        { kind: 'bind' as const, path: v.hostPath?.path ?? `/scratch/volumes/${v.name}` },
      ]),
    ),
    podFiles: {
      hosts: '/scratch/etc-hosts',
      hostname: '/scratch/hostname',
      resolvConf: '/scratch/resolv.conf',
      terminationLog: '/scratch/termination-log',
    },
    ...(automountsServiceAccountToken(pod) ? { serviceAccountVolume: '/scratch/sa' } : {}),
    kubernetesService: { host: '127.0.0.1', port: 6443 },
    podIP: '127.0.0.1',
    host: HOST,
    cgroupsPath: '/pod-runner-test',
    ...overrides,
  };
}

function mount(spec: ReturnType<typeof containerSpec>, destination: string) {
  return spec.mounts.find((m) => m.destination === destination);
}

describe('containerSpec: the operator, non-root and locked down', () => {
  const spec = containerSpec(input(operatorPod()));

  it('runs the ENTRYPOINT with the pod args (which replace CMD), $(VAR) expanded', () => {
    expect(spec.process.args).toEqual([
      'node',
      '/app/bin/container-auditor.js',
      'operator',
      '--tls-cert=/etc/tls/tls.crt',
      '--lease-namespace=container-auditor',
    ]);
    expect(spec.process.cwd).toBe('/app');
  });

  it('as runAsUser/runAsGroup, without capabilities, with no_new_privs and a read-only root', () => {
    expect(spec.process.user).toEqual({ uid: 65532, gid: 65532 });
    expect(spec.process.capabilities).toEqual({
      bounding: [],
      effective: [],
      permitted: [],
      inheritable: [],
      ambient: [],
    });
    expect(spec.process.noNewPrivileges).toBe(true);
    expect(spec.root).toEqual({ path: '/scratch/rootfs', readonly: true });
  });

  it('in pid, mount, ipc and uts namespaces of its own, the host network, its pod name as host name', () => {
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual(['ipc', 'mount', 'pid', 'uts']);
    expect(spec.hostname).toBe('op-abc');
  });

  it("with the image's env, the kubernetes Service's, and the container's fieldRefs", () => {
    expect(spec.process.env).toEqual(
      expect.arrayContaining([
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'NODE_ENV=production',
        'HOSTNAME=op-abc',
        'KUBERNETES_SERVICE_HOST=127.0.0.1',
        'KUBERNETES_SERVICE_PORT=6443',
        'POD_NAMESPACE=container-auditor',
      ]),
    );
  });

  it('mounts the image first, then the defaults, then the volumes and kubelet files, parents first', () => {
    expect(spec.mounts[0]!.destination).toBe('/usr');
    expect(spec.mounts.map((m) => m.destination)).toEqual([
      '/usr',
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
      '/tmp',
      '/etc/hostname',
      '/etc/hosts',
      '/etc/resolv.conf',
      '/dev/termination-log',
      '/etc/tls',
      SERVICE_ACCOUNT_DIR,
    ]);
    expect(mount(spec, '/etc/tls')).toEqual({
      destination: '/etc/tls',
      type: 'bind',
      source: '/scratch/volumes/tls',
      options: ['rbind', 'rprivate', 'ro'],
    });
    expect(mount(spec, '/tmp')!.options).toContain('rw');
    // Read-only root: the kubelet's files are read-only too; the token volume always is.
    expect(mount(spec, '/etc/hosts')!.options).toContain('ro');
    expect(mount(spec, SERVICE_ACCOUNT_DIR)!.source).toBe('/scratch/sa');
    expect(mount(spec, SERVICE_ACCOUNT_DIR)!.options).toContain('ro');
    expect(mount(spec, '/sys')!.options).toContain('ro');
  });

  it("unprivileged: containerd's masked and read-only paths, no devices, the memory limit and cpu shares", () => {
    expect(spec.linux.maskedPaths).toEqual(DEFAULT_MASKED_PATHS);
    expect(spec.linux.readonlyPaths).toContain('/proc/sys');
    expect(spec.linux.devices).toEqual([]);
    expect(spec.linux.resources).toEqual({
      devices: [{ allow: false, access: 'rwm' }],
      memory: { limit: 512 * 2 ** 20 },
      cpu: { shares: 51 },
    });
  });
});

describe('containerSpec: the agent, privileged in the host pid namespace', () => {
  const spec = containerSpec(input(agentPod(), { image: { ...IMAGE, user: '0:0', cmd: ['agent'] } }));

  it("shares the host's pid namespace, as root with the host's capabilities and devices", () => {
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual(['ipc', 'mount', 'uts']);
    expect(spec.process.user).toEqual({ uid: 0, gid: 0 });
    expect(spec.process.capabilities.effective).toEqual(HOST.capabilities);
    expect(spec.process.capabilities.bounding).toEqual(HOST.capabilities);
    expect(spec.process.noNewPrivileges).toBe(false);
    expect(spec.linux.devices).toEqual(HOST.devices);
    expect(spec.linux.resources.devices).toEqual([{ allow: true, access: 'rwm' }]);
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(mount(spec, '/sys')!.options).toContain('rw');
    expect(mount(spec, '/sys/fs/cgroup')!.options).toContain('rw');
  });

  it('expands $(NODE_NAME) from spec.nodeName, keeps $$(...) and unknown $(...) as the kubelet does', () => {
    expect(spec.process.args).toEqual([
      'node',
      '/app/bin/container-auditor.js',
      'agent',
      '--node=node-a',
      '--keep=$(NODE_NAME)',
      '--x=$(UNSET)',
    ]);
  });

  it('mounts no API token, and puts hostPaths under the /tmp emptyDir after it', () => {
    const destinations = spec.mounts.map((m) => m.destination);
    expect(destinations.filter((d) => d.startsWith('/var/run/secrets'))).toEqual([]);
    expect(destinations.indexOf('/tmp')).toBeLessThan(destinations.indexOf('/tmp/scratch/handoff'));
    expect(mount(spec, '/tmp/scratch/handoff')).toMatchObject({ source: '/tmp/scratch/handoff' });
    expect(mount(spec, '/run/bundles')!.options).toContain('ro');
    expect(mount(spec, '/tmp/scratch/handoff')!.options).toContain('rw');
  });

  it('refuses a token volume for a pod that does not automount one', () => {
    expect(() => containerSpec(input(agentPod(), { serviceAccountVolume: '/scratch/sa' }))).toThrow(
      /does not automount/,
    );
  });
});

describe('containerSpec refuses what the kubelet refuses, and what it cannot reproduce', () => {
  it('runAsNonRoot with an image that runs as root', () => {
    const pod = operatorPod();
    delete pod.spec!.securityContext!.runAsUser;
    delete pod.spec!.securityContext!.runAsGroup;
    expect(() => containerSpec(input(pod, { image: { ...IMAGE, user: '0:0' } }))).toThrow(
      /container has runAsNonRoot and image will run as root \(pod: "op-abc_container-auditor\(uid-op\)", container: operator\)/,
    );
    // No USER at all is root too.
    expect(() => containerSpec(input(pod, { image: { entrypoint: ['node'] } }))).toThrow(PodSpecError);
    // The image's non-root user passes.
    expect(containerSpec(input(pod)).process.user).toEqual({ uid: 65532, gid: 65532 });
  });

  it('runAsNonRoot with runAsUser 0', () => {
    const pod = operatorPod();
    pod.spec!.containers[0]!.securityContext!.runAsUser = 0;
    expect(() => containerSpec(input(pod))).toThrow(/container's runAsUser breaks non-root policy/);
  });

  it('runAsNonRoot with an image user that is a name', () => {
    const pod = operatorPod();
    delete pod.spec!.securityContext!.runAsUser;
    expect(() => containerSpec(input(pod, { image: { ...IMAGE, user: 'nonroot' } }))).toThrow(
      /non-numeric user \(nonroot\), cannot verify user is non-root/,
    );
  });

  it.each<[string, (pod: V1Pod) => void, RegExp]>([
    ['subPath', (p) => (p.spec!.containers[0]!.volumeMounts![0]!.subPath = 'x'), /subPath/],
    ['envFrom', (p) => (p.spec!.containers[0]!.envFrom = [{ configMapRef: { name: 'x' } }]), /envFrom/],
    [
      'secretKeyRef',
      (p) =>
        (p.spec!.containers[0]!.env = [{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }]),
      /valueFrom other than a fieldRef/,
    ],
    [
      'an unknown fieldRef',
      (p) => (p.spec!.containers[0]!.env = [{ name: 'A', valueFrom: { fieldRef: { fieldPath: 'spec.x' } } }]),
      /fieldRef spec.x/,
    ],
    ['fsGroup', (p) => (p.spec!.securityContext!.fsGroup = 2000), /securityContext.fsGroup/],
    [
      'seLinuxOptions',
      (p) => (p.spec!.containers[0]!.securityContext!.seLinuxOptions = { level: 's0' }),
      /seLinux/,
    ],
    ['hostNetwork', (p) => (p.spec!.hostNetwork = true), /hostNetwork/],
    [
      'a mount of no volume',
      (p) => p.spec!.containers[0]!.volumeMounts!.push({ name: 'nope', mountPath: '/x' }),
      /nope/,
    ],
  ])('%s', (_, change, message) => {
    const pod = operatorPod();
    change(pod);
    expect(() => containerSpec(input(pod))).toThrow(message);
    expect(() => containerSpec(input(pod))).toThrow(PodSpecError);
  });

  it('an automounted token without a volume for it', () => {
    const pod = operatorPod();
    expect(() => containerSpec(input(pod, { serviceAccountVolume: undefined }))).toThrow(/automounted/);
  });
});

describe('the ServiceAccount token is automounted', () => {
  it.each<[boolean | undefined, boolean | undefined, boolean]>([
    [undefined, undefined, true],
    [undefined, false, false],
    [true, false, true],
    [false, true, false],
  ])('pod %s, ServiceAccount %s: %s', (podSetting, saSetting, expected) => {
    const pod = operatorPod();
    if (podSetting !== undefined) pod.spec!.automountServiceAccountToken = podSetting;
    expect(automountsServiceAccountToken(pod, saSetting)).toBe(expected);
  });

  it('not when the ServiceAccount says no and the pod says nothing', () => {
    const spec = containerSpec(
      input(operatorPod(), { serviceAccountAutomount: false, serviceAccountVolume: undefined }),
    );
    expect(mount(spec, SERVICE_ACCOUNT_DIR)).toBeUndefined();
  });
});

describe('command and args against ENTRYPOINT and CMD', () => {
  const env = new Map([['A', 'a']]);
  const container = (c: Partial<V1Container>): V1Container => ({ name: 'c', ...c });
  it.each<[string, Partial<V1Container>, string[]]>([
    ['neither: ENTRYPOINT and CMD', {}, ['node', '/app/bin/container-auditor.js', 'operator']],
    [
      'args: ENTRYPOINT and args',
      { args: ['agent', '$(A)'] },
      ['node', '/app/bin/container-auditor.js', 'agent', 'a'],
    ],
    ['command: the command alone', { command: ['/bin/sh', '$(A)'] }, ['/bin/sh', 'a']],
    ['both: command and args', { command: ['/bin/sh'], args: ['-c', '$(A)'] }, ['/bin/sh', '-c', 'a']],
  ])('%s', (_, c, expected) => {
    expect(commandLine(container(c), IMAGE, env)).toEqual(expected);
  });
});

describe('expandKubeVars', () => {
  const vars: Record<string, string> = { A: 'a', B: '$(A)' };
  it.each([
    ['$(A)', 'a'],
    ['x$(A)y$(A)', 'xaya'],
    ['$$(A)', '$(A)'],
    ['$$$(A)', '$a'],
    ['$(NOPE)', '$(NOPE)'],
    ['$(A', '$(A'],
    ['$x', '$x'],
    ['trailing $', 'trailing $'],
    ['$(B)', '$(A)'],
    ['', ''],
  ])('%s -> %s', (text, expected) => {
    expect(expandKubeVars(text, (n) => vars[n])).toBe(expected);
  });
});

describe('capabilitySet', () => {
  it.each<[string, { add?: string[]; drop?: string[] } | undefined, string[]]>([
    ["none: containerd's defaults", undefined, DEFAULT_CAPABILITIES],
    ['drop ALL', { drop: ['ALL'] }, []],
    ['drop ALL, add one', { drop: ['ALL'], add: ['NET_BIND_SERVICE'] }, ['CAP_NET_BIND_SERVICE']],
    ['add one', { add: ['NET_ADMIN'] }, [...DEFAULT_CAPABILITIES, 'CAP_NET_ADMIN']],
    ['drop one', { drop: ['KILL'] }, DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_KILL')],
    ['add ALL', { add: ['ALL'] }, HOST.capabilities],
  ])('%s', (_, capabilities, expected) => {
    expect(capabilitySet(capabilities, false, HOST.capabilities)).toEqual(expected);
  });

  it("privileged: the host's, whatever is dropped", () => {
    expect(capabilitySet({ drop: ['ALL'] }, true, HOST.capabilities)).toEqual(HOST.capabilities);
  });
});

describe("the kubelet's files", () => {
  it('/etc/hosts: the managed file, host aliases, then the extra names', () => {
    const pod = operatorPod();
    pod.spec!.hostAliases = [{ ip: '10.0.0.1', hostnames: ['a', 'b'] }];
    expect(kubeletHostsFile(pod, '127.0.0.1', { 'op.ns.svc': '127.0.0.1' })).toBe(
      [
        '# Kubernetes-managed hosts file.',
        '127.0.0.1\tlocalhost',
        '::1\tlocalhost ip6-localhost ip6-loopback',
        'fe00::0\tip6-localnet',
        'fe00::0\tip6-mcastprefix',
        'fe00::1\tip6-allnodes',
        'fe00::2\tip6-allrouters',
        '127.0.0.1\top-abc',
        '',
        '# Entries added by HostAliases.',
        '10.0.0.1\ta\tb',
        '',
        '# Added by e2e/support/pod-runner.ts: what cluster DNS would answer.',
        '127.0.0.1\top.ns.svc',
        '',
      ].join('\n'),
    );
  });

  it('/etc/resolv.conf: the search path of ClusterFirst', () => {
    expect(kubeletResolvConf(operatorPod())).toBe(
      'search container-auditor.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n',
    );
    const pod = operatorPod();
    pod.spec!.dnsPolicy = 'Default';
    expect(() => kubeletResolvConf(pod)).toThrow(PodSpecError);
  });
});

describe('probeUrl', () => {
  const container = operatorPod().spec!.containers[0]!;
  it('resolves a named port', () => {
    expect(probeUrl(container, container.readinessProbe, '127.0.0.1')).toBe('http://127.0.0.1:8081/readyz');
  });
  it('takes a number, a host and a scheme', () => {
    expect(
      probeUrl(
        container,
        { httpGet: { port: 9000, host: '10.0.0.2', scheme: 'HTTPS', path: 'x' } },
        '127.0.0.1',
      ),
    ).toBe('https://10.0.0.2:9000/x');
  });
  it('refuses a port name the container does not have, and a probe that is not httpGet', () => {
    expect(() => probeUrl(container, { httpGet: { port: 'nope' } }, '127.0.0.1')).toThrow(
      /no port named nope/,
    );
    expect(() => probeUrl(container, { exec: { command: ['true'] } }, '127.0.0.1')).toThrow(PodSpecError);
  });
});

describe('parseQuantity', () => {
  it.each<[string | number, number]>([
    ['512Mi', 512 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['1G', 1e9],
    ['50m', 0.05],
    ['2', 2],
    [3, 3],
    ['1.5Ki', 1536],
  ])('%s', (q, expected) => {
    expect(parseQuantity(q)).toBeCloseTo(expected);
  });
  it('refuses what it does not read', () => {
    expect(() => parseQuantity('1e3')).toThrow(PodSpecError);
  });
});
