/**
 * What the agent needs from a container's OCI bundle (`<bundle>/config.json`, the spec runc was given):
 *
 *   root.path          the root filesystem (relative to the bundle or absolute): where its bash lives
 *   process.env        PATH, for bash candidates beyond the usual three
 *   process.args       what the container runs, for logs
 *   annotations        who the container is: containerd's CRI plugin names the pod and container there
 *   linux.namespaces   which namespaces it was asked to get (a container sharing the host's mount
 *                      namespace cannot be told apart from the host by mntns)
 *
 * The bundle path comes from a hand-off (absolute and normal, checked by api/handoff/v1.ts), and the file is
 * containerd's, but a node runs many things as root: it is opened O_NOFOLLOW | O_NONBLOCK (a symlink is
 * refused, a FIFO cannot block the agent), read only if it is a regular file of bounded size, and parsed
 * with a schema of only the fields above; everything else in it is ignored, not validated.
 *
 * identityFromAnnotations and bashCandidates are pure; readBundle is the only I/O.
 */
import { parseJson } from '../../api/parse-json.js';
import { readRegularFile } from '../../common/files.js';
import { join, posix } from 'node:path';
import { z } from 'zod';
import { DEFAULT_BASH_CANDIDATES } from '../targets/resolve.js';

/** containerd's own specs are a few KiB; a large env or many mounts stay far below this. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** PATH directories turned into candidates; each costs a few lstat calls per container. */
export const MAX_PATH_DIRS = 64;
/** Longer annotation values are not identities (Kubernetes names are at most 253 bytes, images ~4 KiB). */
const MAX_IDENTITY_VALUE = 4096;

const Path = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.includes('\0'), { message: 'contains NUL' });

/**
 * Loose objects: the spec has many more fields, and a newer runtime adds some. Types are those of the
 * runtime-spec Go structs: a config where they differ was refused by runc, so no container came of it.
 */
export const BundleConfig = z.looseObject({
  root: z.looseObject({ path: Path, readonly: z.boolean().optional() }),
  process: z
    .looseObject({
      args: z.array(z.string()).optional(),
      env: z.array(z.string()).optional(),
    })
    .optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  linux: z
    .looseObject({
      namespaces: z.array(z.looseObject({ type: z.string(), path: z.string().optional() })).optional(),
    })
    .optional(),
});
export type BundleConfig = z.infer<typeof BundleConfig>;

export type BundleFailure = 'unreadable' | 'not-regular-file' | 'oversized' | 'not-json' | 'invalid';

export type BundleResult =
  | { ok: true; config: BundleConfig; /** Host path of the root filesystem, normal form. */ rootfs: string }
  | { ok: false; reason: BundleFailure; detail: string };

/** The root filesystem's host path: root.path as is when absolute, else relative to the bundle. */
export function rootfsPath(bundle: string, rootPath: string): string {
  return posix.resolve(bundle, rootPath);
}

/** Parses config.json's text. Pure; never throws. */
export function parseBundleConfig(bundle: string, text: string): BundleResult {
  const parsed = parseJson(BundleConfig, text);
  if (!parsed.ok) return parsed;
  return { ok: true, config: parsed.value, rootfs: rootfsPath(bundle, parsed.value.root.path) };
}

/** Reads and parses `<bundle>/config.json`. Never throws: every failure is a value with a reason. */
export async function readBundle(bundle: string): Promise<BundleResult> {
  const read = await readRegularFile(join(bundle, 'config.json'), MAX_CONFIG_BYTES);
  if (!read.ok) return read;
  return parseBundleConfig(bundle, read.data.toString('utf8'));
}

// ---- identity ----

/** The annotations containerd's CRI plugin puts in every spec it writes (containerd 1.6 pkg/cri/annotations). */
export const CriAnnotation = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  containerName: 'io.kubernetes.cri.container-name',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

export interface ContainerIdentity {
  /** 'sandbox': a pod's pause container (nobody types in it); 'unknown': not started by the CRI plugin. */
  kind: 'sandbox' | 'container' | 'unknown';
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  containerName?: string;
  image?: string;
  /** The pod sandbox's container id (a sandbox's own id for a sandbox). */
  sandboxId?: string;
}

/** Who a container is, from its spec's annotations. Pure; absent or odd values are left out, not guessed. */
export function identityFromAnnotations(
  annotations: Readonly<Record<string, string>> = {},
): ContainerIdentity {
  const get = (key: string): string | undefined => {
    // Own properties only: a key named like an Object.prototype member must not read the prototype.
    if (!Object.prototype.hasOwnProperty.call(annotations, key)) return undefined;
    const value = annotations[key];
    return typeof value === 'string' && value.length > 0 && value.length <= MAX_IDENTITY_VALUE
      ? value
      : undefined;
  };
  const type = get(CriAnnotation.containerType);
  const identity: ContainerIdentity = {
    kind: type === 'sandbox' || type === 'container' ? type : 'unknown',
  };
  const fields: [keyof Omit<ContainerIdentity, 'kind'>, string][] = [
    ['podNamespace', CriAnnotation.sandboxNamespace],
    ['podName', CriAnnotation.sandboxName],
    ['podUid', CriAnnotation.sandboxUid],
    ['containerName', CriAnnotation.containerName],
    ['image', CriAnnotation.imageName],
    ['sandboxId', CriAnnotation.sandboxId],
  ];
  for (const [field, key] of fields) {
    const value = get(key);
    if (value !== undefined) identity[field] = value;
  }
  return identity;
}

// ---- bash candidates ----

/**
 * Where bash may be inside the container: the usual places, then `<dir>/bash` for every absolute directory
 * of the spec's PATH (every PATH= entry: which one a shell sees depends on who reads the environment, and a
 * spare candidate only costs a lookup). Deduplicated, in order, at most MAX_PATH_DIRS directories. Pure.
 */
export function bashCandidates(env: readonly string[] = []): string[] {
  const candidates = new Set<string>(DEFAULT_BASH_CANDIDATES);
  let dirs = 0;
  for (const variable of env) {
    if (!variable.startsWith('PATH=')) continue;
    for (const dir of variable.slice('PATH='.length).split(':')) {
      // Relative entries (`.`, empty) depend on the shell's cwd: not a place to find bash in advance.
      if (!dir.startsWith('/') || dir.includes('\0') || dir.length > 4096) continue;
      if (++dirs > MAX_PATH_DIRS) return [...candidates];
      candidates.add(posix.join(posix.normalize(dir), 'bash'));
    }
  }
  return [...candidates];
}
