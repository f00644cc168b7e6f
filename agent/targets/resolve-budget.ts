/**
 * What resolving readline for one container may cost, and what the agent remembers between resolutions.
 * Pure: the clock is passed in.
 *
 * The files the resolver reads are the image's, so an image decides how much work they are: a PATH of 64
 * directories each holding a bash, an /etc/ld.so.conf naming 256 directories each holding a 64 MiB file
 * named like a library bash needs. Measured with such an image, the resolver as it was read 16 GiB for one
 * candidate (53 s) and every candidate again, inside the hand-off loop, while every other container on the
 * node waited for its acknowledgement. So:
 *
 *   - one resolution (one container's candidates, or one exec'd program) has a ResolveBudget: a deadline, a
 *     number of files opened, of bytes read and of path lookups (lstat, readlink, directory entries); the
 *     first limit reached ends it with OverBudget, which the caller reports as a coverage gap;
 *   - what a file is (its ELF header, its dependencies, whether it defines readline) is kept in a
 *     FileFactsCache by its identity (dev, ino, size, mtime, ctime), so a file seen again (the same bash by
 *     another PATH entry, a hard link, the next exec into the container) is not read again.
 */

export interface ResolveLimits {
  /** Wall-clock time one resolution may take, in ms. */
  deadlineMs: number;
  /** Files opened. */
  maxFiles: number;
  /** Bytes read, over all files. */
  maxBytes: number;
  /** Path components looked up and directory entries listed. */
  maxLookups: number;
}

/**
 * Defaults, far above what a real image needs (a Debian bash: one file of about 1.3 MB and a few lookups per
 * candidate; an Alpine-style bash with libreadline: a dozen files, under 5 MB) and low enough that the
 * deadline, well inside the wrapper's default 2 s wait, leaves room for bpftrace to attach.
 */
export const DEFAULT_RESOLVE_LIMITS: Readonly<ResolveLimits> = {
  deadlineMs: 1000,
  maxFiles: 512,
  maxBytes: 128 * 1024 * 1024,
  maxLookups: 8192,
};

/** A limit was reached: the message says which. */
export class OverBudget extends Error {}

export class ResolveBudget {
  private readonly deadline: number;
  readonly spent = { files: 0, bytes: 0, lookups: 0 };

  constructor(
    private readonly limits: Readonly<ResolveLimits> = DEFAULT_RESOLVE_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.deadline = now() + limits.deadlineMs;
  }

  /** Throws OverBudget when the deadline passed. */
  checkTime(): void {
    if (this.now() > this.deadline)
      throw new OverBudget(`took longer than ${this.limits.deadlineMs} ms (deadline per resolution)`);
  }

  /** Counts `n` path lookups or directory entries; throws OverBudget past a limit. */
  lookup(n = 1): void {
    this.spent.lookups += n;
    if (this.spent.lookups > this.limits.maxLookups)
      throw new OverBudget(`looked up more than ${this.limits.maxLookups} paths (limit per resolution)`);
    this.checkTime();
  }

  /** Counts one file opened; throws OverBudget past a limit. */
  file(): void {
    if (++this.spent.files > this.limits.maxFiles)
      throw new OverBudget(`opened more than ${this.limits.maxFiles} files (limit per resolution)`);
    this.checkTime();
  }

  /** Reserves `n` bytes before they are read; throws OverBudget when they would pass the limit. */
  bytes(n: number): void {
    if (this.spent.bytes + n > this.limits.maxBytes)
      throw new OverBudget(
        `would read more than ${this.limits.maxBytes} bytes (limit per resolution; ${this.spent.bytes} read)`,
      );
    this.spent.bytes += n;
    this.checkTime();
  }
}

/** A file's identity for the cache: an inode, and what changes when its content may have changed. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** Files remembered: a node's images hold a few each (a bash, its libraries, the decoys of a hostile one). */
export const DEFAULT_FACTS_CACHE_ENTRIES = 1024;

/** Least recently used first out, at most `maxEntries`. */
export class FileFactsCache<T> {
  private readonly entries = new Map<string, T>();
  readonly stats = { hits: 0, misses: 0 };

  constructor(private readonly maxEntries = DEFAULT_FACTS_CACHE_ENTRIES) {}

  static key(id: FileIdentity): string {
    return `${id.dev}:${id.ino}:${id.size}:${id.mtimeNs}:${id.ctimeNs}`;
  }

  get(id: FileIdentity): T | undefined {
    const key = FileFactsCache.key(id);
    const value = this.entries.get(key);
    if (value === undefined) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    this.entries.delete(key); // most recently used last
    this.entries.set(key, value);
    return value;
  }

  set(id: FileIdentity, value: T): void {
    const key = FileFactsCache.key(id);
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}
