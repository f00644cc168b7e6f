/** Takes down the node real-node-setup.mjs started, restoring the host; leaves a reused one alone. */
import { spawnSync } from 'node:child_process';
import { NODE_SCRIPT, STARTED_NODE_ENV } from './real-node-setup.mjs';

export default function realNodeTeardown() {
  const nodeDir = process.env[STARTED_NODE_ENV];
  if (!nodeDir) return;
  const env = { ...process.env, NODE_DIR: nodeDir };
  const down = spawnSync('bash', [NODE_SCRIPT, 'down'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (down.status !== 0) throw new Error(`node.sh down exited ${down.status ?? down.signal}`);
}
