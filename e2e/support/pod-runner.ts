/**
 * A small kubelet stand-in for node tests: one container of a Pod, as the API server holds it, run with the
 * host's runc. Two halves:
 *
 * - containerSpec() (pure): the PodSpec's container, the "image" (ENTRYPOINT, CMD, ENV, USER, WORKDIR: see
 *   imageConfigFromDockerfile) and volumes already materialised on the host, into the OCI runtime config.json
 *   a kubelet with containerd's CRI plugin would have runc run: command and args with `$(VAR)` expansion, env
 *   with fieldRefs, the security contexts (user, runAsNonRoot, read-only root, no_new_privs, capabilities,
 *   privileged), namespaces (hostPID), the kubelet's /etc/hosts, /etc/hostname and /etc/resolv.conf, the
 *   volume mounts, and the default ServiceAccount token volume when it is automounted. What it does not
 *   reproduce it refuses (PodSpecError), rather than run something else than the spec says.
 * - the runner: the emulated image's root (buildImageRoot: read-only binds of the host's /usr and of an app
 *   directory at /app, symlinks mirrored, a minimal /etc), volumes materialised from the API server
 *   (materializeVolumes: Secrets, ConfigMaps, TokenRequest tokens bound to the Pod, emptyDirs, hostPaths), and
 *   runc itself (RuncContainer: `runc run --detach` with a private --root, logs to a file, exec, kill, delete).
 *
 * Deliberate differences from a real node, each also said where it is done:
 * - the network namespace is always the host's: there is no CNI, and the pod must reach the API server on
 *   127.0.0.1 (so ports the pod listens on are the host's);
 * - no seccomp filter: RuntimeDefault is containerd's built-in profile, which runc alone does not have;
 * - no AppArmor or SELinux; no image pull: the image is emulated (buildImageRoot);
 * - the default ServiceAccount volume is what the ServiceAccount admission plugin would add (the test control
 *   plane runs without it), materialised directly: a TokenRequest token, the cluster's CA, the namespace;
 * - of the Services' environment variables only the `kubernetes` Service's (every pod gets those), pointing at
 *   the API server's real address rather than a ClusterIP; the cluster DNS is a test's extra /etc/hosts lines.
 *
 * Requires root and runc (the runner half).
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  CoreV1Api,
  V1Container,
  V1KeyToPath,
  V1ObjectFieldSelector,
  V1Pod,
  V1Probe,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import { evaluate, finalStage, parseDockerfile } from '../../images/dockerfile.js';
import { type CommandResult, runCommand } from './command.js';
import { requestToken } from './credentials.js';

// ------------------------------------------------------------------------------------------------ OCI types

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export interface OciDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: false;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: OciCapabilities;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    namespaces: { type: string }[];
    cgroupsPath: string;
    resources: {
      devices: { allow: boolean; access: string; type?: string; major?: number; minor?: number }[];
      memory?: { limit: number };
      cpu?: { shares?: number; quota?: number; period?: number };
    };
    devices: OciDevice[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

// ------------------------------------------------------------------------------------------------ inputs

/** What the image contributes: as a Dockerfile's final stage sets it (see imageConfigFromDockerfile). */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
  /** USER: uid[:gid], numeric (a name cannot be checked against runAsNonRoot, the kubelet refuses it too). */
  user?: string;
  workdir?: string;
}

/** A volume of the pod as it is on the host: a directory (or file) to bind, or a tmpfs (emptyDir Memory). */
export type VolumeSource = { kind: 'bind'; path: string } | { kind: 'tmpfs'; sizeBytes?: number };

export interface HostFacts {
  /** The capabilities a privileged container gets: this process's effective set (hostCapabilities()). */
  capabilities: string[];
  /** The devices a privileged container gets (hostDevices()). */
  devices: OciDevice[];
}

export interface ContainerSpecInput {
  /** The Pod as the API server holds it (metadata.name, namespace, uid; spec with nodeName). */
  pod: V1Pod;
  /** Which of spec.containers. */
  container: string;
  image: ImageConfig;
  /** The directory standing for the image's root filesystem (buildImageRoot). */
  rootfs: string;
  /** Mounts that are part of the emulated image (buildImageRoot): first, before anything else. */
  imageMounts: OciMount[];
  /** Every volume of spec.volumes the container mounts, by name. */
  volumes: Record<string, VolumeSource>;
  /** The kubelet-managed files: /etc/hosts, /etc/hostname, /etc/resolv.conf, and the termination log. */
  podFiles: { hosts: string; hostname: string; resolvConf: string; terminationLog?: string };
  /**
   * The directory holding token, ca.crt and namespace, mounted at SERVICE_ACCOUNT_DIR: required when the
   * token is automounted (automountsServiceAccountToken), refused when it is not.
   */
  serviceAccountVolume?: string;
  /** The ServiceAccount's automountServiceAccountToken (the pod's own setting wins). */
  serviceAccountAutomount?: boolean;
  /** Where the `kubernetes` Service is: KUBERNETES_SERVICE_HOST and _PORT. */
  kubernetesService: { host: string; port: number };
  /** The pod's IP for /etc/hosts and status.podIP: with the host's network namespace, 127.0.0.1 will do. */
  podIP: string;
  host: HostFacts;
  /** The container's cgroup (cgroupfs path, e.g. /pod-runner-<id>): unique, runc creates and removes it. */
  cgroupsPath: string;
}

