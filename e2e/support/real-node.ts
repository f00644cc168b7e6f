/** What the real-node tier's tests share: the node e2e/jest/real-node-setup.mjs brought up, and its script. */
import { join } from 'node:path';
import { type CommandResult, runCommand } from './command.js';
import { REPO_ROOT } from './paths.js';

export const NODE_SCRIPT = join(REPO_ROOT, 'e2e', 'node', 'node.sh');
/** The Node's name (node.sh's NODE_NAME default). */
export const NODE_NAME = 'audit-node';
/** The namespace the chart is installed into (labelled privileged: the agent needs it). */
export const SYSTEM_NS = 'container-auditor';

/** The tier's node directory; '' outside the tier (beforeAll then says so). */
export const TEST_NODE_DIR = process.env.CONTAINER_AUDITOR_TEST_NODE_DIR ?? '';

/** node.sh against the tier's node. */
export function nodeScript(args: string[], timeoutMs = 300_000): Promise<CommandResult> {
  return runCommand('bash', [NODE_SCRIPT, ...args], {
    env: { ...process.env, NODE_DIR: TEST_NODE_DIR },
    timeoutMs,
  });
}
