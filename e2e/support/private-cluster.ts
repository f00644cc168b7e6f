/**
 * A control plane of one's own (e2e/cluster/cluster.sh: etcd + kube-apiserver), on free loopback ports and in
 * its own directory under .cache/, for what runs outside the integration tier's shared one: the node tier's
 * tests and the benchmarks. Never collides with a developer's `make cluster-up` or another run.
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

const CLUSTER_SCRIPT = join(REPO_ROOT, 'e2e', 'cluster', 'cluster.sh');

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface PrivateCluster {
  dir: string;
  kubeconfig: string;
  /** The API server's URL. */
  server: string;
  /** Stops both processes and deletes the directory; idempotent. */
  stop(): void;
}

/**
 * Starts one (cluster.sh prints its progress on `output`'s descriptor: 2 for stderr, 'ignore' for none) and
 * waits until it is ready; throws if it does not come up, after cleaning up what did.
 */
export async function startPrivateCluster(name: string, output: 2 | 'ignore' = 2): Promise<PrivateCluster> {
  const settings = {
    CLUSTER_DIR: join(REPO_ROOT, '.cache', `${name}-${process.pid}`),
    APISERVER_PORT: String(await freePort()),
    ETCD_PORT: String(await freePort()),
    ETCD_PEER_PORT: String(await freePort()),
  };
  const env = { ...process.env, ...settings };
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    const down = spawnSync('bash', [CLUSTER_SCRIPT, 'down'], { env, stdio: ['ignore', output, output] });
    if (down.status !== 0) throw new Error(`cluster.sh down exited ${down.status ?? down.signal}`);
  };
  const up = spawnSync('bash', [CLUSTER_SCRIPT, 'up'], { env, stdio: ['ignore', output, output] });
  if (up.status !== 0) {
    stop();
    throw new Error(`cluster.sh up exited ${up.status ?? up.signal}`);
  }
  return {
    dir: settings.CLUSTER_DIR,
    kubeconfig: join(settings.CLUSTER_DIR, 'kubeconfig'),
    server: `https://127.0.0.1:${settings.APISERVER_PORT}`,
    stop,
  };
}