/** A pod spec this cannot run as the kubelet would (or one the kubelet refuses: runAsNonRoot as root). */
export class PodSpecError extends Error {}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** What the ServiceAccount admission plugin asks for the default token volume. */
export const SERVICE_ACCOUNT_TOKEN_EXPIRATION_SECONDS = 3607;
/** containerd's PATH when the image sets none; node:*-bookworm-slim sets the same. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** containerd's default capability set (what a container gets unless its securityContext says otherwise). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** containerd's masked and read-only paths of an unprivileged container. */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  '/proc/scsi',
];
export const DEFAULT_READONLY_PATHS = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/** Linux capability numbers to names (through CAP_CHECKPOINT_RESTORE, 40). */
export const CAPABILITY_NAMES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
].map((name) => `CAP_${name}`);

// ------------------------------------------------------------------------------------------------ pure helpers

/**
 * The kubelet's `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion): `$(NAME)` becomes
 * the variable's value when it is defined and stays as written when not; `$$` is a literal `$`; anything else
 * is left alone.
 */
export function expandKubeVars(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += '$(';
        i++;
        continue;
      }
      const name = input.slice(i + 2, close);
      out += lookup(name) ?? `$(${name})`;
      i = close;
    } else {
      out += c + next;
      i++;
    }
  }
  return out;
}

/** A resource quantity ("512Mi", "1G", "50m", "2") as a number (cpu "50m" is 0.05). */
export function parseQuantity(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(quantity.trim());
  if (!m) throw new PodSpecError(`not a quantity this reads: ${quantity}`);
  const factors: Record<string, number> = {
    '': 1,
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
    E: 1e18,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    Ei: 2 ** 60,
  };
  return Number(m[1]) * factors[m[2] ?? '']!;
}

/** Whether the default ServiceAccount token is mounted: the pod's setting, else the ServiceAccount's, else yes. */
export function automountsServiceAccountToken(pod: V1Pod, serviceAccountAutomount?: boolean): boolean {
  return pod.spec?.automountServiceAccountToken ?? serviceAccountAutomount ?? true;
}

/** The pod's host name: spec.hostname, else its name (at most 63 characters), as the kubelet sets it. */
export function podHostname(pod: V1Pod): string {
  return (pod.spec?.hostname ?? pod.metadata?.name ?? '').slice(0, 63);
}

/**
 * /etc/hosts as the kubelet writes it for a pod in a network namespace of its own (managedHostsFileContent),
 * with spec.hostAliases, then `extra` (name -> IP): what cluster DNS would answer, for a test.
 */
export function kubeletHostsFile(pod: V1Pod, podIP: string, extra: Record<string, string> = {}): string {
  const spec = pod.spec ?? { containers: [] };
  const hostname = podHostname(pod);
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  if (spec.subdomain)
    lines.push(
      `${podIP}\t${hostname}.${spec.subdomain}.${pod.metadata?.namespace}.svc.cluster.local\t${hostname}`,
    );
  else lines.push(`${podIP}\t${hostname}`);
  const aliases = spec.hostAliases ?? [];
  if (aliases.length > 0) {
    lines.push('', '# Entries added by HostAliases.');
    for (const alias of aliases) lines.push(`${alias.ip}\t${(alias.hostnames ?? []).join('\t')}`);
  }
  const names = Object.entries(extra);
  if (names.length > 0) {
    lines.push('', '# Added by e2e/support/pod-runner.ts: what cluster DNS would answer.');
    for (const [name, ip] of names) lines.push(`${ip}\t${name}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * /etc/resolv.conf as the kubelet writes it for dnsPolicy ClusterFirst, without a nameserver: no cluster DNS
 * runs (glibc then asks 127.0.0.1, where nothing answers); the names a test needs are in /etc/hosts.
 */
export function kubeletResolvConf(pod: V1Pod): string {
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  if (policy !== 'ClusterFirst')
    throw new PodSpecError(`dnsPolicy ${policy} is not supported by pod-runner (ClusterFirst only)`);
  const ns = pod.metadata?.namespace ?? 'default';
  return `search ${ns}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`;
}

/** The URL a kubelet's httpGet probe asks (a named port resolved through the container's ports). */
export function probeUrl(container: V1Container, probe: V1Probe | undefined, podIP: string): string {
  const get = probe?.httpGet;
  if (!get) throw new PodSpecError(`container ${container.name}: the probe is not an httpGet probe`);
  const port =
    typeof get.port === 'number' || /^\d+$/.test(String(get.port))
      ? Number(get.port)
      : container.ports?.find((p) => p.name === get.port)?.containerPort;
  if (port === undefined)
    throw new PodSpecError(`container ${container.name}: no port named ${String(get.port)}`);
  const scheme = (get.scheme ?? 'HTTP').toLowerCase();
  const host = get.host ?? podIP;
  const path = get.path ?? '/';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}${path.startsWith('/') ? '' : '/'}${path}`;
}

function fieldRefValue(pod: V1Pod, ref: V1ObjectFieldSelector, podIP: string): string {
  const path = ref.fieldPath;
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP':
    case 'status.podIPs':
    case 'status.hostIP':
    case 'status.hostIPs':
      // Host network namespace: the pod's address and the node's are the same.
      return podIP;
    default:
      throw new PodSpecError(`fieldRef ${path} is not supported by pod-runner`);
  }
}

/** The `kubernetes` Service's variables, which the kubelet gives every container. */
function kubernetesServiceEnv(service: { host: string; port: number }): [string, string][] {
  const { host, port } = service;
  return [
    ['KUBERNETES_SERVICE_HOST', host],
    ['KUBERNETES_SERVICE_PORT', String(port)],
    ['KUBERNETES_SERVICE_PORT_HTTPS', String(port)],
    ['KUBERNETES_PORT', `tcp://${host}:${port}`],
    [`KUBERNETES_PORT_${port}_TCP`, `tcp://${host}:${port}`],
    [`KUBERNETES_PORT_${port}_TCP_PROTO`, 'tcp'],
    [`KUBERNETES_PORT_${port}_TCP_PORT`, String(port)],
    [`KUBERNETES_PORT_${port}_TCP_ADDR`, host],
  ];
}

/**
 * The kubelet's part of the environment (makeEnvironmentVariables): the `kubernetes` Service's variables and
 * the container's env, each value expanded with what is defined before it. Also what `$(VAR)` in command and
 * args is expanded with (the image's ENV is not: the kubelet does not know it).
 */
export function kubeletEnv(
  pod: V1Pod,
  container: V1Container,
  service: { host: string; port: number },
  podIP: string,
): Map<string, string> {
  const env = new Map<string, string>(kubernetesServiceEnv(service));
  if (container.envFrom?.length)
    throw new PodSpecError(`container ${container.name}: envFrom is not supported by pod-runner`);
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    let value: string;
    if (from === undefined) value = expandKubeVars(variable.value ?? '', (n) => env.get(n));
    else if (from.fieldRef && !from.secretKeyRef && !from.configMapKeyRef && !from.resourceFieldRef)
      value = fieldRefValue(pod, from.fieldRef, podIP);
    else
      throw new PodSpecError(
        `container ${container.name}: env ${variable.name} takes valueFrom other than a fieldRef, not supported by pod-runner`,
      );
    env.set(variable.name, value);
  }
  return env;
}

