/**
 * Where `readline` lives for the bash binaries in a container's root filesystem: the files the agent puts
 * its uretprobes on. A uprobe binds to an inode, so the answer is one file per distinct (dev, ino):
 *
 *   bash exports readline itself (Debian, Ubuntu)          -> probe bash            (via 'bash')
 *   bash has DT_NEEDED libreadline.so.N (Alpine, others)  -> probe that library    (via 'libreadline')
 *   neither (a static or stripped bash, a missing library) -> a coverage gap with a reason, never silence
 *
 * The executable's own definition wins over a library's (symbol interposition), hence bash is checked first.
 * Libraries are searched the way the loader would, but inside the root: DT_RPATH (only without DT_RUNPATH),
 * DT_RUNPATH ($ORIGIN = bash's directory), the directories of /etc/ld.so.conf (+ includes), musl's
 * /etc/ld-musl-<arch>.path, then the default and multiarch directories. Only bash's direct dependencies are
 * searched: a readline coming in through a dependency of a dependency is reported as a gap.
 *
 * The root is the container's, so everything in it is hostile: paths are resolved like openat2's
 * RESOLVE_IN_ROOT (absolute symlinks and `..` stay inside the root, a bounded number of links), only regular
 * files are opened (O_NOFOLLOW | O_NONBLOCK, so a FIFO or a late symlink swap cannot block or redirect us),
 * and reads are capped. The walk is lstat-based, so a container racing us can still swap a directory for a
 * symlink between checks: every file opened is checked to lie under the root where the kernel says it is
 * (pin.ts), else it is not read, and the fstat of the opened file is what the reported (dev, ino) comes
 * from. The agent then probes that very file (pin.ts), not the path.
 *
 * What it costs is bounded per resolution (resolve-budget.ts: a deadline, files, bytes, lookups; the first
 * limit reached is a coverage gap for the candidate at hand), a file's ELF header is read before the rest
 * (a library of another machine is passed over, as the loader passes over it, unread), and what a file is
 * is cached by its identity, so the same bash behind many PATH entries is read once. The search path and
 * each library found are worked out once per resolution, not once per candidate.
 */
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, opendir, readlink, realpath } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { excerpt } from '../../common/text/escape.js';
import {
  ELF_HEADER_BYTES,
  type ElfError,
  type ElfInfo,
  type ElfMachine,
  type SymbolLookup,
  definesSymbol,
  readElf,
  readElfHeader,
} from './elf.js';
import { PATH_EXCERPT, isWithin, openedPath } from './pin.js';
import {
  DEFAULT_RESOLVE_LIMITS,
  FileFactsCache,
  type FileIdentity,
  OverBudget,
  ResolveBudget,
  type ResolveLimits,
} from './resolve-budget.js';

export const DEFAULT_BASH_CANDIDATES = ['/bin/bash', '/usr/bin/bash', '/usr/local/bin/bash'] as const;
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
const MAX_LINKS = 40; // Linux's MAXSYMLINKS
const MAX_CONF_BYTES = 64 * 1024;
const MAX_CONF_FILES = 64;
const MAX_CONF_DEPTH = 4;
const MAX_SEARCH_DIRS = 256;
/** Directory entries a glob of ld.so.conf lists (a directory of a million entries is read this far). */
const MAX_GLOB_ENTRIES = 4096;
/** How much of the list of a bash's libraries a reason quotes. */
const NEEDED_EXCERPT = 256;
/**
 * Facts holding more names than this are not cached (a real bash names a few libraries; a crafted one up to
 * 256 of 4 KiB each): with DEFAULT_FACTS_CACHE_ENTRIES, the cache holds at most about 16 MiB of names.
 */
const MAX_CACHED_CHARS = 16 * 1024;

export type ReadlineTarget = {
  kind: 'target';
  /** The candidate path inside the root that led here (the first one, when several are the same file). */
  bash: string;
  /** Host path of the file that defines readline: what the uprobe is attached to. */
  file: string;
  via: 'bash' | 'libreadline';
  /** bigint: overlayfs with xino puts a filesystem id in the inode's high bits, beyond 2^53. */
  dev: bigint;
  ino: bigint;
};

export type CoverageGap = { kind: 'coverage'; bash: string; reason: string };

