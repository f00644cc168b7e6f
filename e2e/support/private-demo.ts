/**
 * The demo (e2e/demo/demo.sh) in a directory of its own on free loopback ports, as its end-to-end test and the
 * latency bench run it, so that neither meets a user's `make demo`.
 */
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';
import { freePort } from './private-cluster.js';

export const DEMO_SCRIPT = join(REPO_ROOT, 'e2e', 'demo', 'demo.sh');

/** demo.sh's environment: its directory, Node name and typed lines, nothing built, every port free. */
export async function privateDemoEnv(options: {
  dir: string;
  node: string;
  commandsFile: string;
}): Promise<NodeJS.ProcessEnv> {
  return {
    ...process.env,
    DEMO_DIR: options.dir,
    DEMO_NODE: options.node,
    DEMO_COMMANDS: options.commandsFile,
    DEMO_BUILD: '0',
    DEMO_APISERVER_PORT: String(await freePort()),
    DEMO_ETCD_PORT: String(await freePort()),
    DEMO_ETCD_PEER_PORT: String(await freePort()),
    DEMO_OPERATOR_PORT: String(await freePort()),
    DEMO_PROBE_PORT: String(await freePort()),
  };
}