/** The process's command line: Kubernetes' command/args against the image's ENTRYPOINT/CMD, expanded. */
export function commandLine(
  container: V1Container,
  image: ImageConfig,
  env: ReadonlyMap<string, string>,
): string[] {
  const expand = (words: string[]) => words.map((w) => expandKubeVars(w, (n) => env.get(n)));
  const command = container.command ?? [];
  const args = container.args ?? [];
  const argv =
    command.length > 0
      ? [...expand(command), ...expand(args)]
      : [...(image.entrypoint ?? []), ...(args.length > 0 ? expand(args) : (image.cmd ?? []))];
  if (argv.length === 0) throw new PodSpecError(`container ${container.name}: no command (image nor spec)`);
  return argv;
}

function parseUser(user: string | undefined): { uid?: number; gid?: number; named?: string } {
  if (user === undefined || user === '') return { uid: 0, gid: 0 };
  const [u, g] = user.split(':');
  if (!/^\d+$/.test(u!)) return { named: user };
  if (g !== undefined && !/^\d+$/.test(g)) return { named: user };
  return { uid: Number(u), ...(g !== undefined ? { gid: Number(g) } : {}) };
}

function defined(object: object | undefined): string[] {
  return Object.entries(object ?? {})
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k]) => k);
}

const POD_SECURITY_KEYS = new Set([
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'seccompProfile',
  'supplementalGroups',
]);
const CONTAINER_SECURITY_KEYS = new Set([
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'seccompProfile',
  'readOnlyRootFilesystem',
  'allowPrivilegeEscalation',
  'capabilities',
  'privileged',
  'procMount',
]);

function capabilityName(name: string): string {
  return name.startsWith('CAP_') ? name : `CAP_${name}`;
}

/** containerd CRI's capability set for a securityContext: ALL in add or drop first, then adds, then drops. */
export function capabilitySet(
  capabilities: { add?: string[]; drop?: string[] } | undefined,
  privileged: boolean,
  host: readonly string[],
): string[] {
  if (privileged) return [...host];
  const add = capabilities?.add ?? [];
  const drop = capabilities?.drop ?? [];
  let set: Set<string>;
  if (add.includes('ALL')) set = new Set(host);
  else if (drop.includes('ALL')) set = new Set();
  else set = new Set(DEFAULT_CAPABILITIES);
  for (const c of add) if (c !== 'ALL') set.add(capabilityName(c));
  for (const c of drop) if (c !== 'ALL') set.delete(capabilityName(c));
  return [...set];
}

function pathDepth(path: string): number {
  return posix.normalize(path).split('/').filter(Boolean).length;
}

/**
 * The OCI runtime config for one container of the pod, as a kubelet and containerd's CRI plugin would make it
 * (see the file's header for what differs). Pure. Throws PodSpecError for what it refuses.
 */
