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
 * symlink between checks; the fstat of the opened file is what the reported (dev, ino) comes from.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { readRegularFile } from '../../common/files.js';
import { type ElfInfo, definesSymbol, readElf } from './elf.js';

export const DEFAULT_BASH_CANDIDATES = ['/bin/bash', '/usr/bin/bash', '/usr/local/bin/bash'] as const;
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
const MAX_LINKS = 40; // Linux's MAXSYMLINKS
const MAX_CONF_BYTES = 64 * 1024;
const MAX_CONF_FILES = 64;
const MAX_CONF_DEPTH = 4;
const MAX_SEARCH_DIRS = 256;

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

type Failure = { ok: false; missing: boolean; reason: string };
type Resolved = { ok: true; path: string } | Failure;

/**
 * Resolves `path` inside `root` as if `root` were `/`. Returns the resolved path inside the root (no
 * symlinks left at the time of the walk); `missing` when a component does not exist.
 */
export async function resolveInRoot(root: string, path: string): Promise<Resolved> {
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
    let info;
    try {
      info = await lstat(join(root, inRoot));
    } catch {
      return { ok: false, missing: true, reason: `${inRoot} does not exist` };
    }
    if (info.isSymbolicLink()) {
      if (++links > MAX_LINKS)
        return { ok: false, missing: false, reason: `too many symbolic links at ${path}` };
      let target: string;
      try {
        target = await readlink(join(root, inRoot));
      } catch {
        return { ok: false, missing: false, reason: `cannot read the symbolic link ${inRoot}` };
      }
      if (target.startsWith('/')) done.length = 0; // absolute: from the container's root, not the host's
      pending.push(...target.split('/').filter(Boolean).reverse());
      continue;
    }
    if (pending.length > 0 && !info.isDirectory())
      return { ok: false, missing: true, reason: `${inRoot} is not a directory` };
    done.push(component);
  }
  return { ok: true, path: `/${done.join('/')}` };
}

type ReadFile = { ok: true; path: string; data: Buffer; dev: bigint; ino: bigint } | Failure;

/** Resolves a path in the root and reads it if it is a regular file of at most `cap` bytes. */
async function readInRoot(root: string, path: string, cap: number): Promise<ReadFile> {
  const resolved = await resolveInRoot(root, path);
  if (!resolved.ok) return resolved;
  const read = await readRegularFile(join(root, resolved.path), cap);
  if (!read.ok) {
    const reason =
      read.reason === 'not-regular-file'
        ? `${resolved.path} is not a regular file`
        : read.reason === 'oversized'
          ? `${resolved.path} is larger than ${cap} bytes`
          : `cannot read ${resolved.path} (${read.detail})`;
    return { ok: false, missing: false, reason };
  }
  return { ok: true, path: resolved.path, data: read.data, dev: read.dev, ino: read.ino };
}

/** Directories named by /etc/ld.so.conf and the files it includes (simple `*` globs only). */
async function ldSoConfDirs(root: string): Promise<string[]> {
  const dirs: string[] = [];
  let files = 0;
  const visit = async (file: string, depth: number): Promise<void> => {
    if (depth > MAX_CONF_DEPTH || ++files > MAX_CONF_FILES) return;
    const read = await readInRoot(root, file, MAX_CONF_BYTES);
    if (!read.ok) return;
    for (const raw of read.data.toString('utf8').split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      const include = /^include\s+(.+)$/.exec(line);
      if (!include) {
        dirs.push(...line.split(/[\s:,]+/).filter((d) => d.startsWith('/')));
        continue;
      }
      for (const pattern of include[1]!.split(/\s+/)) {
        const full = posix.resolve(posix.dirname(file), pattern);
        for (const match of await globInRoot(root, full)) await visit(match, depth + 1);
      }
    }
  };
  await visit('/etc/ld.so.conf', 0);
  return dirs;
}

/** Files matching a pattern whose last component may contain `*`, sorted like glob(3). */
async function globInRoot(root: string, pattern: string): Promise<string[]> {
  const base = posix.basename(pattern);
  const dir = posix.dirname(pattern);
  if (!base.includes('*')) return [pattern];
  const resolved = await resolveInRoot(root, dir);
  if (!resolved.ok) return [];
  const escaped = base.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*');
  const matcher = new RegExp(`^${escaped}$`);
  try {
    const names = await readdir(join(root, resolved.path));
    return names
      .filter((n) => matcher.test(n) && !n.startsWith('.'))
      .sort()
      .slice(0, MAX_CONF_FILES)
      .map((n) => posix.join(dir, n));
  } catch {
    return [];
  }
}

