/**
 * The files the readline probes are attached to, held open by the agent, so that what bpftrace attaches to is
 * the file that was checked.
 *
 * A target is found by path, in a root the container can change while the agent looks: between the check
 * (resolve.ts) and bpftrace opening the path, a container can swap a directory of that path for a symlink,
 * and the host kernel then follows it to the host's files (`<root>/bin -> /usr/bin`: the host's bash). So
 * the agent opens each target itself (O_NOFOLLOW), checks the open file, keeps it open, and gives bpftrace
 * `/proc/<agent pid>/fd/<n>`: a magic link to that open file that no change of path can redirect. The checks:
 *
 *   - its (dev, ino) (fstat of the open file) is the one the caller checked;
 *   - its path as the kernel knows it (readlink of /proc/self/fd/<n>) lies under the directory it must lie
 *     in (the container's root, or the snapshot layer): an open that a swapped directory led elsewhere shows
 *     where it really went.
 *
 * A mismatch is a reason, for a coverage gap; never a probe on another file. bpftrace 0.17 attaches through
 * the magic link as given (measured: given the fd of a file since unlinked, with the host's bash now at the
 * old path, its uprobe fired for the open file and not for the host's bash), and the kernel binds the uprobe
 * to the inode behind it (through overlayfs, the real one).
 *
 * A pin is closed once no container holds its target and bpftrace has been given a target set without it (a
 * closed fd number may be reused for another file, so a stale /proc/<pid>/fd/<n> must never reach bpftrace).
 */
import { constants } from 'node:fs';
import { type FileHandle, open, readlink, realpath } from 'node:fs/promises';
import { excerpt } from '../../common/text/escape.js';

/** How long a path may be when quoted in a reason (the rest is cut, controls escaped). */
export const PATH_EXCERPT = 160;

/** Where the kernel says an open file is (its path in the agent's mount namespace). */
export async function openedPath(handle: FileHandle): Promise<string> {
  return readlink(`/proc/self/fd/${handle.fd}`);
}

/** Whether `path` is `dir` or lies under it (both canonical, as the kernel writes them). */
export function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

export interface PinExpectation {
  dev: bigint;
  ino: bigint;
  /** A directory the file must lie under, e.g. the container's root or the layer directory. */
  within: string;
}

export type PinOutcome = { ok: true; probe: string } | { ok: false; reason: string };

interface Pin {
  handle: FileHandle;
  probe: string;
}

/** Opens `file` and checks it is the expected one; the handle on success (the caller closes it). */
export async function openChecked(
  file: string,
  expected: PinExpectation,
): Promise<{ ok: true; handle: FileHandle } | { ok: false; reason: string }> {
  const shown = excerpt(file, PATH_EXCERPT);
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, reason: `cannot open ${shown} to probe it (${code})` };
  }
  try {
    const info = await handle.stat({ bigint: true });
    const within = await realpath(expected.within);
    const where = await openedPath(handle);
    if (!info.isFile() || info.dev !== expected.dev || info.ino !== expected.ino || !isWithin(where, within))
      throw new Error(
        `${shown} changed between its check and its probe (now ${excerpt(where, PATH_EXCERPT)}, ` +
          `${info.dev}:${info.ino}, not ${expected.dev}:${expected.ino}): a directory on its path may have been swapped`,
      );
    return { ok: true, handle };
  } catch (error) {
    await handle.close().catch(() => undefined);
    return { ok: false, reason: (error as Error).message };
  }
}

/** The agent's pinned targets, by target key (`dev:ino` of the file the probe binds to). */
export class PinnedFiles {
  private readonly pins = new Map<string, Pin>();

  constructor(private readonly pid = process.pid) {}

  /**
   * The path bpftrace is to be given for the target `key`: its pin, made now (open, check) unless the key is
   * pinned already.
   */
  async pin(key: string, file: string, expected: PinExpectation): Promise<PinOutcome> {
    const held = this.pins.get(key);
    if (held) return { ok: true, probe: held.probe };
    const opened = await openChecked(file, expected);
    if (!opened.ok) return opened;
    const again = this.pins.get(key); // pinned meanwhile by another resolution
    if (again) {
      await opened.handle.close();
      return { ok: true, probe: again.probe };
    }
    const probe = `/proc/${this.pid}/fd/${opened.handle.fd}`;
    this.pins.set(key, { handle: opened.handle, probe });
    return { ok: true, probe };
  }

  probeOf(key: string): string | undefined {
    return this.pins.get(key)?.probe;
  }

  /** Closes every pin whose key is not in `keys`. */
  async keepOnly(keys: ReadonlySet<string>): Promise<void> {
    for (const [key, pin] of this.pins) {
      if (keys.has(key)) continue;
      this.pins.delete(key);
      await pin.handle.close().catch(() => undefined);
    }
  }

  get size(): number {
    return this.pins.size;
  }
}
