/**
 * The demo (e2e/demo/demo.sh) in a directory of its own, as its real-node test and the latency bench run it,
 * so that neither meets a user's `make demo` directory. On a machine one Kubernetes node runs at a time: the
 * test runs the demo on the real-node tier's node (DEMO_NODE_DIR); the bench lets the demo bring its own up
 * in that directory unless DEMO_NODE_DIR names one already.
 */
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

export const DEMO_SCRIPT = join(REPO_ROOT, 'e2e', 'demo', 'demo.sh');

/** demo.sh's environment: its directory, its node, the lines it types, and whether it builds what is missing. */
export function privateDemoEnv(options: {
  dir: string;
  commandsFile: string;
  /** A node that is up already (node.sh's NODE_DIR); default DEMO_NODE_DIR's value if set, else the demo's own. */
  nodeDir?: string;
  /** Run scripts/setup.sh, make build and the image builds first (default: no, the caller did). */
  build?: boolean;
}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DEMO_DIR: options.dir,
    DEMO_COMMANDS: options.commandsFile,
    DEMO_BUILD: options.build ? '1' : '0',
  };
  if (options.nodeDir !== undefined) env.DEMO_NODE_DIR = options.nodeDir;
  return env;
}

/** The admin kubeconfig of the node a demo with this environment runs on. */
export function demoKubeconfig(env: NodeJS.ProcessEnv): string {
  return join(env.DEMO_NODE_DIR || join(env.DEMO_DIR!, 'cluster'), 'kubeconfig');
}