export function containerSpec(input: ContainerSpecInput): OciSpec {
  const { pod, image, podIP } = input;
  const spec = pod.spec;
  if (!spec) throw new PodSpecError('the pod has no spec');
  const podName = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? '';
  const container = spec.containers.find((c) => c.name === input.container);
  if (!container) throw new PodSpecError(`the pod has no container ${input.container}`);
  const where = `(pod: "${podName}_${namespace}(${pod.metadata?.uid ?? ''})", container: ${container.name})`;

  // Security contexts: refuse what is not reproduced, rather than silently run without it.
  const podSc = spec.securityContext ?? {};
  const sc = container.securityContext ?? {};
  for (const key of defined(podSc))
    if (!POD_SECURITY_KEYS.has(key))
      throw new PodSpecError(`pod securityContext.${key} is not supported by pod-runner`);
  for (const key of defined(sc))
    if (!CONTAINER_SECURITY_KEYS.has(key))
      throw new PodSpecError(
        `container ${container.name}: securityContext.${key} is not supported by pod-runner`,
      );
  if (sc.procMount !== undefined && sc.procMount !== 'Default')
    throw new PodSpecError(`container ${container.name}: procMount ${sc.procMount} is not supported`);
  // hostNetwork would change /etc/hosts and the UTS namespace; the others are not reproduced.
  for (const key of ['hostNetwork', 'hostIPC', 'shareProcessNamespace'] as const)
    if (spec[key] === true) throw new PodSpecError(`spec.${key} is not supported by pod-runner`);
  if (spec.hostUsers === false)
    throw new PodSpecError('spec.hostUsers false (user namespaces) is not supported');
  // seccompProfile (pod's or container's) is deliberately not applied: containerd's RuntimeDefault profile is
  // not reproduced here, so the container runs without a seccomp filter.

  const privileged = sc.privileged === true;
  const user = parseUser(image.user);
  const runAsUser = sc.runAsUser ?? podSc.runAsUser;
  const runAsGroup = sc.runAsGroup ?? podSc.runAsGroup;
  const runAsNonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
  if (runAsUser === undefined && user.named !== undefined)
    throw new PodSpecError(
      runAsNonRoot
        ? `container has runAsNonRoot and image has non-numeric user (${user.named}), cannot verify user is non-root ${where}`
        : `image user ${user.named} is not numeric: pod-runner does not look names up ${where}`,
    );
  const uid = runAsUser ?? user.uid!;
  if (runAsNonRoot === true && uid === 0)
    throw new PodSpecError(
      runAsUser !== undefined
        ? `container's runAsUser breaks non-root policy ${where}`
        : `container has runAsNonRoot and image will run as root ${where}`,
    );
  // Without runAsGroup: the image's group when the user is the image's, else 0 (no /etc/passwd lookup).
  const gid = runAsGroup ?? (runAsUser === undefined || runAsUser === user.uid ? (user.gid ?? 0) : 0);
  const additionalGids = podSc.supplementalGroups ?? [];

  const caps = capabilitySet(sc.capabilities, privileged, input.host.capabilities);
  const env = kubeletEnv(pod, container, input.kubernetesService, podIP);
  const processEnv = new Map<string, string>([['PATH', DEFAULT_PATH]]);
  for (const [k, v] of Object.entries(image.env ?? {})) processEnv.set(k, v);
  processEnv.set('HOSTNAME', podHostname(pod));
  for (const [k, v] of env) processEnv.set(k, v);

  // Namespaces: mount, ipc and uts of its own; pid of its own unless hostPID. The network namespace is always
  // the host's: there is no CNI, and the container reaches the API server on 127.0.0.1.
  const namespaces = [{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }];
  if (spec.hostPID !== true) namespaces.push({ type: 'pid' });

  const readonlyRoot = sc.readOnlyRootFilesystem === true;
  const defaults: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'],
    },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'],
    },
  ];

  const bind = (
    source: string,
    destination: string,
    readOnly: boolean,
    propagation = 'rprivate',
  ): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', propagation, readOnly ? 'ro' : 'rw'],
  });
  // The kubelet's files are read-only when the root filesystem is (containerd does so).
  const mounts: OciMount[] = [
    bind(input.podFiles.hostname, '/etc/hostname', readonlyRoot),
    bind(input.podFiles.hosts, '/etc/hosts', readonlyRoot),
    bind(input.podFiles.resolvConf, '/etc/resolv.conf', readonlyRoot),
  ];
  if (container.terminationMessagePath && input.podFiles.terminationLog)
    mounts.push(bind(input.podFiles.terminationLog, container.terminationMessagePath, false));

  const declared = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  for (const mount of container.volumeMounts ?? []) {
    if (!declared.has(mount.name))
      throw new PodSpecError(`container ${container.name}: volumeMount ${mount.name} names no volume`);
    if (mount.subPath || mount.subPathExpr)
      throw new PodSpecError(`container ${container.name}: subPath is not supported by pod-runner`);
    const volume = input.volumes[mount.name];
    if (!volume) throw new PodSpecError(`volume ${mount.name} was not materialised`);
    const propagation =
      mount.mountPropagation === 'Bidirectional'
        ? 'rshared'
        : mount.mountPropagation === 'HostToContainer'
          ? 'rslave'
          : 'rprivate';
    if (propagation === 'rshared' && !privileged)
      throw new PodSpecError(`container ${container.name}: Bidirectional propagation needs privileged`);
    if (volume.kind === 'tmpfs')
      mounts.push({
        destination: mount.mountPath,
        type: 'tmpfs',
        source: 'tmpfs',
        options: [
          'nosuid',
          'nodev',
          'mode=1777',
          ...(volume.sizeBytes ? [`size=${volume.sizeBytes}`] : []),
          mount.readOnly ? 'ro' : 'rw',
        ],
      });
    else mounts.push(bind(volume.path, mount.mountPath, mount.readOnly === true, propagation));
  }

  const automount = automountsServiceAccountToken(pod, input.serviceAccountAutomount);
  if (automount && !(container.volumeMounts ?? []).some((m) => m.mountPath === SERVICE_ACCOUNT_DIR)) {
    if (!input.serviceAccountVolume)
      throw new PodSpecError(
        'the ServiceAccount token is automounted, but no serviceAccountVolume was given',
      );
    mounts.push(bind(input.serviceAccountVolume, SERVICE_ACCOUNT_DIR, true));
  } else if (!automount && input.serviceAccountVolume)
    throw new PodSpecError('a serviceAccountVolume was given, but the pod does not automount the token');

  // Parents before children, as containerd orders them; a volume at a default mount's place replaces it.
  const sorted = mounts
    .map((m, i) => ({ m, i }))
    .sort((a, b) => pathDepth(a.m.destination) - pathDepth(b.m.destination) || a.i - b.i)
    .map(({ m }) => m);
  const taken = new Set(sorted.map((m) => posix.normalize(m.destination)));
  const allMounts = [...input.imageMounts, ...defaults.filter((m) => !taken.has(m.destination)), ...sorted];

  const resources: OciSpec['linux']['resources'] = {
    devices: [{ allow: privileged, access: 'rwm' }],
  };
  const limits = container.resources?.limits ?? {};
  const requests = container.resources?.requests ?? {};
  if (limits.memory !== undefined) resources.memory = { limit: Math.round(parseQuantity(limits.memory)) };
  const cpuRequest = requests.cpu ?? limits.cpu;
  if (cpuRequest !== undefined || limits.cpu !== undefined) {
    resources.cpu = {};
    if (cpuRequest !== undefined)
      resources.cpu.shares = Math.max(2, Math.floor(parseQuantity(cpuRequest) * 1024));
    if (limits.cpu !== undefined) {
      resources.cpu.period = 100_000;
      resources.cpu.quota = Math.max(1000, Math.round(parseQuantity(limits.cpu) * 100_000));
    }
  }

  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid, gid, ...(additionalGids.length > 0 ? { additionalGids } : {}) },
      args: commandLine(container, image, env),
      env: [...processEnv].map(([k, v]) => `${k}=${v}`),
      cwd: container.workingDir ?? image.workdir ?? '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      // The kubelet asks for no_new_privs exactly when allowPrivilegeEscalation is false.
      noNewPrivileges: sc.allowPrivilegeEscalation === false,
    },
    root: { path: input.rootfs, readonly: readonlyRoot },
    hostname: podHostname(pod),
    mounts: allMounts,
    annotations: {
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.container-name': container.name,
      'io.kubernetes.cri.sandbox-name': podName,
      'io.kubernetes.cri.sandbox-namespace': namespace,
      'io.kubernetes.cri.sandbox-uid': pod.metadata?.uid ?? '',
    },
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources,
      devices: privileged ? input.host.devices : [],
      maskedPaths: privileged ? [] : DEFAULT_MASKED_PATHS,
      readonlyPaths: privileged ? [] : DEFAULT_READONLY_PATHS,
    },
  };
}

