/**
 * The file a uprobe really binds to when a target is seen through overlayfs.
 *
 * containerd's overlayfs snapshotter mounts each container's root as its own overlay. A file in it reports
 * the overlay's device, different for every container, although every container of one image maps the same
 * file of the same lower layer, and the kernel binds a uprobe to that real inode (trace_uprobe resolves
 * d_real_inode). Probing each container's overlay path would put one probe per container on one inode, and
 * every readline would be reported once per container of the image. So a target on overlayfs is replaced by
 * the layer file the overlay shows (upper first, then each lower in order), found from the mount's options
 * in /proc/self/mountinfo; its (dev, ino) is the probe's identity and one probe serves every container.
 */
import { lstat, readFile, statfs } from 'node:fs/promises';
import { join, posix } from 'node:path';

const OVERLAYFS_SUPER_MAGIC = 0x794c7630;

export interface OverlayMount {
  mountPoint: string;
  /** Top first: upperdir (if any), then the lowerdirs in order. */
  layers: string[];
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Overlay mounts in a mountinfo text, with absolute layer paths only. Pure. */
export function parseOverlayMounts(mountinfo: string): OverlayMount[] {
  const mounts: OverlayMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const before = line.slice(0, sep).split(' ');
    const [fstype, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'overlay' || before.length < 5) continue;
    const options = new Map<string, string>();
    for (const option of superOptions.split(',')) {
      const eq = option.indexOf('=');
      if (eq > 0) options.set(option.slice(0, eq), unescapeMountinfo(option.slice(eq + 1)));
    }
    const upper = options.get('upperdir');
    const lowers = (options.get('lowerdir') ?? '').split(':').filter(Boolean);
    const layers = [...(upper ? [upper] : []), ...lowers];
    // Relative layer paths (a mount made after chdir) cannot be found from here: not usable.
    if (layers.length === 0 || layers.some((l) => !l.startsWith('/'))) continue;
    mounts.push({ mountPoint: unescapeMountinfo(before[4]!), layers });
  }
  return mounts;
}

export interface RealFile {
  file: string;
  /** The layer directory the file lies in (what it is pinned within, pin.ts). */
  layer: string;
  dev: bigint;
  ino: bigint;
}

/** The layer file under `mount` that `pathInMount` (symlink-free, absolute) shows, if found. */
async function layerFile(mount: OverlayMount, pathInMount: string): Promise<RealFile | undefined> {
  for (const layer of mount.layers) {
    const candidate = join(layer, pathInMount);
    try {
      // Every component must be a real directory in the layer: a symlink there is the layer's business.
      let dir = layer;
      const parts = pathInMount.split('/').filter(Boolean);
      let ok = true;
      for (const part of parts.slice(0, -1)) {
        dir = join(dir, part);
        if (!(await lstat(dir)).isDirectory()) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      const info = await lstat(candidate, { bigint: true });
      if (info.isFile()) return { file: candidate, layer, dev: info.dev, ino: info.ino };
      return undefined; // a whiteout or anything else on top hides the lower layers
    } catch {
      // not in this layer: the next one down
    }
  }
  return undefined;
}

/**
 * For a host path on overlayfs, the layer file it shows; undefined when `file` is not on an overlay (probe
 * it as it is) or the overlay's layers cannot be found (then the caller probes the overlay path).
 */
export async function realFileOf(
  file: string,
  mountinfoPath = '/proc/self/mountinfo',
): Promise<RealFile | undefined> {
  try {
    if ((await statfs(file)).type !== OVERLAYFS_SUPER_MAGIC) return undefined;
    const mounts = parseOverlayMounts(await readFile(mountinfoPath, 'utf8'));
    // The innermost overlay mount holding the file.
    const holder = mounts
      .filter(
        (m) =>
          file === m.mountPoint ||
          file.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : `${m.mountPoint}/`),
      )
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (!holder) return undefined;
    return await layerFile(holder, posix.relative(holder.mountPoint, file));
  } catch {
    return undefined;
  }
}