export type ReadlineResolution = ReadlineTarget | CoverageGap;

/** What is known of a file, by its identity (FileFactsCache): its header, and once read whole, the rest. */
interface FileFacts {
  header: { ok: true; machine: ElfMachine } | ElfError;
  elf?: ElfInfo | ElfError;
  readline?: SymbolLookup;
}

/** What is known of files, by identity, across resolutions. */
export type ReadlineFactsCache = FileFactsCache<FileFacts>;

/** The cache resolutions share unless given another. */
const sharedCache: ReadlineFactsCache = new FileFactsCache<FileFacts>();

export interface ResolveOptions {
  limits?: Readonly<ResolveLimits>;
  cache?: ReadlineFactsCache;
  now?: () => number;
}

/** A path quoted in a reason: container-controlled, so cut and escaped. */
const shown = (path: string): string => excerpt(path, PATH_EXCERPT);

type Failure = { ok: false; missing: boolean; reason: string };
type Resolved = { ok: true; path: string } | Failure;

/** One resolution: the root, its budget, and what was already worked out. */
interface Context {
  root: string;
  /** The root as the kernel writes it (symlinks resolved): opened files must lie under it. */
  realRoot: string;
  budget: ResolveBudget;
  cache: ReadlineFactsCache;
  confDirs?: Promise<string[]>;
  muslPath: Map<string, Promise<string[]>>;
  libraries: Map<string, Promise<Library | undefined>>;
}

/**
 * Resolves `path` inside `root` as if `root` were `/`. Returns the resolved path inside the root (no
 * symlinks left at the time of the walk); `missing` when a component does not exist.
 */
export async function resolveInRoot(root: string, path: string, budget?: ResolveBudget): Promise<Resolved> {
  const done: string[] = [];
  const pending = path.split('/').filter(Boolean).reverse(); // a stack: next component last
  let links = 0;
  while (pending.length > 0) {
    const component = pending.pop()!;
    if (component === '.') continue;
    if (component === '..') {
      done.pop(); // at the root, `..` is the root
      continue;
    }
    const inRoot = `/${[...done, component].join('/')}`;
    budget?.lookup();
    let info;
    try {
      info = await lstat(join(root, inRoot));
    } catch {
      return { ok: false, missing: true, reason: `${shown(inRoot)} does not exist` };
    }
    if (info.isSymbolicLink()) {
      if (++links > MAX_LINKS)
        return { ok: false, missing: false, reason: `too many symbolic links at ${shown(path)}` };
      let target: string;
      try {
        target = await readlink(join(root, inRoot));
      } catch {
        return { ok: false, missing: false, reason: `cannot read the symbolic link ${shown(inRoot)}` };
      }
      if (target.startsWith('/')) done.length = 0; // absolute: from the container's root, not the host's
      pending.push(...target.split('/').filter(Boolean).reverse());
      continue;
    }
    if (pending.length > 0 && !info.isDirectory())
      return { ok: false, missing: true, reason: `${shown(inRoot)} is not a directory` };
    done.push(component);
  }
  return { ok: true, path: `/${done.join('/')}` };
}

type Opened = { ok: true; path: string; handle: FileHandle; id: FileIdentity };

/**
 * Resolves a path in the root and opens it if it is a regular file of at most `cap` bytes that lies, where
 * the kernel opened it, under the root. The caller closes the handle.
 */
