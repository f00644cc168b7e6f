/**
 * OCI image archives built locally from a root filesystem directory (there is no registry here), for
 * containers that containerd runs from an image: unpacked by a snapshotter (overlayfs), so the container's
 * root is an overlay mount at `<bundle>/rootfs`, as on a Kubernetes node, not a plain directory.
 *
 * The archive is an OCI image layout in a tar (what `ctr images import` reads): `oci-layout`, `index.json`
 * (one manifest, named by the `org.opencontainers.image.ref.name` annotation), and under `blobs/sha256/` one
 * layer (the whole root, as a tar made by the system's GNU tar), the image config and the manifest. Building
 * the same directory twice gives the same bytes: entries sorted, numeric owners, times fixed, gzip without a
 * name or a time.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { CommandResult, Containerd } from './containerd.js';
import { buildShellRootfs } from './rootfs.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
export const DEFAULT_IMAGE_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The snapshotter that unpacks images on a Kubernetes node (and containerd's default on Linux). */
export const OVERLAYFS = 'overlayfs';

/** GNU tar flags that make an archive depend only on the tree's names, contents, modes and owners. */
const DETERMINISTIC_TAR = ['--format=gnu', '--sort=name', '--numeric-owner', '--mtime=@0'];

export interface Platform {
  architecture: string;
  os: string;
}

/** The host's platform in OCI terms (Node's `x64` is OCI's `amd64`). */
export function hostPlatform(): Platform {
  const architectures: Partial<Record<NodeJS.Architecture, string>> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  const architecture = architectures[process.arch];
  if (!architecture) throw new Error(`no OCI architecture for Node's ${process.arch}`);
  return { architecture, os: 'linux' };
}