// ------------------------------------------------------------------------------------------------ the image

/**
 * The image config of a Dockerfile's final stage (images/dockerfile.ts): ENTRYPOINT, CMD, ENV, USER, WORKDIR.
 * What the base image sets is not known there: PATH then comes from containerSpec's default.
 */
export function imageConfigFromDockerfile(path: string): ImageConfig {
  const stage = finalStage(evaluate(parseDockerfile(readFileSync(path, 'utf8'))));
  return {
    ...(stage.entrypoint ? { entrypoint: stage.entrypoint } : {}),
    ...(stage.cmd ? { cmd: stage.cmd } : {}),
    env: stage.env,
    ...(stage.user !== undefined ? { user: stage.user } : {}),
    workdir: stage.workdir,
  };
}

export interface ImageRootOptions {
  /** The host directory the image has at /app (bound read-only). */
  app: string;
  /** /etc/passwd lines besides root's (e.g. the image's useradd). */
  passwd?: string[];
  /** /etc/group lines besides root's. */
  group?: string[];
}

export interface ImageRoot {
  rootfs: string;
  mounts: OciMount[];
}

/** The host's top-level directories an image's programs come from; symlinks (merged /usr) are mirrored. */
const HOST_SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/**
 * The emulated image: `<dir>/rootfs` with the host's /usr (and /bin, /lib... as bind or, where the host has
 * them as symlinks into /usr, the same symlinks), /app bound read-only from `app`, /etc/ssl bound read-only,
 * and a minimal /etc of its own (passwd, group, nsswitch.conf). The binds are returned as mounts.
 *
 * Its Node.js is the one running the tests (the version of .node-version, which the Dockerfiles build on),
 * not whatever node the host's /usr has: as in the official node images, at /usr/local/bin/node, first on
 * PATH. /usr/local is a directory of this image's own holding that link, over the host's, and the Node.js
 * installation is bound read-only at /opt/node.
 */
export function buildImageRoot(dir: string, options: ImageRootOptions): ImageRoot {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  const readOnlyBind = (source: string, destination: string): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'rprivate', 'ro'],
  });
  const mounts: OciMount[] = [];
  for (const path of HOST_SYSTEM_DIRS) {
    let info;
    try {
      info = lstatSync(path);
    } catch {
      continue;
    }
    const target = join(rootfs, path);
    if (lstatOrUndefined(target)) continue;
    if (info.isSymbolicLink()) symlinkSync(readlinkSync(path), target);
    else if (info.isDirectory()) {
      mkdirSync(target);
      mounts.push(readOnlyBind(path, path));
    }
  }
  for (const d of ['app', 'etc/ssl', 'tmp', 'proc', 'sys', 'dev', 'run', 'root'])
    mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  const usrLocal = join(dir, 'usr-local');
  mkdirSync(join(usrLocal, 'bin'), { recursive: true });
  if (!lstatOrUndefined(join(usrLocal, 'bin', 'node')))
    symlinkSync(`/opt/node/bin/${basename(process.execPath)}`, join(usrLocal, 'bin', 'node'));
  mkdirSync(join(rootfs, 'opt', 'node'), { recursive: true });
  mounts.push(readOnlyBind(usrLocal, '/usr/local'));
  mounts.push(readOnlyBind(dirname(dirname(process.execPath)), '/opt/node'));
  mounts.push(readOnlyBind(options.app, '/app'));
  if (existsSync('/etc/ssl')) mounts.push(readOnlyBind('/etc/ssl', '/etc/ssl'));
  writeFileSync(
    join(rootfs, 'etc', 'passwd'),
    ['root:x:0:0:root:/root:/bin/sh', ...(options.passwd ?? [])].join('\n') + '\n',
  );
  writeFileSync(join(rootfs, 'etc', 'group'), ['root:x:0:', ...(options.group ?? [])].join('\n') + '\n');
  writeFileSync(
    join(rootfs, 'etc', 'nsswitch.conf'),
    'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n',
  );
  return { rootfs, mounts };
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------ the host

