/**
 * What runs our CLI in a bench that compares, side by side in one run, either Node.js runtimes on the working
 * tree (`--node LIST`: a runtime move, Node 20 -> 24 and the next) or the working tree against another
 * revision's build on one runtime (`--baseline REV`: a change against the commit before), on the same noisy
 * machine, as ratios to the first of them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NODE_FLAGS } from '../cli/node-flags.js';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { type BaselineBuild, baselineBuild } from './baseline-build.js';

export interface Runtime {
  /** The node binary. */
  path: string;
  /** What it says it is: `v24.22.3`. */
  version: string;
  /** Node.js/V8 flags it runs the CLI with (before the script). */
  flags: string[];
}

/** A compiled checkout: the working tree, or another revision built by baseline-build.ts. */
export interface Build {
  /** `working tree`, or `baseline <short commit>`. */
  label: string;
  /** The checkout; its compiled files are under dist/. */
  root: string;
  /** The CLI as users run it: the checkout's package.json "bin" (which may move from one revision to another). */
  bin: string;
  /** For another revision: `<short commit> <subject>`. */
  subject?: string;
}

/** One of the things a bench compares: a build on a runtime, with a short name for table headers. */
export interface CliVariant {
  runtime: Runtime;
  build: Build;
  /** `baseline` and `now` for builds; `v20`, `v24` (or the full version, or `#2`) for runtimes. */
  name: string;
  /** `node v24.22.3 --flag` for runtimes; `baseline 6124525a on node v24.22.3` for builds. */
  label: string;
}

/** The executable of a checkout, from its package.json "bin" (a path, or one entry per command). */
export function cliEntry(root: string): string {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    bin?: string | Record<string, string>;
  };
  const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin?.['container-auditor'];
  if (!bin) throw new Error(`${root}/package.json has no "bin" for container-auditor`);
  const entry = join(root, bin);
  if (!existsSync(entry)) throw new Error(`${entry} (package.json "bin") is missing: run make build`);
  return entry;
}

export const workingTree = (): Build => ({
  label: 'working tree',
  root: REPO_ROOT,
  bin: cliEntry(REPO_ROOT),
});

function buildOf(base: BaselineBuild): Build {
  return {
    label: `baseline ${base.commit.slice(0, 8)}`,
    root: base.root,
    bin: cliEntry(base.root),
    subject: base.subject,
  };
}

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

/** Fails early on a comparison the benches do not make: builds and runtimes at once. */
export function checkComparison(runtimes: Runtime[], baseline: string | undefined): void {
  if (baseline !== undefined && runtimes.length > 1)
    throw new Error('--baseline compares two builds on one runtime: give --node at most one runtime with it');
}

/**
 * What a bench runs, the first being the baseline of its ratios: with a baseline revision, its build (made
 * once, see baseline-build.ts) then the working tree, both on the one runtime; else the working tree on each
 * runtime. Call checkComparison first.
 */
export function cliVariants(runtimes: Runtime[], baseline: string | undefined): CliVariant[] {
  checkComparison(runtimes, baseline);
  const tree = workingTree();
  if (baseline !== undefined) {
    const runtime = runtimes[0]!;
    return [buildOf(baselineBuild(baseline)), tree].map((build, i) => ({
      runtime,
      build,
      name: i === 0 ? 'baseline' : 'now',
      label: `${build.label} on ${runtimeLabel(runtime)}`,
    }));
  }
  // Short names: the major version where it tells the runtimes apart, else the version, else the place.
  const versions = runtimes.map((r) => r.version);
  const majors = versions.map((v) => v.split('.')[0]!);
  const count = (xs: string[], x: string) => xs.filter((y) => y === x).length;
  return runtimes.map((runtime, i) => ({
    runtime,
    build: tree,
    label: runtimeLabel(runtime),
    name:
      count(majors, majors[i]!) === 1
        ? majors[i]!
        : count(versions, versions[i]!) === 1
          ? versions[i]!
          : `#${i + 1}`,
  }));
}

/**
 * The same CLI without the launcher's (cli/container-auditor.js) version gate, for an older runtime measured as a baseline only: main() of
 * dist/cli/main.js on the arguments after the script, as the launcher runs it.
 */
const RUN_MAIN =
  'const { main } = await import(process.argv[1]); process.exitCode = await main(process.argv.slice(2));';

/** The command line that runs `container-auditor <args>` as `variant` says. */
export function cliCommand(variant: CliVariant, args: string[]): { command: string; args: string[] } {
  const { runtime, build } = variant;
  if (realpathSync(runtime.path) === realpathSync(process.execPath))
    return { command: runtime.path, args: [...runtime.flags, build.bin, ...args] };
  const main = join(build.root, 'dist', 'cli', 'main.js');
  if (!existsSync(main))
    throw new Error(`${main} is missing: another runtime runs the CLI's main() from there`);
  return {
    command: runtime.path,
    args: [...runtime.flags, '--input-type=module', '-e', RUN_MAIN, pathToFileURL(main).href, ...args],
  };
}

/** `node v24.22.3`, with its flags if any. */
export const runtimeLabel = (runtime: Runtime): string =>
  [`node ${runtime.version}`, ...runtime.flags].join(' ');
