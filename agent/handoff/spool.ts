/**
 * The agent's side of the spool that runc-wrapper writes (format: api/handoff/v1.ts, runc-wrapper/README.md).
 *
 *   <spool>/<ns>-<pid>-<verb>.json   hand-offs, consumed in name (= time) order and removed
 *   <spool>/agent.alive              heartbeat: its mtime tells the wrapper an agent is alive
 *   <spool>/ack/<container id>       "probes attached": lets a waiting `runc create` return
 *   <spool>/dropped                  hand-offs the wrapper did not write (agent absent, spool full): a count
 *
 * The spool is created 0700 and owned by root; the wrapper refuses any other. Nothing here follows a
 * symlink, and nothing a file contains can crash the agent: bad files are logged, counted and removed.
 */
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Handoff,
  type HandoffRejection,
  CONTAINER_ID,
  MAX_HANDOFF_BYTES,
  parseHandoff,
} from '../../api/handoff/v1.js';
import { readRegularFile } from '../../common/files.js';
import { type Logger, LogField } from '../../common/logging.js';
import { excerpt } from '../../common/text/escape.js';

export const HEARTBEAT_FILE = 'agent.alive';
export const ACK_DIR = 'ack';
/** Written by the wrapper only (runc-wrapper/README.md): a decimal count and a newline, replaced atomically. */
export const DROPPED_FILE = 'dropped';
/** What a log line quotes of a hand-off's name or of why it was refused (escaped, cut). */
const LOG_EXCERPT = 200;
const HANDOFF_NAME = /^\d{19}-\d+-(create|run|exec|delete)\.json$/;

export type RejectionReason = HandoffRejection | 'not-regular-file' | 'unexpected-name' | 'unreadable';

export interface SpoolStats {
  accepted: number;
  rejected: Partial<Record<RejectionReason, number>>;
}

export interface SpoolOptions {
  dir: string;
  logger: Logger;
  /** Bundles must lie under these directories (containerd's task state dirs); unset accepts any. */
  bundleRoots?: readonly string[];
}

export class HandoffSpool {
  readonly stats: SpoolStats = { accepted: 0, rejected: {} };

  constructor(private readonly options: SpoolOptions) {}

  /** Creates the spool and its ack dir (0700) if needed and refuses one that others could write. */
  async prepare(): Promise<void> {
    const { dir } = this.options;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const path of [dir, join(dir, ACK_DIR)]) {
      await mkdir(path, { recursive: true, mode: 0o700 });
      const info = await lstat(path);
      if (!info.isDirectory()) throw new Error(`${path} is not a directory (a symlink?)`);
      if (info.uid !== process.getuid?.())
        throw new Error(`${path} is owned by uid ${info.uid}, not by this agent`);
      await chmod(path, 0o700);
    }
  }

  /** Refreshes the heartbeat the wrapper checks before it waits for an acknowledgement. */
  async heartbeat(now = new Date()): Promise<void> {
    const path = join(this.options.dir, HEARTBEAT_FILE);
    try {
      await utimes(path, now, now);
    } catch {
      await writeFile(path, '', {
        mode: 0o600,
        flag: constants.O_CREAT | constants.O_WRONLY | constants.O_NOFOLLOW,
      });
      await utimes(path, now, now);
    }
  }

  /** Tells a `runc create` waiting for this container that its probes are attached. */
  async acknowledge(containerId: string): Promise<void> {
    if (!CONTAINER_ID.test(containerId))
      throw new Error(`not a container id: ${JSON.stringify(containerId)}`);
    await writeFile(join(this.options.dir, ACK_DIR, containerId), '', {
      mode: 0o600,
      flag: constants.O_CREAT | constants.O_WRONLY | constants.O_NOFOLLOW,
    });
  }

  /** Forgets an acknowledgement (after the container's delete). */
  async release(containerId: string): Promise<void> {
    if (!CONTAINER_ID.test(containerId)) return;
    await rm(join(this.options.dir, ACK_DIR, containerId), { force: true });
  }

  /**
   * Reads every hand-off present, in order, validates it, passes the good ones to `accept`, and removes
   * each file once handled. A file is removed only after `accept` resolved, so a crash in between replays
   * it rather than losing it (consumers must be idempotent).
   */
  async drain(accept: (handoff: Handoff, file: string) => Promise<void>): Promise<number> {
    const { dir, logger } = this.options;
    const names = (await readdir(dir)).filter(
      (n) => !n.startsWith('.') && n !== HEARTBEAT_FILE && n !== ACK_DIR && n !== DROPPED_FILE,
    );
    names.sort();
    let handled = 0;
    for (const name of names) {
      const path = join(dir, name);
      const result = await this.read(path, name);
      if (result.ok) {
        await accept(result.handoff, name);
        this.stats.accepted++;
      } else {
        this.stats.rejected[result.reason] = (this.stats.rejected[result.reason] ?? 0) + 1;
        // The detail may quote the file (a JSON parser's error does): only a short escaped excerpt of it.
        logger.warn('Refused a hand-off', {
          [LogField.file]: excerpt(path, LOG_EXCERPT),
          [LogField.reason]: result.reason,
          [LogField.detail]: excerpt(result.detail, LOG_EXCERPT),
        });
      }
      await rm(path, { force: true, recursive: false }).catch((error: unknown) =>
        logger.error('Cannot remove a hand-off', { [LogField.file]: path, [LogField.error]: String(error) }),
      );
      handled++;
    }
    return handled;
  }

  /**
   * How many hand-offs the wrapper dropped instead of writing, since the spool was made: a count that only
   * grows, for the caller to report the increase as a loss. 0 without a counter; undefined when unreadable.
   */
  async droppedByWrapper(): Promise<number | undefined> {
    const path = join(this.options.dir, DROPPED_FILE);
    const read = await readRegularFile(path, 32);
    if (!read.ok)
      return (await lstat(path).then(
        () => true,
        () => false,
      ))
        ? undefined
        : 0;
    const count = /^(0|[1-9]\d{0,15})\n?$/.exec(read.data.toString('latin1'))?.[1];
    return count === undefined || Number(count) > Number.MAX_SAFE_INTEGER ? undefined : Number(count);
  }

  private async read(
    path: string,
    name: string,
  ): Promise<{ ok: true; handoff: Handoff } | { ok: false; reason: RejectionReason; detail: string }> {
    if (!HANDOFF_NAME.test(name)) return { ok: false, reason: 'unexpected-name', detail: name };
    // A symlink planted in the spool is refused, never read through (common/files.ts).
    const read = await readRegularFile(path, MAX_HANDOFF_BYTES);
    if (!read.ok) return read;
    return parseHandoff(read.data.toString('utf8'), { bundleRoots: this.options.bundleRoots });
  }
}