async function openInRoot(ctx: Context, path: string, cap: number): Promise<Opened | Failure> {
  const resolved = await resolveInRoot(ctx.root, path, ctx.budget);
  if (!resolved.ok) return resolved;
  const fail = (reason: string): Failure => ({ ok: false, missing: false, reason });
  ctx.budget.file();
  let handle: FileHandle;
  try {
    handle = await open(
      join(ctx.root, resolved.path),
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      return { ok: false, missing: true, reason: `${shown(resolved.path)} does not exist` };
    return code === 'ELOOP'
      ? fail(`${shown(resolved.path)} is not a regular file`)
      : fail(`cannot read ${shown(resolved.path)} (${code ?? 'error'})`);
  }
  let problem: string | undefined;
  try {
    const info = await handle.stat({ bigint: true });
    if (!info.isFile()) problem = `${shown(resolved.path)} is not a regular file`;
    else if (info.size > BigInt(cap)) problem = `${shown(resolved.path)} is larger than ${cap} bytes`;
    // A directory swapped for a symlink after the walk would have led the open out of the root.
    else if (!isWithin(await openedPath(handle), ctx.realRoot))
      problem = `${shown(resolved.path)} led out of the container's root (a directory on its path was swapped)`;
    else {
      const { dev, ino, size, mtimeNs, ctimeNs } = info;
      return { ok: true, path: resolved.path, handle, id: { dev, ino, size, mtimeNs, ctimeNs } };
    }
  } catch (error) {
    problem = `cannot read ${shown(resolved.path)} (${(error as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  await handle.close().catch(() => undefined);
  return fail(problem);
}

/** Reads `length` bytes from the start of an open file, within the budget; fewer if the file is shorter. */
async function readStart(ctx: Context, handle: FileHandle, length: number): Promise<Buffer> {
  ctx.budget.bytes(length);
  const data = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(data, filled, length - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return data.subarray(0, filled);
}

/** What an opened file is: its header first, the whole file only when `whole` is asked (cached by identity). */
async function factsOf(ctx: Context, opened: Opened, whole: boolean): Promise<FileFacts> {
  const cached = ctx.cache.get(opened.id);
  if (cached && (!whole || !cached.header.ok || cached.elf)) return cached;
  const size = Number(opened.id.size);
  let facts: FileFacts;
  if (!whole || size < ELF_HEADER_BYTES) {
    const header = readElfHeader(await readStart(ctx, opened.handle, Math.min(size, ELF_HEADER_BYTES)));
    facts = { header: header.ok ? { ok: true, machine: header.machine } : header };
    if (!header.ok || !whole) {
      ctx.cache.set(opened.id, facts);
      return facts;
    }
  }
  const data = await readStart(ctx, opened.handle, size);
  if (data.length !== size) return { header: { ok: false, reason: 'changed while it was read' } };
  const elf = readElf(data);
  const header = readElfHeader(data);
  facts = {
    header: header.ok ? { ok: true, machine: header.machine } : header,
    elf,
    readline: elf.ok ? definesSymbol(data, 'readline') : elf,
  };
  // What a file names (DT_NEEDED, RUNPATH) is kept only when it is a real library list, not a crafted one.
  if (!elf.ok || factsChars(elf) <= MAX_CACHED_CHARS) ctx.cache.set(opened.id, facts);
  return facts;
}

/** Characters of the names an ELF file's facts hold. */
function factsChars(elf: ElfInfo): number {
  return [...elf.needed, ...elf.runpath, ...elf.rpath].reduce((n, name) => n + name.length, 0);
}

/** A small file of the root (configuration), read whole, or undefined. */
async function readSmall(ctx: Context, path: string): Promise<string | undefined> {
  const opened = await openInRoot(ctx, path, MAX_CONF_BYTES);
  if (!opened.ok) return undefined;
  try {
    return (await readStart(ctx, opened.handle, Number(opened.id.size))).toString('utf8');
  } finally {
    await opened.handle.close().catch(() => undefined);
  }
}

/** Directories named by /etc/ld.so.conf and the files it includes (simple `*` globs only). */
async function ldSoConfDirs(ctx: Context): Promise<string[]> {
  const dirs: string[] = [];
  let files = 0;
  const visit = async (file: string, depth: number): Promise<void> => {
    if (depth > MAX_CONF_DEPTH || ++files > MAX_CONF_FILES || dirs.length >= MAX_SEARCH_DIRS) return;
    const text = await readSmall(ctx, file);
    if (text === undefined) return;
    for (const raw of text.split('\n')) {
      if (dirs.length >= MAX_SEARCH_DIRS) return;
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      const include = /^include\s+(.+)$/.exec(line);
      if (!include) {
        dirs.push(...line.split(/[\s:,]+/).filter((d) => d.startsWith('/')));
        continue;
      }
      for (const pattern of include[1]!.split(/\s+/)) {
        const full = posix.resolve(posix.dirname(file), pattern);
        for (const match of await globInRoot(ctx, full)) await visit(match, depth + 1);
      }
    }
  };
  await visit('/etc/ld.so.conf', 0);
  return dirs;
}

/** Files matching a pattern whose last component may contain `*`, sorted like glob(3). */
async function globInRoot(ctx: Context, pattern: string): Promise<string[]> {
  const base = posix.basename(pattern);
  const dir = posix.dirname(pattern);
  if (!base.includes('*')) return [pattern];
  const resolved = await resolveInRoot(ctx.root, dir, ctx.budget);
  if (!resolved.ok) return [];
  const escaped = base.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*');
  const matcher = new RegExp(`^${escaped}$`);
  const names: string[] = [];
  try {
    const listing = await opendir(join(ctx.root, resolved.path));
    let seen = 0;
    for await (const entry of listing) {
      ctx.budget.lookup();
      if (matcher.test(entry.name) && !entry.name.startsWith('.')) names.push(entry.name);
      if (++seen >= MAX_GLOB_ENTRIES) break; // leaving the loop closes the directory
    }
  } catch (error) {
    if (error instanceof OverBudget) throw error;
    return [];
  }
  return names
    .sort()
    .slice(0, MAX_CONF_FILES)
    .map((n) => posix.join(dir, n));
}

/** The directories the loader would search for bash's dependencies, in order, inside the root. */
async function searchPath(ctx: Context, bashPath: string, elf: ElfInfo): Promise<string[]> {
  const origin = posix.dirname(bashPath);
  const expand = (dirs: string[]) => dirs.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
  const multiarch = elf.machine === 'x86-64' ? 'x86_64-linux-gnu' : 'aarch64-linux-gnu';
  const musl = elf.machine === 'x86-64' ? 'x86_64' : 'aarch64';
  ctx.confDirs ??= ldSoConfDirs(ctx);
  let muslPath = ctx.muslPath.get(musl);
  if (!muslPath) {
    muslPath = readSmall(ctx, `/etc/ld-musl-${musl}.path`).then((t) => (t ?? '').split(/[\n:]/));
    ctx.muslPath.set(musl, muslPath);
  }
  const dirs = [
    ...(elf.runpath.length === 0 ? expand(elf.rpath) : []),
    ...expand(elf.runpath),
    ...(await ctx.confDirs),
    ...(await muslPath),
    `/lib/${multiarch}`,
    `/usr/lib/${multiarch}`,
    '/lib64',
    '/usr/lib64',
    '/lib',
    '/usr/lib',
    '/usr/local/lib',
  ];
  return [...new Set(dirs.map((d) => d.trim()).filter((d) => d.startsWith('/')))].slice(0, MAX_SEARCH_DIRS);
}

type Library = { path: string; id: FileIdentity; facts: FileFacts };

/** Looks for a needed library in the search path; the first ELF of bash's machine wins, as in ld.so. */
function findLibrary(
  ctx: Context,
  name: string,
  dirs: string[],
  machine: ElfMachine,
): Promise<Library | undefined> {
  const key = `${machine}\0${name}\0${dirs.join('\0')}`;
  let found = ctx.libraries.get(key);
  if (!found) {
    const paths = name.includes('/') ? [posix.resolve('/', name)] : dirs.map((d) => posix.join(d, name));
    found = firstLibrary(ctx, paths, machine);
    ctx.libraries.set(key, found);
  }
  return found;
}

async function firstLibrary(
  ctx: Context,
  paths: string[],
  machine: ElfMachine,
): Promise<Library | undefined> {
  for (const path of paths) {
    const opened = await openInRoot(ctx, path, MAX_FILE_BYTES);
    if (!opened.ok) continue;
    try {
      // Another machine's library (or no ELF at all) is passed over unread, as the loader passes over it.
      const head = await factsOf(ctx, opened, false);
      if (!head.header.ok || head.header.machine !== machine) continue;
      const facts = await factsOf(ctx, opened, true);
      if (facts.elf?.ok && facts.elf.machine === machine) return { path: opened.path, id: opened.id, facts };
    } finally {
      await opened.handle.close().catch(() => undefined);
    }
  }
  return undefined;
}

/** What one bash candidate resolves to; undefined when the candidate does not exist. */
async function resolveOne(ctx: Context, candidate: string): Promise<ReadlineResolution | undefined> {
  const gap = (reason: string): CoverageGap => ({ kind: 'coverage', bash: candidate, reason });
  const bash = await openInRoot(ctx, candidate, MAX_FILE_BYTES);
  if (!bash.ok) return bash.missing ? undefined : gap(bash.reason);
  let facts: FileFacts;
  try {
    facts = await factsOf(ctx, bash, true);
  } finally {
    await bash.handle.close().catch(() => undefined);
  }
  const path = shown(bash.path);
  if (!facts.header.ok) return gap(`${path}: ${facts.header.reason}`);
  const { elf, readline: own } = facts;
  if (!elf || !own) return gap(`${path}: changed while it was read`);
  if (!elf.ok) return gap(`${path}: ${elf.reason}`);
  if (!own.ok) return gap(`${path}: ${own.reason}`);
  const target = (file: { path: string; id: FileIdentity }, via: ReadlineTarget['via']): ReadlineTarget => ({
    kind: 'target',
    bash: candidate,
    file: join(ctx.root, file.path),
    via,
    dev: file.id.dev,
    ino: file.id.ino,
  });
  if (own.defined) return target(bash, 'bash');
  if (!elf.dynamic) return gap(`${path} is a static bash without a dynamic readline symbol`);
  if (elf.needed.length === 0) return gap(`${path} defines no readline and needs no libraries`);

  // Libraries named like readline first; any other direct dependency could still provide it.
  const needed = [...elf.needed].sort(
    (a, b) => Number(!a.startsWith('libreadline')) - Number(!b.startsWith('libreadline')),
  );
  const dirs = await searchPath(ctx, bash.path, elf);
  const missing: string[] = [];
  for (const name of needed) {
    // A DT_NEEDED with a slash is a path, used as is (relative to the root).
    const lib = await findLibrary(ctx, name, dirs, elf.machine);
    if (!lib) {
      if (name.startsWith('libreadline')) missing.push(name);
      continue;
    }
    const found = lib.facts.readline;
    if (found?.ok && found.defined) return target(lib, 'libreadline');
  }
  if (missing.length > 0)
    return gap(
      `${path} needs ${excerpt(missing.join(', '), NEEDED_EXCERPT)} but it is not in the container's library path`,
    );
  return gap(
    `${path} defines no dynamic readline symbol, nor do its libraries (${excerpt(elf.needed.join(', '), NEEDED_EXCERPT)})`,
  );
}

/**
 * The files to put readline uprobes on for the bash candidates in `root` (a host path), deduplicated by
 * (dev, ino): `/bin/bash` and `/usr/bin/bash` on a merged-/usr root are one target. Candidates that do not
 * exist are skipped; every one that exists yields a target or a coverage gap. A resolution over its budget
 * (resolve-budget.ts) stops at the candidate at hand, which is reported as a gap saying which limit.
 */
export async function resolveReadlineTargets(
  root: string,
  candidates: readonly string[] = [],
  options: ResolveOptions = {},
): Promise<ReadlineResolution[]> {
  const results: ReadlineResolution[] = [];
  const seen = new Set<string>();
  const ctx: Context = {
    root,
    realRoot: await realpath(root).catch(() => root),
    budget: new ResolveBudget(options.limits ?? DEFAULT_RESOLVE_LIMITS, options.now),
    cache: options.cache ?? sharedCache,
    muslPath: new Map(),
    libraries: new Map(),
  };
  for (const candidate of new Set([...DEFAULT_BASH_CANDIDATES, ...candidates])) {
    if (!candidate.startsWith('/')) continue; // a path inside the image is absolute; anything else is noise
    let result: ReadlineResolution | undefined;
    try {
      result = await resolveOne(ctx, candidate);
    } catch (error) {
      if (!(error instanceof OverBudget)) throw error;
      results.push({
        kind: 'coverage',
        bash: candidate,
        reason: `gave up looking for readline at ${shown(candidate)}: the search ${error.message}`,
      });
      break;
    }
    if (!result) continue;
    const key = result.kind === 'target' ? `${result.dev}:${result.ino}` : `gap:${result.reason}`;
    if (seen.has(key)) continue;
    seen.add(key);
    results.push(result);
  }
  return results;
}