/** This process's effective capabilities (what containerd gives a privileged container), by name. */
export function hostCapabilities(): string[] {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no CapEff in /proc/self/status');
  const mask = BigInt(`0x${m[1]}`);
  return CAPABILITY_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

/** The host's devices under /dev, as containerd's WithHostDevices lists them for a privileged container. */
export function hostDevices(dir = '/dev'): OciDevice[] {
  const out: OciDevice[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev'].includes(entry.name)) continue;
      out.push(...hostDevices(path));
      continue;
    }
    if (entry.name === 'console') continue;
    let info;
    try {
      info = lstatSync(path);
    } catch {
      continue;
    }
    if (!info.isCharacterDevice() && !info.isBlockDevice()) continue;
    const rdev = info.rdev;
    const high = Math.floor(rdev / 2 ** 32);
    out.push({
      path,
      type: info.isCharacterDevice() ? 'c' : 'b',
      major: ((rdev >>> 8) & 0xfff) | (high & ~0xfff),
      minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00),
      fileMode: info.mode & 0o777,
      uid: info.uid,
      gid: info.gid,
    });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ volumes

export interface MaterializeOptions {
  core: CoreV1Api;
  /** The Pod as created (its uid binds the tokens). */
  pod: V1Pod;
  /** Where the volumes' directories go (created). */
  dir: string;
  /** PEM of the cluster's CA: ca.crt of the default ServiceAccount volume. */
  clusterCa: string;
}

function writeItem(dir: string, path: string, content: Buffer | string, mode: number): void {
  const normalized = posix.normalize(path);
  if (normalized.startsWith('..') || posix.isAbsolute(normalized))
    throw new PodSpecError(`volume item path ${path} leaves the volume`);
  const file = join(dir, normalized);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content, { mode });
  chmodSync(file, mode);
}

/** Writes `data` (key -> content) as files, only `items` when given (each with its path and mode). */
function writeKeys(
  dir: string,
  what: string,
  data: Record<string, Buffer | string>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number,
  optional: boolean,
): void {
  if (!items) {
    for (const [key, content] of Object.entries(data)) writeItem(dir, key, content, defaultMode);
    return;
  }
  for (const item of items) {
    const content = data[item.key];
    if (content === undefined) {
      if (optional) continue;
      throw new PodSpecError(`${what} has no key ${item.key}`);
    }
    writeItem(dir, item.path, content, item.mode ?? defaultMode);
  }
}

function secretData(data: Record<string, string> | undefined): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