/** The directories the loader would search for bash's dependencies, in order, inside the root. */
async function searchPath(root: string, bashPath: string, elf: ElfInfo): Promise<string[]> {
  const origin = posix.dirname(bashPath);
  const expand = (dirs: string[]) => dirs.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
  const multiarch = elf.machine === 'x86-64' ? 'x86_64-linux-gnu' : 'aarch64-linux-gnu';
  const musl = elf.machine === 'x86-64' ? 'x86_64' : 'aarch64';
  const muslPath = await readInRoot(root, `/etc/ld-musl-${musl}.path`, MAX_CONF_BYTES);
  const dirs = [
    ...(elf.runpath.length === 0 ? expand(elf.rpath) : []),
    ...expand(elf.runpath),
    ...(await ldSoConfDirs(root)),
    ...(muslPath.ok ? muslPath.data.toString('utf8').split(/[\n:]/) : []),
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

/** Looks for a needed library in the search path; the first readable ELF of bash's machine wins, as in ld.so. */
async function findLibrary(root: string, name: string, dirs: string[], machine: string) {
  for (const dir of dirs) {
    const read = await readInRoot(root, posix.join(dir, name), MAX_FILE_BYTES);
    if (!read.ok) continue;
    const elf = readElf(read.data);
    if (elf.ok && elf.machine === machine) return read;
  }
  return undefined;
}

/** What one bash candidate resolves to; undefined when the candidate does not exist. */
async function resolveOne(root: string, candidate: string): Promise<ReadlineResolution | undefined> {
  const gap = (reason: string): CoverageGap => ({ kind: 'coverage', bash: candidate, reason });
  const bash = await readInRoot(root, candidate, MAX_FILE_BYTES);
  if (!bash.ok) return bash.missing ? undefined : gap(bash.reason);
  const elf = readElf(bash.data);
  if (!elf.ok) return gap(`${bash.path}: ${elf.reason}`);
  const own = definesSymbol(bash.data, 'readline');
  if (!own.ok) return gap(`${bash.path}: ${own.reason}`);
  const target = (file: typeof bash, via: ReadlineTarget['via']): ReadlineTarget => ({
    kind: 'target',
    bash: candidate,
    file: join(root, file.path),
    via,
    dev: file.dev,
    ino: file.ino,
  });
  if (own.defined) return target(bash, 'bash');
  if (!elf.dynamic) return gap(`${bash.path} is a static bash without a dynamic readline symbol`);
  if (elf.needed.length === 0) return gap(`${bash.path} defines no readline and needs no libraries`);

  // Libraries named like readline first; any other direct dependency could still provide it.
  const needed = [...elf.needed].sort(
    (a, b) => Number(!a.startsWith('libreadline')) - Number(!b.startsWith('libreadline')),
  );
  const dirs = await searchPath(root, bash.path, elf);
  const missing: string[] = [];
  for (const name of needed) {
    // A DT_NEEDED with a slash is a path, used as is (relative to the root).
    const lib = name.includes('/')
      ? await readInRoot(root, posix.resolve('/', name), MAX_FILE_BYTES).then((r) => (r.ok ? r : undefined))
      : await findLibrary(root, name, dirs, elf.machine);
    if (!lib) {
      if (name.startsWith('libreadline')) missing.push(name);
      continue;
    }
    const found = definesSymbol(lib.data, 'readline');
    if (found.ok && found.defined) return target(lib, 'libreadline');
  }
  if (missing.length > 0)
    return gap(`${bash.path} needs ${missing.join(', ')} but it is not in the container's library path`);
  return gap(
    `${bash.path} defines no dynamic readline symbol, nor do its libraries (${elf.needed.join(', ')})`,
  );
}

/**
 * The files to put readline uprobes on for the bash candidates in `root` (a host path), deduplicated by
 * (dev, ino): `/bin/bash` and `/usr/bin/bash` on a merged-/usr root are one target. Candidates that do not
 * exist are skipped; every one that exists yields a target or a coverage gap.
 */
export async function resolveReadlineTargets(
  root: string,
  candidates: readonly string[] = [],
): Promise<ReadlineResolution[]> {
  const results: ReadlineResolution[] = [];
  const seen = new Set<string>();
  for (const candidate of new Set([...DEFAULT_BASH_CANDIDATES, ...candidates])) {
    if (!candidate.startsWith('/')) continue; // a path inside the image is absolute; anything else is noise
    const result = await resolveOne(root, candidate);
    if (!result) continue;
    const key = result.kind === 'target' ? `${result.dev}:${result.ino}` : `gap:${result.reason}`;
    if (seen.has(key)) continue;
    seen.add(key);
    results.push(result);
  }
  return results;
}
