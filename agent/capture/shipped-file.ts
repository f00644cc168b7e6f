/**
 * The capture scripts (readline/readline.bt.tpl, exec/exec.bt.tpl, exec/bpftrace-tracefs.sh) are data shipped
 * beside the code in the source tree. The code runs from there (tests), or compiled from dist/ (tsc leaves
 * them out), or from an image that copies them to the same place under its root (images/agent/Dockerfile): so
 * each is found by its path from the repository root, walking up from the module that needs it.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** `relative` (from the repository root, e.g. agent/capture/exec/exec.bt.tpl) found above `from`. */
export function shippedFile(relative: string, from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, relative))) return join(dir, relative);
    if (dirname(dir) === dir) throw new Error(`cannot find ${relative} above ${from}`);
  }
}