async function readSecret(core: CoreV1Api, namespace: string, name: string, optional: boolean) {
  try {
    return secretData((await core.readNamespacedSecret({ name, namespace })).data);
  } catch (error) {
    if (optional && (error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

async function readConfigMap(core: CoreV1Api, namespace: string, name: string, optional: boolean) {
  try {
    const cm = await core.readNamespacedConfigMap({ name, namespace });
    return { ...(cm.data ?? {}), ...secretData(cm.binaryData) } as Record<string, Buffer | string>;
  } catch (error) {
    if (optional && (error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

/**
 * Every volume of the pod, as the kubelet would set it up, under `dir/<name>`: Secrets and ConfigMaps (only
 * their `items` when given, with the modes), projected volumes (ServiceAccount tokens from the TokenRequest
 * API with the volume's audience and expiration, bound to the Pod; Secrets, ConfigMaps, downward API
 * fieldRefs), emptyDirs (a fresh 0777 directory; a tmpfs for medium Memory), hostPaths (the host's path;
 * DirectoryOrCreate creates it 0755). Other volume types are refused.
 */
export async function materializeVolumes(options: MaterializeOptions): Promise<Record<string, VolumeSource>> {
  const { core, pod, dir } = options;
  const namespace = pod.metadata!.namespace!;
  const out: Record<string, VolumeSource> = {};
  for (const volume of pod.spec?.volumes ?? []) {
    const path = join(dir, volume.name);
    const kinds = defined(volume).filter((k) => k !== 'name');
    if (kinds.length !== 1) throw new PodSpecError(`volume ${volume.name}: ${kinds.join(', ')}`);
    if (volume.secret) {
      const s = volume.secret;
      mkdirSync(path, { recursive: true });
      const data = await readSecret(core, namespace, s.secretName!, s.optional === true);
      if (data)
        writeKeys(path, `Secret ${s.secretName}`, data, s.items, s.defaultMode ?? 0o644, s.optional === true);
      out[volume.name] = { kind: 'bind', path };
    } else if (volume.configMap) {
      const c = volume.configMap;
      mkdirSync(path, { recursive: true });
      const data = await readConfigMap(core, namespace, c.name!, c.optional === true);
      if (data)
        writeKeys(path, `ConfigMap ${c.name}`, data, c.items, c.defaultMode ?? 0o644, c.optional === true);
      out[volume.name] = { kind: 'bind', path };
    } else if (volume.projected) {
      mkdirSync(path, { recursive: true });
      const mode = volume.projected.defaultMode ?? 0o644;
      for (const source of volume.projected.sources ?? []) {
        const kind = defined(source);
        if (kind.length !== 1)
          throw new PodSpecError(`volume ${volume.name}: a source with ${kind.join(', ')}`);
        if (source.serviceAccountToken) {
          const t = source.serviceAccountToken;
          const token = await requestToken(core, {
            namespace,
            serviceAccount: pod.spec!.serviceAccountName ?? 'default',
            audiences: t.audience ? [t.audience] : [],
            boundPod: pod,
            expirationSeconds: t.expirationSeconds ?? 3600,
          });
          writeItem(path, t.path, token, mode);
        } else if (source.secret) {
          const s = source.secret;
          const data = await readSecret(core, namespace, s.name!, s.optional === true);
          if (data) writeKeys(path, `Secret ${s.name}`, data, s.items, mode, s.optional === true);
        } else if (source.configMap) {
          const c = source.configMap;
          const data = await readConfigMap(core, namespace, c.name!, c.optional === true);
          if (data) writeKeys(path, `ConfigMap ${c.name}`, data, c.items, mode, c.optional === true);
        } else if (source.downwardAPI) {
          for (const item of source.downwardAPI.items ?? []) {
            if (!item.fieldRef)
              throw new PodSpecError(`volume ${volume.name}: downwardAPI other than fieldRef`);
            writeItem(path, item.path, fieldRefValue(pod, item.fieldRef, '127.0.0.1'), item.mode ?? mode);
          }
        } else throw new PodSpecError(`volume ${volume.name}: projected ${kind[0]} is not supported`);
      }
      out[volume.name] = { kind: 'bind', path };
    } else if (volume.emptyDir) {
      const size = volume.emptyDir.sizeLimit;
      if (volume.emptyDir.medium === 'Memory')
        out[volume.name] = {
          kind: 'tmpfs',
          ...(size !== undefined ? { sizeBytes: Math.round(parseQuantity(size)) } : {}),
        };
      else if (!volume.emptyDir.medium) {
        // On disk, the sizeLimit is enforced by eviction, which nothing does here.
        mkdirSync(path, { recursive: true });
        chmodSync(path, 0o777);
        out[volume.name] = { kind: 'bind', path };
      } else throw new PodSpecError(`volume ${volume.name}: emptyDir medium ${volume.emptyDir.medium}`);
    } else if (volume.hostPath) {
      const { path: hostPath, type = '' } = volume.hostPath;
      const info = lstatOrUndefined(hostPath);
      switch (type) {
        case 'DirectoryOrCreate':
          if (!info) {
            mkdirSync(hostPath, { recursive: true, mode: 0o755 });
            chmodSync(hostPath, 0o755);
          } else if (!statSync(hostPath).isDirectory())
            throw new PodSpecError(`hostPath ${hostPath} exists and is not a directory`);
          break;
        case 'Directory':
          if (!info || !statSync(hostPath).isDirectory())
            throw new PodSpecError(`hostPath type check failed: ${hostPath} is not a directory`);
          break;
        case 'FileOrCreate':
          if (!info) writeFileSync(hostPath, '', { mode: 0o644 });
          else if (!statSync(hostPath).isFile())
            throw new PodSpecError(`hostPath ${hostPath} exists and is not a file`);
          break;
        case 'File':
          if (!info || !statSync(hostPath).isFile())
            throw new PodSpecError(`hostPath type check failed: ${hostPath} is not a file`);
          break;
        case '':
          break;
        default:
          throw new PodSpecError(`hostPath type ${type} is not supported by pod-runner`);
      }
      out[volume.name] = { kind: 'bind', path: hostPath };
    } else
      throw new PodSpecError(`volume ${volume.name}: ${kinds[0]} volumes are not supported by pod-runner`);
  }
  return out;
}

/**
 * The default ServiceAccount volume, as the ServiceAccount admission plugin would project it: a token from the
 * TokenRequest API for the API server's default audience, bound to the Pod, valid 3607 s; the cluster's CA;
 * the namespace. Files 0644, like the projected volume's defaultMode.
 */
export async function materializeServiceAccountVolume(options: MaterializeOptions): Promise<string> {
  const { core, pod, dir } = options;
  const path = join(dir, 'kube-api-access');
  mkdirSync(path, { recursive: true });
  const token = await requestToken(core, {
    namespace: pod.metadata!.namespace!,
    serviceAccount: pod.spec!.serviceAccountName ?? 'default',
    audiences: [],
    boundPod: pod,
    expirationSeconds: SERVICE_ACCOUNT_TOKEN_EXPIRATION_SECONDS,
  });
  writeItem(path, 'token', token, 0o644);
  writeItem(path, 'ca.crt', options.clusterCa, 0o644);
  writeItem(path, 'namespace', pod.metadata!.namespace!, 0o644);
  return path;
}

// ------------------------------------------------------------------------------------------------ runc

export const RUNC = (() => {
  const found = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).stdout.trim();
  return found || '/usr/sbin/runc';
})();

export interface RuncRunOptions {
  /** Unique among runc's containers under `root`. */
  id: string;
  /** runc's --root: a private one, so nothing meets containerd's or another test's containers. */
  root: string;
  /** The bundle directory: config.json is written there. */
  bundle: string;
  config: OciSpec;
  /** The container's stdout and stderr (and runc's own errors), appended. */
  logFile: string;
}

export interface RuncState {
  status: string;
  pid: number;
}

/** One container run by runc: `runc run --detach`, then state, exec, kill and delete. */
export class RuncContainer {
  private deleted = false;

  private constructor(
    readonly id: string,
    readonly root: string,
    readonly bundle: string,
    readonly logFile: string,
    /** The container's init process, as the host sees it. */
    readonly pid: number,
    readonly config: OciSpec,
  ) {}

  /** Writes config.json and runs the container detached; throws with its log when runc fails. */
  static async run(options: RuncRunOptions): Promise<RuncContainer> {
    mkdirSync(options.bundle, { recursive: true });
    mkdirSync(options.root, { recursive: true, mode: 0o700 });
    writeFileSync(join(options.bundle, 'config.json'), JSON.stringify(options.config, null, 2));
    const pidFile = join(options.bundle, 'init.pid');
    const log = openSync(options.logFile, 'a');
    let code: number | null;
    try {
      // runc's stdio are passed on to the container (no terminal): the log file's descriptors.
      const child = spawn(
        RUNC,
        [
          '--root',
          options.root,
          'run',
          '--detach',
          '--bundle',
          options.bundle,
          '--pid-file',
          pidFile,
          options.id,
        ],
        { stdio: ['ignore', log, log] },
      );
      code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', resolve);
      });
    } finally {
      closeSync(log);
    }
    const container = new RuncContainer(
      options.id,
      options.root,
      options.bundle,
      options.logFile,
      existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0,
      options.config,
    );
    if (code !== 0) {
      await container.delete();
      throw new Error(`runc run ${options.id} exited ${code}:\n${container.log().slice(-4000)}`);
    }
    return container;
  }

  /** What the container has written so far (stdout and stderr, interleaved). */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  private runc(args: string[], timeoutMs = 30_000): Promise<CommandResult> {
    return runCommand(RUNC, ['--root', this.root, ...args], { timeoutMs });
  }

  /** `runc state`, or undefined once the container is gone. */
  async state(): Promise<RuncState | undefined> {
    const result = await this.runc(['state', this.id]);
    if (result.code !== 0) return undefined;
    const state = JSON.parse(result.stdout) as { status: string; pid: number };
    return { status: state.status, pid: state.pid };
  }

  /** Runs a process in the container (`runc exec`), with the container's user, capabilities and env. */
  exec(args: string[], timeoutMs = 30_000): Promise<CommandResult> {
    return this.runc(['exec', this.id, ...args], timeoutMs);
  }

  /** SIGTERM, up to `graceMs` to stop, then SIGKILL (every process of the container); then delete. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.deleted) return;
    await this.runc(['kill', this.id, 'TERM']);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      const state = await this.state();
      if (!state || state.status === 'stopped') break;
      await sleep(200);
    }
    await this.runc(['kill', '--all', this.id, 'KILL']);
    await this.delete();
  }

  /** `runc delete --force` (kills what still runs); removes the cgroup if runc left it. Idempotent. */
  async delete(): Promise<void> {
    if (this.deleted) return;
    const result = await this.runc(['delete', '--force', this.id]);
    if (result.code !== 0 && !/does not exist|not found/.test(result.stderr))
      throw new Error(`runc delete ${this.id} exited ${result.code}: ${result.stderr}`);
    this.deleted = true;
    removeCgroup(this.config.linux.cgroupsPath);
  }
}

/** Removes an (empty) cgroupfs directory from every hierarchy, v1 or v2; ignores what is not there. */
function removeCgroup(path: string): void {
  if (!path.startsWith('/') || path.split('/').filter(Boolean).length !== 1) return;
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? ['/sys/fs/cgroup']
    : readdirSync('/sys/fs/cgroup').map((d) => join('/sys/fs/cgroup', d));
  for (const root of roots) {
    try {
      rmdirSync(join(root, path));
    } catch {
      // not there, or not empty (then runc's delete has said why)
    }
  }
}

// ------------------------------------------------------------------------------------------------ all together

export interface StartPodContainerOptions {
  core: CoreV1Api;
  /** The Pod as the API server holds it (created, with spec.nodeName). */
  pod: V1Pod;
  container: string;
  image: ImageConfig;
  imageRoot: ImageRootOptions;
  /** The pod's ServiceAccount, for its automountServiceAccountToken. */
  serviceAccount?: V1ServiceAccount;
  /** The directory for this container: rootfs, pod files, volumes, bundle, log. */
  dir: string;
  runcRoot: string;
  id: string;
  clusterCa: string;
  kubernetesService: { host: string; port: number };
  /** Extra /etc/hosts entries, name -> IP (what cluster DNS would answer). */
  extraHosts?: Record<string, string>;
  podIP?: string;
  host?: HostFacts;
}

export interface StartedPodContainer {
  container: RuncContainer;
  /** The OCI config it runs with. */
  config: OciSpec;
  /** The materialised volumes, by name. */
  volumes: Record<string, VolumeSource>;
}

/** Materialises what the container needs and runs it with runc; the caller stops it (RuncContainer.stop). */
export async function startPodContainer(options: StartPodContainerOptions): Promise<StartedPodContainer> {
  const { pod, dir } = options;
  const podIP = options.podIP ?? '127.0.0.1';
  mkdirSync(dir, { recursive: true });
  const image = buildImageRoot(dir, options.imageRoot);
  const podFiles = {
    hosts: join(dir, 'etc-hosts'),
    hostname: join(dir, 'hostname'),
    resolvConf: join(dir, 'resolv.conf'),
    terminationLog: join(dir, 'termination-log'),
  };
  writeFileSync(podFiles.hosts, kubeletHostsFile(pod, podIP, options.extraHosts));
  writeFileSync(podFiles.hostname, `${podHostname(pod)}\n`);
  writeFileSync(podFiles.resolvConf, kubeletResolvConf(pod));
  writeFileSync(podFiles.terminationLog, '', { mode: 0o666 });
  chmodSync(podFiles.terminationLog, 0o666);
  const materialize = { core: options.core, pod, dir: join(dir, 'volumes'), clusterCa: options.clusterCa };
  const volumes = await materializeVolumes(materialize);
  const saAutomount = options.serviceAccount?.automountServiceAccountToken;
  const serviceAccountVolume = automountsServiceAccountToken(pod, saAutomount)
    ? await materializeServiceAccountVolume(materialize)
    : undefined;
  const config = containerSpec({
    pod,
    container: options.container,
    image: options.image,
    rootfs: image.rootfs,
    imageMounts: image.mounts,
    volumes,
    podFiles,
    ...(serviceAccountVolume ? { serviceAccountVolume } : {}),
    ...(saAutomount !== undefined ? { serviceAccountAutomount: saAutomount } : {}),
    kubernetesService: options.kubernetesService,
    podIP,
    host: options.host ?? { capabilities: hostCapabilities(), devices: hostDevices() },
    cgroupsPath: `/pod-runner-${options.id}`,
  });
  const container = await RuncContainer.run({
    id: options.id,
    root: options.runcRoot,
    bundle: join(dir, 'bundle'),
    config,
    logFile: join(dir, 'container.log'),
  });
  return { container, config, volumes };
}
