/**
 * Renders exec.bt.tpl (beside this file): one tracepoint (sched:sched_process_exec) for every exec outside the
 * host's mount namespace, its argv read up to maxArgvBytes. Also finds the wrapper that runs bpftrace where
 * tracefs is mounted (bpftrace 0.17 needs it for tracepoints).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { shippedFile } from '../shipped-file.js';

export const EXEC_CHUNK_BYTES = 64;
/**
 * The largest argv bound: at 64 KiB (1024 chunks) the verifier walks about 280,000 of its 1,000,000
 * instructions (measured, kernel 6.18; a first version that masked every word inside the loop went over the
 * limit). The same as the largest maxCommandBytes a policy takes.
 */
export const MAX_ARGV_BYTES_LIMIT = 65536;
/** ns_common.inum is an unsigned int. */
const MAX_INODE = 0xffff_ffff;
const TEMPLATE = join('agent', 'capture', 'exec', 'exec.bt.tpl');
const TRACEFS_WRAPPER = join('agent', 'capture', 'exec', 'bpftrace-tracefs.sh');

export interface ExecScriptOptions {
  /** Inode of the host's mount namespace: execs there are dropped in the kernel. */
  hostMntns: number;
  /** argv bytes (the NUL-separated strings, NULs included) read per exec; beyond it, truncated. */
  maxArgvBytes: number;
}

/** Chunks of argv the script reads at most. */
export function argvChunksFor(maxArgvBytes: number): number {
  return Math.ceil(maxArgvBytes / EXEC_CHUNK_BYTES);
}

/** The template, found from here whether running from source, dist/ or an image (shipped-file.ts). */
export function execTemplatePath(from = import.meta.dirname): string {
  return shippedFile(TEMPLATE, from);
}

/** Runs bpftrace with its arguments, mounting tracefs in a mount namespace of its own when it is missing. */
export function tracefsWrapperPath(from = import.meta.dirname): string {
  return shippedFile(TRACEFS_WRAPPER, from);
}

/** The inode of a process's mount namespace (pid 1: the host's, when the agent runs with hostPID). */
export function mountNamespaceOf(pid: number | 'self' = 1, proc = '/proc'): number {
  return statSync(join(proc, String(pid), 'ns', 'mnt')).ino;
}

export function renderExecScript(
  options: ExecScriptOptions,
  template = readFileSync(execTemplatePath(), 'utf8'),
): string {
  const { hostMntns, maxArgvBytes } = options;
  if (!Number.isInteger(hostMntns) || hostMntns < 1 || hostMntns > MAX_INODE)
    throw new Error(`hostMntns must be a mount namespace inode (1 to ${MAX_INODE}), not ${hostMntns}`);
  if (!Number.isInteger(maxArgvBytes) || maxArgvBytes < 1 || maxArgvBytes > MAX_ARGV_BYTES_LIMIT)
    throw new Error(`maxArgvBytes must be 1 to ${MAX_ARGV_BYTES_LIMIT}, not ${maxArgvBytes}`);
  return template
    .replaceAll('{{HOST_MNTNS}}', String(hostMntns))
    .replaceAll('{{MAX_ARGV_BYTES}}', String(maxArgvBytes))
    .replaceAll('{{MAX_ARGV_CHUNKS}}', String(argvChunksFor(maxArgvBytes)));
}
