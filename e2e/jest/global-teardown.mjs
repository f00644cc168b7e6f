/** Stops the control plane that global-setup.mjs started, and removes its data; leaves a reused one alone. */
import { spawnSync } from 'node:child_process';
import { CLUSTER_SCRIPT, STARTED_CLUSTER_ENV } from './global-setup.mjs';

export default function globalTeardown() {
  const started = process.env[STARTED_CLUSTER_ENV];
  if (!started) return;
  const env = { ...process.env, ...JSON.parse(started) };
  const down = spawnSync('bash', [CLUSTER_SCRIPT, 'down'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (down.status !== 0) throw new Error(`cluster.sh down exited ${down.status ?? down.signal}`);
}
