/**
 * Node.js runtimes a bench runs our CLI under, side by side in one run (`--node LIST`): to compare a runtime
 * move (Node 20 -> 24, and the next) on the same commit, on the same noisy machine, as a ratio.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_FLAGS } from '../cli/node-flags.js';
import { REPO_ROOT } from '../e2e/support/paths.js';

export interface Runtime {
  /** The node binary. */
  path: string;
  /** What it says it is: `v24.22.3`. */
  version: string;
  /** Node.js/V8 flags it runs the CLI with (before the script). */
  flags: string[];
}

/** The CLI as users run it; its launcher refuses a Node.js older than package.json's engines. */
const CLI_BIN = join(REPO_ROOT, 'cli', 'container-auditor.js');
const CLI_MAIN = join(REPO_ROOT, 'dist', 'cli', 'main.js');
/**
 * The same CLI without the launcher's version gate, for an older runtime measured as a baseline only: main()
 * of dist/cli/main.js on the arguments after the script, as cli/container-auditor.js runs it.
 */
const RUN_MAIN =
  'const { main } = await import(process.argv[1]); process.exitCode = await main(process.argv.slice(2));';

/**
 * `--node LIST`: comma-separated node binaries, each optionally followed by flags it runs the CLI with
 * (`/usr/bin/node,/opt/node/bin/node --max-semi-space-size=16`); the first is the baseline of the ratios.
 * Without it: the node running the bench, with the flags the images run the CLI with (NODE_FLAGS). Each
 * must run and say its version.
 */
export function parseRuntimes(value: string | undefined): Runtime[] {
  const entries =
    value === undefined
      ? [[process.execPath, ...NODE_FLAGS]]
      : value.split(',').map((e) => e.trim().split(/\s+/));
  return entries.map(([path = '', ...flags]) => {
    if (path === '') throw new Error('--node: an empty entry in the list');
    const r = spawnSync(path, ['--version'], { encoding: 'utf8' });
    const version = (r.stdout ?? '').trim();
    if (r.status !== 0 || !/^v\d+\.\d+\.\d+/.test(version))
      throw new Error(
        `--node: ${path} does not run as a Node.js (${r.error?.message ?? `exit ${r.status}`})`,
      );
    return { path, version, flags };
  });
}

/** The command line that runs `container-auditor <args>` on `runtime`. */
export function cliCommand(runtime: Runtime, args: string[]): { command: string; args: string[] } {
  if (realpathSync(runtime.path) === realpathSync(process.execPath))
    return { command: runtime.path, args: [...runtime.flags, CLI_BIN, ...args] };
  const url = new URL(`file://${CLI_MAIN}`).href;
  return {
    command: runtime.path,
    args: [...runtime.flags, '--input-type=module', '-e', RUN_MAIN, url, ...args],
  };
}

/** `node v24.22.3`, with its flags if any. */
export const runtimeLabel = (runtime: Runtime): string =>
  [`node ${runtime.version}`, ...runtime.flags].join(' ');
