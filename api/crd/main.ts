/**
 * `make crds`: writes charts/container-auditor/crds/*.yaml from the zod schemas. `--check` writes nothing and exits 1 when the
 * committed files differ from what the schemas generate.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrdFiles } from './definitions.js';

// dist/api/crd/main.js or api/crd/main.ts: the repository root is the first ancestor with package.json.
async function repoRoot(): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      await readFile(join(dir, 'package.json'));
      return dir;
    } catch {
      /* keep climbing */
    }
    const parent = resolve(dir, '..');
    if (parent === dir) throw new Error('cannot find the repository root (package.json)');
    dir = parent;
  }
}

async function main(): Promise<number> {
  const check = process.argv.includes('--check');
  const root = await repoRoot();
  let drifted = 0;
  for (const file of renderCrdFiles()) {
    const target = join(root, file.path);
    const current = await readFile(target, 'utf8').catch(() => undefined);
    if (current === file.content) continue;
    if (check) {
      drifted++;
      console.error(`${file.path} is out of date with api/v1alpha1: run 'make crds'`);
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, file.content);
    console.log(`wrote ${file.path}`);
  }
  return drifted ? 1 : 0;
}

process.exitCode = await main();
