/**
 * Reading files that someone else controls (a container's root, the hand-off spool, a bundle): only regular
 * files, never through a symlink at the last component (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK),
 * never more than a cap, even when the file grows while it is read. Never throws: failures are values.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

export type RegularFileRead =
  | { ok: true; data: Buffer; dev: bigint; ino: bigint }
  | { ok: false; reason: 'not-regular-file' | 'oversized' | 'unreadable'; detail: string };

export async function readRegularFile(path: string, maxBytes: number): Promise<RegularFileRead> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ELOOP'
      ? { ok: false, reason: 'not-regular-file', detail: `${path} is a symbolic link` }
      : { ok: false, reason: 'unreadable', detail: String(error) };
  }
  try {
    const info = await handle.stat({ bigint: true });
    if (!info.isFile()) {
      return { ok: false, reason: 'not-regular-file', detail: `${path}: mode ${info.mode.toString(8)}` };
    }
    if (info.size > BigInt(maxBytes)) {
      return { ok: false, reason: 'oversized', detail: `${path}: ${info.size} bytes, more than ${maxBytes}` };
    }
    // One byte past the cap: a file that grows after the fstat is caught, not read without bound.
    const data = Buffer.alloc(maxBytes + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(data, filled, data.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled === data.length) {
        return { ok: false, reason: 'oversized', detail: `${path} grew past ${maxBytes} bytes` };
      }
    }
    return { ok: true, data: data.subarray(0, filled), dev: info.dev, ino: info.ino };
  } catch (error) {
    return { ok: false, reason: 'unreadable', detail: String(error) };
  } finally {
    await handle.close();
  }
}
