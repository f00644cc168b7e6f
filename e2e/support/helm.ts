/** The helm that e2e/cluster/build.sh builds from its Go module, run against the test control plane. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testKubeconfigPath } from './cluster.js';
import { type CommandResult, runCommand } from './command.js';
import { HELM } from './paths.js';

/** Helm's own cache, configuration and data: per test process, never the user's ~/.config/helm. */
let helmHome: string | undefined;
function helmHomeDir(): string {
  if (helmHome === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'container-auditor-helm-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    helmHome = dir;
  }
  return helmHome;
}

/** helm's environment, against `kubeconfig` (default: the integration tier's control plane). */
export function helmEnv(kubeconfig = testKubeconfigPath()): NodeJS.ProcessEnv {
  const home = helmHomeDir();
  return {
    ...process.env,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    KUBECONFIG: kubeconfig,
  };
}

/** Runs helm with the given arguments; a missing helm is a failure with the way to build it. */
export function helm(
  args: string[],
  options: { input?: string; kubeconfig?: string } = {},
): Promise<CommandResult> {
  if (!existsSync(HELM)) throw new Error(`${HELM} is missing: run 'bash e2e/cluster/build.sh helm'`);
  return runCommand(HELM, args, {
    env: helmEnv(options.kubeconfig),
    timeoutMs: 180_000,
    ...(options.input ? { input: options.input } : {}),
  });
}

/** helm that must succeed; throws with its stderr otherwise. */
export async function helmOk(
  args: string[],
  options: { input?: string; kubeconfig?: string } = {},
): Promise<string> {
  const result = await helm(args, options);
  if (result.code !== 0) throw new Error(`helm ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}
