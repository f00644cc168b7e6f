/**
 * Starts a private control plane (etcd + kube-apiserver, e2e/cluster/cluster.sh) for the integration tier,
 * on free loopback ports and in its own directory, so it never collides with a developer's `make cluster-up`.
 * Test files find it through CONTAINER_AUDITOR_TEST_KUBECONFIG, which the Jest workers inherit.
 *
 * Plain JavaScript: Jest loads global set-up outside its module mapper. Set CONTAINER_AUDITOR_TEST_KUBECONFIG
 * yourself to run the tier against a control plane that is already up (nothing is started or stopped then).
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const CLUSTER_SCRIPT = join(REPO_ROOT, 'e2e', 'cluster', 'cluster.sh');
/** Set when this set-up started the control plane itself: the settings global-teardown needs to stop it. */
export const STARTED_CLUSTER_ENV = 'CONTAINER_AUDITOR_TEST_CLUSTER';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export default async function globalSetup() {
  if (process.env.CONTAINER_AUDITOR_TEST_KUBECONFIG) return;
  const settings = {
    CLUSTER_DIR: join(REPO_ROOT, '.cache', `test-cluster-${process.pid}`),
    APISERVER_PORT: String(await freePort()),
    ETCD_PORT: String(await freePort()),
    ETCD_PEER_PORT: String(await freePort()),
  };
  const env = { ...process.env, ...settings };
  process.stderr.write(`\nStarting a test control plane in ${settings.CLUSTER_DIR}\n`);
  const up = spawnSync('bash', [CLUSTER_SCRIPT, 'up'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (up.status !== 0) {
    spawnSync('bash', [CLUSTER_SCRIPT, 'down'], { env, stdio: 'inherit' });
    throw new Error(`the test control plane did not start (cluster.sh up exited ${up.status ?? up.signal})`);
  }
  process.env.CONTAINER_AUDITOR_TEST_KUBECONFIG = join(settings.CLUSTER_DIR, 'kubeconfig');
  process.env[STARTED_CLUSTER_ENV] = JSON.stringify(settings);
}
