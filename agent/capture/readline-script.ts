/**
 * Renders bpf-scripts/readline/readline.bt.tpl for a set of probe targets: one uretprobe per distinct file
 * that defines `readline` (uprobes bind to the file's inode, so one probe serves every process mapping it).
 *
 * A path reaches bpftrace inside its script, so it is written in bpftrace's attach-point syntax: bare when
 * it is plain, else in double quotes. What bpftrace 0.17 makes of a quoted path was measured with the real
 * binary (readline-capture.hostile.node.test.ts probes a bash under each of these): spaces, tabs, quotes of
 * both kinds, backslashes, `$ , ; # % ? [ ] { }` and non-ASCII all reach the kernel intact, given that a
 * backslash is unescaped twice (by the lexer, then by the attach-point parser) and a double quote once. Three
 * characters cannot be quoted: a colon (bpftrace splits the probe name at it again when it resolves the
 * symbol, and fails), `*` (a wildcard even in quotes: the probe lands on every file it matches) and a
 * newline (no error: the probe is silently left out). Such a path is refused with that reason.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const CHUNK_BYTES = 64;
const TEMPLATE = join('bpf-scripts', 'readline', 'readline.bt.tpl');
/** What bpftrace's probe syntax takes as a path without quoting. */
const BARE_PATH = /^\/[\w./+-]+$/;

/** Chunks to read so that a line of exactly maxCommandBytes still shows its terminator (not truncated). */
export function chunksFor(maxCommandBytes: number): number {
  return Math.floor(maxCommandBytes / CHUNK_BYTES) + 1;
}

/** bpf-scripts/ is data shipped beside the code: found from here, whether running from source or dist/. */
export function templatePath(from = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, TEMPLATE))) return join(dir, TEMPLATE);
    if (dirname(dir) === dir) throw new Error(`cannot find ${TEMPLATE} above ${from}`);
  }
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
    .replaceAll('{{MAX_CHUNKS}}', String(chunksFor(maxCommandBytes)));
}
