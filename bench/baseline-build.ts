/**
 * A build of another revision of this repository, for benches that compare the working tree with it side by
 * side in one run: the revision's files are taken with `git archive` into .cache/bench-baseline/<commit>/,
 * given this checkout's node_modules when its lock file is the same (a symlink), else its own from its lock
 * file (npm ci: a dependency upgrade is compared against the versions before it), and compiled with its own
 * tsconfig.build.json. Kept between runs, keyed by commit, so a second run starts at once.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { progress } from './support.js';

/** The revision a bench compares with when `--baseline` names none: the commit before. */
export const DEFAULT_BASELINE = 'HEAD~1';

export interface BaselineBuild {
  /** The full commit id the build is of. */
  commit: string;
  /** Its one-line subject, for the table's caption. */
  subject: string;
  /** The revision's checkout; its compiled files are under dist/. */
  root: string;
}

function git(args: string[]): string {
  const r = spawnSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`git ${args.join(' ')}: ${(r.stderr ?? '').trim() || `exit ${r.status}`}`);
  return r.stdout.trim();
}

/** Builds `revision` (any name git knows: a commit, HEAD~3, a tag) once, and returns where it is. */
export function baselineBuild(revision: string): BaselineBuild {
  const commit = git(['rev-parse', '--verify', `${revision}^{commit}`]);
  const subject = git(['log', '-1', '--format=%h %s', commit]);
  const root = join(REPO_ROOT, '.cache', 'bench-baseline', commit);
  const done = join(root, '.built');
  if (existsSync(done)) return { commit, subject, root };

  progress(`building the baseline ${subject.slice(0, 80)} in ${root} (once; about a minute)`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const archive = spawnSync(
    'bash',
    ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', '_', REPO_ROOT, commit, root],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (archive.status !== 0) throw new Error(`could not unpack ${commit} into ${root}`);
  const lock = (dir: string) => readFileSync(join(dir, 'package-lock.json'), 'utf8');
  if (lock(root) === lock(REPO_ROOT))
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  else {
    progress(`the baseline's lock file differs from this checkout's: npm ci in ${root}`);
    const ci = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (ci.status !== 0) throw new Error(`npm ci for the baseline ${commit} failed (exit ${ci.status})`);
  }
  const tsc = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (tsc.status !== 0) throw new Error(`the baseline ${commit} does not compile (tsc exit ${tsc.status})`);
  writeFileSync(done, `${subject}\n`);
  return { commit, subject, root };
}