export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>` */
  digest: string;
  size: number;
}

export interface ImageArchiveOptions {
  /** A full image reference, e.g. `localhost/ca-test/bash:1`: the name ctr gives the image on import. */
  ref: string;
  /** The image config's `Cmd`; default `["/bin/sh"]`. */
  cmd?: string[];
  /** The image config's `Entrypoint`; default none. */
  entrypoint?: string[];
  /** The image config's `Env`; default a PATH (DEFAULT_IMAGE_PATH) and nothing else. */
  env?: string[];
  /** The image config's `WorkingDir`; default none (`/`). */
  workingDir?: string;
  /** Gzip the layer (default true); false stores it as a plain tar. */
  gzip?: boolean;
}

export interface ImageArchive {
  /** The archive file (a tar of an OCI image layout). */
  path: string;
  ref: string;
  /** The repository part of ref (ref without its tag): what `ctr images import --base-name` wants. */
  name: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  /** sha256 of the uncompressed layer tar, as in the config's rootfs.diff_ids. */
  diffId: string;
  platform: Platform;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The repository of a reference: everything before the tag (a `:` after the last `/`). No digests. */
export function refName(ref: string): string {
  if (ref.includes('@')) throw new Error(`a digest reference cannot name a built image: ${ref}`);
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash) throw new Error(`image reference without a tag: ${ref}`);
  return ref.slice(0, colon);
}

/**
 * Builds an OCI image archive at `archive` whose single layer is the whole of `rootfs` (e.g. a root made by
 * buildRootfs). The host's platform is the image's. Takes about a second for a root with bash in it.
 */
export function buildImageArchive(
  rootfs: string,
  archive: string,
  options: ImageArchiveOptions,
): ImageArchive {
  const name = refName(options.ref);
  const platform = hostPlatform();
  const layout = mkdtempSync(join(dirname(archive), '.oci-layout-'));
  try {
    const blobs = join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const writeBlob = (mediaType: string, data: Buffer): Descriptor => {
      const digest = sha256(data);
      writeFileSync(join(blobs, digest.slice('sha256:'.length)), data);
      return { mediaType, digest, size: data.length };
    };

    const tar = execFileSync('tar', [...DETERMINISTIC_TAR, '-C', rootfs, '-cf', '-', '.'], {
      maxBuffer: 1 << 30,
    });
    const diffId = sha256(tar);
    const gzip = options.gzip ?? true;
    const layer = gzip ? writeBlob(OCI_LAYER_TAR_GZIP, gzipSync(tar)) : writeBlob(OCI_LAYER_TAR, tar);

    const created = '1970-01-01T00:00:00Z';
    const imageConfig: Record<string, unknown> = {
      Env: options.env ?? [DEFAULT_IMAGE_PATH],
      Cmd: options.cmd ?? ['/bin/sh'],
    };
    if (options.entrypoint) imageConfig.Entrypoint = options.entrypoint;
    if (options.workingDir) imageConfig.WorkingDir = options.workingDir;
    const config = writeBlob(
      OCI_CONFIG,
      Buffer.from(
        JSON.stringify({
          created,
          architecture: platform.architecture,
          os: platform.os,
          config: imageConfig,
          rootfs: { type: 'layers', diff_ids: [diffId] },
          history: [{ created, created_by: 'e2e/support/image.ts buildImageArchive' }],
        }),
      ),
    );
    const manifest = writeBlob(
      OCI_MANIFEST,
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] })),
    );
    writeFileSync(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ ...manifest, platform, annotations: { [REF_NAME_ANNOTATION]: options.ref } }],
      }),
    );
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

    const partial = `${archive}.partial`;
    execFileSync('tar', [
      ...DETERMINISTIC_TAR,
      '--owner=0',
      '--group=0',
      '-C',
      layout,
      '-cf',
      partial,
      'oci-layout',
      'index.json',
      'blobs',
    ]);
    renameSync(partial, archive);
    return { path: archive, ref: options.ref, name, manifest, config, layer, diffId, platform };
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
}

/**
 * The shell image, one definition for every pod that runs one (the node stack's, the demo's): the host's bash
 * and its libraries plus busybox's applets (buildShellRootfs, built in `rootfsDir`, which is removed after),
 * PATH set, working directory /root, command `sleep infinity`.
 */
export function buildShellImage(rootfsDir: string, archive: string, ref: string): ImageArchive {
  try {
    buildShellRootfs(rootfsDir);
    return buildImageArchive(rootfsDir, archive, {
      ref,
      cmd: ['/bin/sleep', 'infinity'],
      workingDir: '/root',
    });
  } finally {
    rmSync(rootfsDir, { recursive: true, force: true });
  }
}

/** A file of an archive made by buildImageArchive (`index.json`, `blobs/sha256/<hex>`): tests check them. */
export function readArchiveFile(archive: string, name: string): Buffer {
  return execFileSync('tar', ['-xOf', archive, name], { maxBuffer: 1 << 30 });
}

/** A blob of an archive made by buildImageArchive, by digest (`sha256:<hex>`). */
export function readArchiveBlob(archive: string, digest: string): Buffer {
  return readArchiveFile(archive, `blobs/sha256/${digest.slice('sha256:'.length)}`);
}

export interface ImportImageOptions {
  /** The snapshotter that unpacks it; default overlayfs. */
  snapshotter?: string;
  /** Import the content only; a container cannot run from it until unpacked. */
  noUnpack?: boolean;
  timeoutMs?: number;
}

/**
 * `ctr images import` of an archive made by buildImageArchive into a namespace of a (private) containerd,
 * unpacked by the snapshotter (overlayfs unless told otherwise). Throws with ctr's output if it fails or the
 * image is not listed under its reference afterwards. Returns the reference.
 */
export async function importImage(
  containerd: Containerd,
  namespace: string,
  archive: ImageArchive,
  options: ImportImageOptions = {},
): Promise<string> {
  const args = ['images', 'import', '--base-name', archive.name];
  if (options.noUnpack) args.push('--no-unpack');
  else args.push('--snapshotter', options.snapshotter ?? OVERLAYFS);
  const imported = await containerd.ctr(namespace, [...args, archive.path], {
    timeoutMs: options.timeoutMs ?? 60_000,
  });
  failUnlessOk(imported, `ctr images import ${archive.path}`);
  const listed = failUnlessOk(await containerd.ctr(namespace, ['images', 'ls', '-q']), 'ctr images ls');
  if (!listed.stdout.split('\n').includes(archive.ref))
    throw new Error(`${archive.ref} is not among the imported images:\n${listed.stdout}${imported.stdout}`);
  return archive.ref;
}

/** `ctr images rm --sync`: the image and, once no container uses them, its content and snapshots. */
export async function removeImage(containerd: Containerd, namespace: string, ref: string): Promise<void> {
  failUnlessOk(await containerd.ctr(namespace, ['images', 'rm', '--sync', ref]), `ctr images rm ${ref}`);
}

function failUnlessOk(result: CommandResult, what: string): CommandResult {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stdout}${result.stderr}`);
  return result;
}
