/**
 * Renders readline.bt.tpl (beside this file) for a set of probe targets: one uretprobe per distinct file
 * that defines `readline` (uprobes bind to the file's inode, so one probe serves every process mapping it).
 *
 * A path reaches bpftrace inside its script, so it is written in bpftrace's attach-point syntax: bare when
 * it is plain, else in double quotes. What bpftrace 0.17 makes of a quoted path was measured with the real
 * binary (capture.hostile.node.test.ts probes a bash under each of these): spaces, tabs, quotes of
 * both kinds, backslashes, `$ , ; # % ? [ ] { }` and non-ASCII all reach the kernel intact, given that a
 * backslash is unescaped twice (by the lexer, then by the attach-point parser) and a double quote once. Three
 * characters cannot be quoted: a colon (bpftrace splits the probe name at it again when it resolves the
 * symbol, and fails), `*` (a wildcard even in quotes: the probe lands on every file it matches) and a
 * newline (no error: the probe is silently left out). Such a path is refused with that reason.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { shippedFile } from '../shipped-file.js';

export const CHUNK_BYTES = 64;
/**
 * The kernel-side budget of one mount namespace (one container): chunk events it may emit per window, every
 * line past it being counted instead of printed (see the template's header). The perf buffer is shared by
 * every container, and bpftrace's output loop on a 2-core node fell behind (the kernel lost events, other
 * containers' lines among them) under one container's 12,800 events/s (200 lines of 4 KiB a second). 512
 * chunks per 100 ms is 5,120 events (320 KiB of lines) a second: above anything typed or pasted, and above the
 * userspace line rate (line-limits.ts: 2,000 lines/s, which are one or two chunks each when typed), so the
 * agent's own limits bind first for people; a flood of long lines is cut here, before the buffer. The short
 * window bounds the burst that reaches the buffer at once: at most two windows' worth (about 1,100 events of
 * ~150 bytes), within one CPU's share of bpftrace's perf buffer (64 pages).
 */
export const BUDGET_CHUNKS = 512;
export const BUDGET_WINDOW_NS = 100_000_000;
const TEMPLATE = join('agent', 'capture', 'readline', 'readline.bt.tpl');
/** What bpftrace's probe syntax takes as a path without quoting. */
const BARE_PATH = /^\/[\w./+-]+$/;

/** Chunks to read so that a line of exactly maxCommandBytes still shows its terminator (not truncated). */
export function chunksFor(maxCommandBytes: number): number {
  return Math.floor(maxCommandBytes / CHUNK_BYTES) + 1;
}

/** The template, found from here whether running from source, dist/ or an image (shipped-file.ts). */
export function templatePath(from = import.meta.dirname): string {
  return shippedFile(TEMPLATE, from);
}

/** Why bpftrace cannot be given this path as a probe target (see the header), or undefined if it can. */
export function unprobeablePath(path: string): string | undefined {
  if (!path.startsWith('/')) return 'not an absolute path';
  if (path.includes(':')) return "a ':' in the path, which bpftrace cannot take even quoted";
  if (path.includes('*')) return "a '*' in the path, a wildcard to bpftrace even quoted";
  if (path.includes('\n')) return 'a newline in the path, which bpftrace cannot take';
  if (path.includes('\0')) return 'a NUL in the path';
  return undefined;
}

/** The path as bpftrace's attach-point syntax takes it (see the header). */
export function probePathSyntax(path: string): string {
  if (BARE_PATH.test(path)) return path;
  return `"${path.replaceAll('\\', '\\\\\\\\').replaceAll('"', '\\"')}"`;
}

export function renderReadlineScript(
  targets: readonly string[],
  maxCommandBytes: number,
  template = readFileSync(templatePath(), 'utf8'),
): string {
  if (targets.length === 0) throw new Error('no readline targets to probe');
  for (const path of targets) {
    const problem = unprobeablePath(path);
    if (problem) throw new Error(`cannot probe ${JSON.stringify(path)}: ${problem}`);
  }
  if (!Number.isInteger(maxCommandBytes) || maxCommandBytes < 1)
    throw new Error('maxCommandBytes must be >= 1');
  const probes = [...new Set(targets)]
    .map((path) => `uretprobe:${probePathSyntax(path)}:readline`)
    .join(',\n');
  return template
    .replaceAll('{{PROBES}}', probes)
    .replaceAll('{{MAX_CHUNKS}}', String(chunksFor(maxCommandBytes)))
    .replaceAll('{{BUDGET_CHUNKS}}', String(BUDGET_CHUNKS))
    .replaceAll('{{BUDGET_WINDOW_NS}}', String(BUDGET_WINDOW_NS));
}
