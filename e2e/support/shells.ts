/**
 * Root filesystems whose bash is not Debian's: the cases the agent's target resolution
 * (agent/targets/resolve.ts) must handle besides a bash that exports readline itself.
 *
 *   buildLibreadlineRootfs  /bin/bash is rlshell (rlshell.c here), which takes readline from
 *                           libreadline.so.8 (DT_NEEDED), as Alpine's bash does: the probe goes on the library.
 *   buildStaticBashRootfs   /bin/bash is Debian's bash-static: static, stripped, no dynamic symbol table, so
 *                           there is nothing to put a probe on by name: a coverage gap.
 *
 * Both start from buildRootfs (busybox-static for sh, sleep and the rest). Compiled programs go in a
 * directory the caller owns (a test's temporary directory), built once per directory.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { buildRootfs, sharedLibraries } from './rootfs.js';

/** The source of rlshell. */
export const RLSHELL_SOURCE = join(import.meta.dirname, 'rlshell.c');
/** Debian's bash-static package installs it here. */
export const BASH_STATIC = '/bin/bash-static';

/**
 * Copies a host file (symbolic links followed) to `at` inside `root` as a regular file, replacing whatever
 * was there (busybox's applet links, for one); keeps the mode.
 */
export function installFile(root: string, hostFile: string, at: string): void {
  const target = join(root, at);
  mkdirSync(dirname(target), { recursive: true });
  rmSync(target, { force: true });
  const source = realpathSync(hostFile);
  copyFileSync(source, target);
  chmodSync(target, statSync(source).mode & 0o7777);
}

/**
 * Compiles rlshell.c into `<outDir>/rlshell`, dynamically linked with -lreadline (gcc and libreadline-dev),
 * unless it is there already and newer than the source. Returns its path.
 */
export function buildRlshell(outDir: string): string {
  const binary = join(outDir, 'rlshell');
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(RLSHELL_SOURCE).mtimeMs) return binary;
  mkdirSync(outDir, { recursive: true });
  execFileSync('gcc', ['-Wall', '-Wextra', '-Werror', '-O2', '-o', binary, RLSHELL_SOURCE, '-lreadline']);
  return binary;
}

export interface ShellRootfsOptions {
  /** Where the shell goes inside the root; default /bin/bash (the agent's first candidate). */
  at?: string;
}

/**
 * Builds in `root` a root filesystem whose /bin/bash is `shell` (from buildRlshell), with the libraries it
 * loads (libreadline.so.8, libtinfo.so.6, libc.so.6 and the dynamic loader, as ldd finds them on the host)
 * at their host paths. Target resolution gives `via: 'libreadline'` and the library's path in the root.
 */
export function buildLibreadlineRootfs(root: string, shell: string, options: ShellRootfsOptions = {}): void {
  buildRootfs(root);
  installFile(root, shell, options.at ?? '/bin/bash');
  for (const lib of sharedLibraries(shell)) installFile(root, lib, lib);
}

export interface StaticBashRootfsOptions extends ShellRootfsOptions {
  /** The static bash to install; default Debian's bash-static (/bin/bash-static). */
  binary?: string;
}

/**
 * Builds in `root` a root filesystem whose /bin/bash is a static, stripped bash (Debian's bash-static): a
 * real Bash with readline compiled in and no symbol left to probe it by. Target resolution gives a coverage
 * gap for it.
 */
export function buildStaticBashRootfs(root: string, options: StaticBashRootfsOptions = {}): void {
  const binary = options.binary ?? BASH_STATIC;
  if (!existsSync(binary)) throw new Error(`${binary} is missing: install Debian's bash-static`);
  buildRootfs(root);
  installFile(root, binary, options.at ?? '/bin/bash');
}
