/**
 * Renders bpf-scripts/readline/readline.bt.tpl for a set of probe targets: one uretprobe per distinct file
 * that defines `readline` (uprobes bind to the file's inode, so one probe serves every process mapping it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const CHUNK_BYTES = 64;
const TEMPLATE = join('bpf-scripts', 'readline', 'readline.bt.tpl');
/** What bpftrace's probe syntax takes as a path without quoting. */
const SAFE_PATH = /^\/[\w./+-]+$/;

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

export function renderReadlineScript(
  targets: readonly string[],
  maxCommandBytes: number,
  template = readFileSync(templatePath(), 'utf8'),
): string {
  if (targets.length === 0) throw new Error('no readline targets to probe');
  for (const path of targets) {
    if (!SAFE_PATH.test(path))
      throw new Error(`cannot probe ${JSON.stringify(path)}: unusual characters in the path`);
  }
  if (!Number.isInteger(maxCommandBytes) || maxCommandBytes < 1)
    throw new Error('maxCommandBytes must be >= 1');
  const probes = [...new Set(targets)].map((path) => `uretprobe:${path}:readline`).join(',\n');
  return template
    .replaceAll('{{PROBES}}', probes)
    .replaceAll('{{MAX_CHUNKS}}', String(chunksFor(maxCommandBytes)));
}
