/** The node stack's pure parts: what containerd's CRI plugin is told, and what a pod's configs say. */
import {
  AUDITED_HANDLER,
  containerConfig,
  criConfig,
  crictlConfig,
  DEFAULT_HANDLER,
  DEMO_IMAGE,
  PAUSE_IMAGE,
  podSpecProblem,
  sandboxConfig,
} from './cri-config.js';

const paths = {
  runc: '/usr/sbin/runc',
  auditedRuntime: '/s/runtime/container-auditor-runc',
  runcRoot: '/s/containerd/runc',
  cniDir: '/s/containerd/cni',
};

test('the CRI section names both handlers, our sandbox image, and private CNI directories', () => {
  const toml = criConfig(paths);
  expect(toml).toContain(`sandbox_image = "${PAUSE_IMAGE}"`);
  expect(toml).toContain(`default_runtime_name = "${DEFAULT_HANDLER}"`);
  for (const [handler, binary] of [
    [DEFAULT_HANDLER, paths.runc],
    [AUDITED_HANDLER, paths.auditedRuntime],
  ]) {
    const section = toml.split(`containerd.runtimes.${handler}.options]`)[1]!;
    expect(section.split('\n').slice(1, 4)).toEqual([
      `        BinaryName = "${binary}"`,
      `        Root = "${paths.runcRoot}"`,
      '        SystemdCgroup = false',
    ]);
  }
  expect(toml).toContain('bin_dir = "/s/containerd/cni/bin"');
  expect(toml).toContain('conf_dir = "/s/containerd/cni/net.d"');
  expect(toml).toContain('restrict_oom_score_adj = true');
  // A path with a quote stays one TOML string.
  expect(criConfig({ ...paths, runc: '/odd"path' })).toContain('BinaryName = "/odd\\"path"');
});

test("crictl's config points both endpoints at the socket", () => {
  expect(crictlConfig('/s/c.sock')).toMatch(
    /^runtime-endpoint: unix:\/\/\/s\/c\.sock\nimage-endpoint: unix:\/\/\/s\/c\.sock\n/,
  );
});

test('a pod spec is checked the way a Pod object would be', () => {
  const pod = { name: 'web', namespace: 'shop', uid: '0b1c-2d' };
  expect(podSpecProblem(pod)).toBeUndefined();
  expect(podSpecProblem({ ...pod, name: 'Web' })).toBe("name must be a DNS name, got 'Web'");
  expect(podSpecProblem({ ...pod, namespace: '-x' })).toBe("namespace must be a DNS name, got '-x'");
  expect(podSpecProblem({ ...pod, container: 'a_b' })).toBe("container must be a DNS name, got 'a_b'");
  expect(podSpecProblem({ ...pod, uid: 'a/b' })).toBe("uid must be letters, digits and dashes, got 'a/b'");
  expect(podSpecProblem({ ...pod, runtimeHandler: 'x y' })).toBe("bad runtime handler 'x y'");
});

test("the sandbox and container configs are a host-network pod's, labelled with the Pod's metadata", () => {
  const pod = { name: 'web', namespace: 'shop', uid: 'u-1' };
  const hostNamespaces = { namespace_options: { network: 2, pid: 1, ipc: 0 } };
  expect(sandboxConfig(pod, '/logs', 'ca-stack-abc')).toEqual({
    metadata: { ...pod, attempt: 0 },
    log_directory: '/logs',
    labels: {
      'io.kubernetes.pod.name': 'web',
      'io.kubernetes.pod.namespace': 'shop',
      'io.kubernetes.pod.uid': 'u-1',
    },
    annotations: {},
    linux: { cgroup_parent: '/ca-stack-abc/podu-1', security_context: hostNamespaces },
  });
  expect(containerConfig(pod)).toEqual({
    metadata: { name: 'main', attempt: 0 },
    image: { image: DEMO_IMAGE },
    log_path: 'main.log',
    labels: {
      'io.kubernetes.container.name': 'main',
      'io.kubernetes.pod.name': 'web',
      'io.kubernetes.pod.namespace': 'shop',
      'io.kubernetes.pod.uid': 'u-1',
    },
    linux: { security_context: hostNamespaces },
  });
  expect(
    containerConfig({ ...pod, container: 'app', image: 'x:1', command: ['sh', '-c', 'true'] }),
  ).toMatchObject({
    metadata: { name: 'app' },
    image: { image: 'x:1' },
    command: ['sh', '-c', 'true'],
  });
});
