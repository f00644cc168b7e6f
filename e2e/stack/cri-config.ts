/**
 * What the node stack (stack.ts) writes for containerd's CRI plugin and sends through crictl, as pure
 * functions: the CRI section of containerd's config, crictl's config, and a pod's sandbox and container
 * configs as a kubelet sends them for a host-network pod.
 */

/** containerd's CRI sandbox_image in the stack's config: built from e2e/stack/pause.c. */
export const PAUSE_IMAGE = 'localhost/container-auditor/pause:1';
/** The shell image (buildShellImage in e2e/support/image.ts): runs `sleep infinity`. */
export const DEMO_IMAGE = 'localhost/container-auditor/demo-shell:1';
/** The runtime handler (a RuntimeClass's `handler`) whose runtime binary is the runc wrapper. */
export const AUDITED_HANDLER = 'container-auditor';
/** The handler of pods without a RuntimeClass: the host's runc. */
export const DEFAULT_HANDLER = 'runc';
/** containerd's namespace for everything the CRI does. */
export const CRI_NAMESPACE = 'k8s.io';

export interface CriConfigPaths {
  /** The host's runc (the `runc` handler's BinaryName). */
  runc: string;
  /** The `container-auditor` handler's BinaryName: a script that runs the wrapper with its settings. */
  auditedRuntime: string;
  /** runc's --root for both handlers (runc adds the namespace). */
  runcRoot: string;
  /** A private CNI directory (bin/ and net.d/ in it), so the host's /etc/cni/net.d is neither read nor made. */
  cniDir: string;
}

const toml = (s: string) => JSON.stringify(s);

/** The CRI plugin's section of a containerd 1.6 config (version 2), appended to Containerd's own. */
export function criConfig(paths: CriConfigPaths): string {
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  const handler = (name: string, binary: string, why: string) => [
    `    # ${why}`,
    `    ${cri}.containerd.runtimes.${name}]`,
    '      runtime_type = "io.containerd.runc.v2"',
    `      ${cri}.containerd.runtimes.${name}.options]`,
    `        BinaryName = ${toml(binary)}`,
    `        Root = ${toml(paths.runcRoot)}`,
    '        SystemdCgroup = false',
  ];
  return [
    `${cri}]`,
    `  sandbox_image = ${toml(PAUSE_IMAGE)}`,
    "  # exec/attach streams: loopback, a free port (a fixed port would collide with another stack's)",
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  disable_apparmor = true',
    '  enable_selinux = false',
    '  # containerd gives a sandbox oom_score_adj -998 and runc then fails with "failed to update',
    '  # /proc/self/oom_score_adj: Permission denied" where lowering it is not allowed. Clamp to containerd\'s.',
    '  restrict_oom_score_adj = true',
    `  ${cri}.containerd]`,
    '    snapshotter = "overlayfs"',
    `    default_runtime_name = ${toml(DEFAULT_HANDLER)}`,
    ...handler(DEFAULT_HANDLER, paths.runc, "Pods without a RuntimeClass: the host's runc."),
    ...handler(
      AUDITED_HANDLER,
      paths.auditedRuntime,
      "RuntimeClass handler container-auditor: the wrapper, through a script that sets its configuration (the shim does not pass containerd's environment on).",
    ),
    '  # Host-network pods need no CNI plugin, but the CRI plugin watches (and creates) a configuration directory.',
    `  ${cri}.cni]`,
    `    bin_dir = ${toml(`${paths.cniDir}/bin`)}`,
    `    conf_dir = ${toml(`${paths.cniDir}/net.d`)}`,
    '',
  ].join('\n');
}

/** crictl's config file for a containerd at `socket` (CRI and images on the same socket). */
export function crictlConfig(socket: string): string {
  return [
    `runtime-endpoint: unix://${socket}`,
    `image-endpoint: unix://${socket}`,
    'timeout: 30',
    'debug: false',
    'pull-image-on-create: false',
    '',
  ].join('\n');
}

/** A pod as the kubelet would ask for it: metadata from a Pod object, one container. */
export interface PodSpec {
  name: string;
  namespace: string;
  uid: string;
  /** The container's name; default `main`. */
  container?: string;
  /** The runtime handler (RuntimeClass handler); default AUDITED_HANDLER. DEFAULT_HANDLER for plain runc. */
  runtimeHandler?: string;
  /** Default DEMO_IMAGE. */
  image?: string;
  /** The container's command; default the image's (`sleep infinity` for DEMO_IMAGE). */
  command?: string[];
}

const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Why a pod spec cannot be run (names that would not be a Pod's), or undefined if it can. */
export function podSpecProblem(spec: PodSpec): string | undefined {
  for (const [field, value] of [
    ['name', spec.name],
    ['namespace', spec.namespace],
    ['container', spec.container ?? 'main'],
  ] as const) {
    if (!DNS_NAME.test(value)) return `${field} must be a DNS name, got '${value}'`;
  }
  if (!/^[A-Za-z0-9][-A-Za-z0-9]*$/.test(spec.uid))
    return `uid must be letters, digits and dashes, got '${spec.uid}'`;
  const handler = spec.runtimeHandler ?? AUDITED_HANDLER;
  if (!/^[A-Za-z0-9][-A-Za-z0-9_.]*$/.test(handler)) return `bad runtime handler '${handler}'`;
  return undefined;
}

/** NamespaceMode NODE (the node's namespace) and POD, in the CRI's enumeration. */
const NODE = 2;
const POD = 0;
const HOST_NAMESPACES = { namespace_options: { network: NODE, pid: 1, ipc: POD } };

/**
 * The sandbox config a kubelet sends for a host-network pod: no hostname (the pod has the node's UTS namespace,
 * where runc refuses to set one), its cgroup under `cgroupRoot` (cgroupfs, like the kubelet's /kubepods).
 */
export function sandboxConfig(spec: PodSpec, logDirectory: string, cgroupRoot: string): object {
  return {
    metadata: { name: spec.name, namespace: spec.namespace, uid: spec.uid, attempt: 0 },
    log_directory: logDirectory,
    labels: {
      'io.kubernetes.pod.name': spec.name,
      'io.kubernetes.pod.namespace': spec.namespace,
      'io.kubernetes.pod.uid': spec.uid,
    },
    annotations: {},
    linux: { cgroup_parent: `/${cgroupRoot}/pod${spec.uid}`, security_context: HOST_NAMESPACES },
  };
}

/** The config of the pod's one container. */
export function containerConfig(spec: PodSpec): object {
  const container = spec.container ?? 'main';
  return {
    metadata: { name: container, attempt: 0 },
    image: { image: spec.image ?? DEMO_IMAGE },
    ...(spec.command?.length ? { command: spec.command } : {}),
    log_path: `${container}.log`,
    labels: {
      'io.kubernetes.container.name': container,
      'io.kubernetes.pod.name': spec.name,
      'io.kubernetes.pod.namespace': spec.namespace,
      'io.kubernetes.pod.uid': spec.uid,
    },
    linux: { security_context: HOST_NAMESPACES },
  };
}
