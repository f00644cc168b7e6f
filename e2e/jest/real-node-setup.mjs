/**
 * Brings up the real-node tier's Kubernetes node (e2e/node/node.sh) in a directory of its own, builds the
 * images from the Dockerfiles in images/ (images/build.sh, cached by content) and imports them into the node's
 * containerd. Test files find the node through CONTAINER_AUDITOR_TEST_KUBECONFIG and
 * CONTAINER_AUDITOR_TEST_NODE_DIR, which the Jest workers inherit.
 *
 * One node runs on a machine at a time (kube-proxy's iptables chains are the host's): when a developer's node
 * is up, node.sh refuses and says how to take it down. Set CONTAINER_AUDITOR_TEST_NODE_DIR yourself to run the
 * tier against a node that is already up (nothing is started or stopped then; the images are still imported).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const NODE_SCRIPT = join(REPO_ROOT, 'e2e', 'node', 'node.sh');
export const IMAGES_SCRIPT = join(REPO_ROOT, 'images', 'build.sh');
/** The images the chart runs, as images/build.sh leaves them. */
export const IMAGE_ARCHIVES = ['operator', 'agent'].map((name) =>
  join(REPO_ROOT, '.cache', 'images', `${name}.tar`),
);
/** Set when this set-up started the node itself: global teardown takes it down. */
export const STARTED_NODE_ENV = 'CONTAINER_AUDITOR_TEST_NODE_STARTED';

function run(what, argv, env) {
  const result = spawnSync('bash', argv, { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0)
    throw new Error(`${what} failed (${argv.join(' ')} exited ${result.status ?? result.signal})`);
}

export default async function realNodeSetup() {
  if (process.getuid?.() !== 0) throw new Error('the real-node tier runs a Kubernetes node: run it as root');
  let nodeDir = process.env.CONTAINER_AUDITOR_TEST_NODE_DIR;
  const env = { ...process.env };
  if (!nodeDir) {
    nodeDir = join(REPO_ROOT, '.cache', `test-node-${process.pid}`);
    env.NODE_DIR = nodeDir;
    process.stderr.write(`\nStarting a test node in ${nodeDir}\n`);
    try {
      run('bringing the test node up', [NODE_SCRIPT, 'up'], env);
    } catch (error) {
      spawnSync('bash', [NODE_SCRIPT, 'down'], { env, stdio: 'inherit' });
      throw error;
    }
    process.env[STARTED_NODE_ENV] = nodeDir;
  }
  env.NODE_DIR = nodeDir;
  process.stderr.write('Building the images from the Dockerfiles in images/ (cached by content)\n');
  run('building the images', [IMAGES_SCRIPT, 'operator', 'agent'], env);
  for (const archive of IMAGE_ARCHIVES)
    if (!existsSync(archive)) throw new Error(`images/build.sh left no ${archive}`);
  run('importing the images into the node', [NODE_SCRIPT, 'import', ...IMAGE_ARCHIVES], env);
  process.env.CONTAINER_AUDITOR_TEST_NODE_DIR = nodeDir;
  process.env.CONTAINER_AUDITOR_TEST_KUBECONFIG = join(nodeDir, 'kubeconfig');
}
