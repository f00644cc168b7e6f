/** The helm that e2e/cluster/build.sh builds from its Go module, run against the test control plane. */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testKubeconfigPath } from './cluster.js';
import { type CommandResult, runCommand } from './command.js';
import { HELM } from './paths.js';

/** Helm's own cache, configuration and data: per test process, never the user's ~/.config/helm. */
const helmHome = mkdtempSync(join(tmpdir(), 'container-auditor-helm-'));

export function helmEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
    KUBECONFIG: testKubeconfigPath(),
  };
}

/** Runs helm with the given arguments; a missing helm is a failure with the way to build it. */
export function helm(args: string[], input?: string): Promise<CommandResult> {
  if (!existsSync(HELM)) throw new Error(`${HELM} is missing: run 'bash e2e/cluster/build.sh helm'`);
  return runCommand(HELM, args, { env: helmEnv(), timeoutMs: 120_000, ...(input ? { input } : {}) });
}

/** helm that must succeed; throws with its stderr otherwise. */
export async function helmOk(args: string[], input?: string): Promise<string> {
  const result = await helm(args, input);
  if (result.code !== 0) throw new Error(`helm ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}
