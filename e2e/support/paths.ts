import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Whether `dir` holds this repository's package.json. */
function isRepoRoot(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'container-auditor';
  } catch {
    return false;
  }
}

/**
 * The repository's root: the nearest directory above this file holding container-auditor's package.json, so
 * the same whether this runs from e2e/support/ (tests) or compiled into dist/e2e/support/ (benchmarks).
 */
export const REPO_ROOT = ((): string => {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    if (isRepoRoot(dir)) return dir;
    if (dirname(dir) === dir)
      throw new Error(`no package.json of container-auditor in ${import.meta.dirname} or above`);
  }
})();
export const KUBECTL = join(REPO_ROOT, '.cache', 'bin', 'kubectl');
export const HELM = join(REPO_ROOT, '.cache', 'bin', 'helm');
/** The Helm chart, and in it the CRDs generated from api/ (`make crds`). */
export const CHART_DIR = join(REPO_ROOT, 'charts', 'container-auditor');
export const CRD_DIR = join(CHART_DIR, 'crds');
/** The runc wrapper as `make build` (or `make -C runc-wrapper`) leaves it. */
export const RUNC_WRAPPER = join(REPO_ROOT, 'runc-wrapper', 'container-auditor-runc');
