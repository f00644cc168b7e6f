/**
 * Root filesystems built to make the agent's work on them expensive, as a hostile image would: for the
 * hostile-input tests of target resolution and of the agent (the `.hostile.` tests).
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { buildLibreadlineRootfs, installFile } from './shells.js';

export const RLFLOOD_SOURCE = join(import.meta.dirname, 'rlflood.c');

/** Compiles rlflood.c into `<outDir>/rlflood` (-lreadline) unless it is there and newer than the source. */
export function buildRlflood(outDir: string): string {
  const binary = join(outDir, 'rlflood');
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(RLFLOOD_SOURCE).mtimeMs) return binary;
  mkdirSync(outDir, { recursive: true });
  execFileSync('gcc', ['-Wall', '-Wextra', '-Werror', '-O2', '-o', binary, RLFLOOD_SOURCE, '-lreadline']);
  return binary;
}

/**
 * A root like buildLibreadlineRootfs's (its /bin/bash `shell` takes readline from libreadline.so), with
 * `rlflood` (buildRlflood) at /bin/rlflood: a program of the image that makes the agent's probe on that
 * library fire as fast as readline returns.
 */
export function buildReadlineFloodRootfs(root: string, shell: string, rlflood: string): void {
  buildLibreadlineRootfs(root, shell);
  installFile(root, rlflood, '/bin/rlflood');
}

export interface LdSoConfBombOptions {
  /** Directories /etc/ld.so.conf names (through its includes), each holding the decoys. */
  dirs?: number;
  /** Size of the decoy every library name in those directories is a hard link of. */
  decoyBytes?: number;
  /** Directories of the PATH that hold a hard link of the shell (each a bash candidate). */
  pathDirs?: number;
}

/**
 * A root whose /bin/bash is `shell` (buildRlshell: it takes readline from libreadline.so), and whose
 * /etc/ld.so.conf includes 64 files naming, together, `dirs` directories that come before the real ones. In
 * each of them, every library the shell needs is a hard link to one sparse decoy of `decoyBytes` that starts
 * with an aarch64 ELF header: a file the loader passes over (another machine), after reading it whole in a
 * resolver that reads before it looks. `pathDirs` directories `/p/<n>` each hold a hard link of the shell.
 * Returns the PATH that names them (the bundle's environment makes each a bash candidate).
 */
export function buildLdSoConfBomb(root: string, shell: string, options: LdSoConfBombOptions = {}): string {
  const { dirs = 256, decoyBytes = 64 * 1024 * 1024, pathDirs = 64 } = options;
  buildLibreadlineRootfs(root, shell);
  const decoy = join(root, 'decoy');
  const header = Buffer.alloc(64);
  header.write('\x7fELF', 0, 'latin1');
  header[4] = 2; // 64-bit
  header[5] = 1; // little-endian
  header[6] = 1;
  header.writeUInt16LE(3, 16); // ET_DYN
  header.writeUInt16LE(183, 18); // EM_AARCH64
  writeFileSync(decoy, header);
  // Sparse: the decoy costs no disk, only whoever reads it.
  const sparse = openSync(decoy, 'r+');
  writeSync(sparse, Buffer.alloc(1), 0, 1, decoyBytes - 1);
  closeSync(sparse);
  mkdirSync(join(root, 'etc', 'ld.so.conf.d'), { recursive: true });
  writeFileSync(join(root, 'etc', 'ld.so.conf'), 'include /etc/ld.so.conf.d/*.conf\n');
  const files = 64;
  for (let f = 0; f < files; f++) {
    const named: string[] = [];
    for (let d = f; d < dirs; d += files) {
      const dir = `/l/${d}`;
      mkdirSync(join(root, dir), { recursive: true });
      for (const name of ['libreadline.so.8', 'libtinfo.so.6', 'libc.so.6'])
        linkSync(decoy, join(root, dir, name));
      named.push(dir);
    }
    writeFileSync(
      join(root, 'etc', 'ld.so.conf.d', `${String(f).padStart(2, '0')}.conf`),
      `${named.join('\n')}\n`,
    );
  }
  const path: string[] = [];
  for (let p = 0; p < pathDirs; p++) {
    mkdirSync(join(root, 'p', String(p)), { recursive: true });
    linkSync(join(root, 'bin', 'bash'), join(root, 'p', String(p), 'bash'));
    path.push(`/p/${p}`);
  }
  return `PATH=${[...path, '/bin'].join(':')}`;
}

/**
 * A root whose /etc/ld.so.conf includes, 64 times over, every entry of a directory of `entries` files: a
 * configuration that makes a resolver list that directory again and again.
 */
export function buildIncludeBomb(root: string, shell: string, entries = 5000): void {
  buildLibreadlineRootfs(root, shell);
  const big = join(root, 'etc', 'big');
  mkdirSync(big, { recursive: true });
  for (let i = 0; i < entries; i++)
    writeFileSync(join(big, `${String(i).padStart(5, '0')}.conf`), 'include /etc/big/*\n');
  writeFileSync(join(root, 'etc', 'ld.so.conf'), 'include /etc/big/*\n'.repeat(64));
}
