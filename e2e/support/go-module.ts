/**
 * Files from a Go module, fetched through the Go module proxy (as e2e/cluster/build.sh fetches the Kubernetes
 * sources): the way tests get upstream manifests, such as the Prometheus Operator's CRDs, without other
 * downloads. Go is needed only here and for the cluster build.
 */
import { existsSync } from 'node:fs';
import { runCommand } from './command.js';

function goBinary(): string {
  // Go's installer puts it in /usr/local/go; non-login shells (CI, make) may not have it on PATH.
  return existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go';
}

/** The directory of `module@version` in the module cache, downloaded first if needed. */
export async function goModuleDir(module: string, version: string): Promise<string> {
  const result = await runCommand(goBinary(), ['mod', 'download', '-json', `${module}@${version}`], {
    env: { ...process.env, GOWORK: 'off', GOFLAGS: '-mod=mod' },
    timeoutMs: 300_000,
  });
  let answer: { Dir?: string; Error?: string } = {};
  try {
    answer = JSON.parse(result.stdout) as typeof answer;
  } catch {
    // reported below
  }
  if (result.code !== 0 || !answer.Dir)
    throw new Error(
      `go mod download ${module}@${version} failed (exit ${result.code}): ${answer.Error ?? result.stderr}`,
    );
  return answer.Dir;
}
