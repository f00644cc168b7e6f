/**
 * Builds what a Dockerfile's stages add to their bases, on this machine and without a container engine: each
 * stage gets a directory standing for its `/`; COPY copies from the build context (through the Dockerfile's
 * .dockerignore, as BuildKit sends it) or from another stage's directory; WORKDIR makes directories; RUN lines
 * that build files (npm ci, tsc, make) run here, in the stage's directory, with this machine's node, npm and
 * gcc. What a RUN does to the base's system (apt-get, useradd, removing npm) cannot be done here: Debian
 * packages are checked against this machine's (which must be the same Debian release), the rest is reported
 * as not reproduced. Anything else is refused, so that a Dockerfile this cannot follow fails rather than
 * passes untested.
 *
 * Stages that come out the same (same instructions, same context files, same stages copied from) are built
 * once per Emulator, as BuildKit's cache would; independent stages build concurrently.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';
import {
  evaluate,
  finalStage,
  isIgnored,
  lexWords,
  parseDockerfile,
  parseDockerignore,
  parseImageRef,
  stagesNeeded,
  type IgnoreRule,
  type ResolvedInstruction,
  type ResolvedStage,
} from './dockerfile.js';

export interface DebianPackage {
  name: string;
  version?: string;
}

/** A RUN line, split at `&&`, step by step. */
export type RunStep =
  /** Builds files: run here, in the stage's directory. */
  | { kind: 'exec'; argv: string[] }
  /** apt-get install: checked against this machine's packages (same Debian release). */
  | { kind: 'packages'; packages: DebianPackage[] }
  /** Changes the base's system outside what the stages pass on: not reproduced, reported. */
  | { kind: 'system'; command: string };

/** Programs a RUN may run to build files; a relative path (./node_modules/.bin/tsc) is one too. */
const BUILDERS = new Set(['npm', 'make', 'node']);
/** Programs that change the base image's system only. */
const SYSTEM = new Set(['groupadd', 'useradd']);

export class UnsupportedRunError extends Error {}

/**
 * What a RUN does, step by step; `staged` are the absolute paths the stage copies to or works in, which a
 * step that is not reproduced must leave alone. Pure. Throws UnsupportedRunError on anything else.
 */
export function planRun(command: string, env: Record<string, string>, staged: readonly string[]): RunStep[] {
  const steps: RunStep[] = [];
  for (const part of splitAnd(command)) {
    const argv = lexWords(part, { lookup: (n) => env[n] });
    const [program = '', ...args] = argv;
    const refuse = (why: string) => new UnsupportedRunError(`RUN ${part.trim()}: ${why}`);
    if (program === 'apt-get' && args[0] === 'update') {
      steps.push({ kind: 'system', command: part.trim() });
    } else if (program === 'apt-get' && args.includes('install')) {
      const names = args.slice(args.indexOf('install') + 1).filter((a) => !a.startsWith('-'));
      if (names.length === 0) throw refuse('installs nothing');
      steps.push({
        kind: 'packages',
        packages: names.map((n) => {
          const eq = n.indexOf('=');
          return eq < 0 ? { name: n } : { name: n.slice(0, eq), version: n.slice(eq + 1) };
        }),
      });
    } else if (program === 'rm' || SYSTEM.has(program)) {
      const paths = args.filter((a) => !a.startsWith('-'));
      if (program === 'rm' && paths.some((p) => !p.startsWith('/')))
        throw refuse('removes a relative path (not reproduced: it would change staged files)');
      const touched = paths.find((p) => {
        const path = p.replace(/\*.*$/, '');
        return staged.some(
          (s) => s === path || s.startsWith(`${path.replace(/\/$/, '')}/`) || path.startsWith(`${s}/`),
        );
      });
      if (touched !== undefined) throw refuse(`touches ${touched}, where the stage puts its files`);
      steps.push({ kind: 'system', command: part.trim() });
    } else if (BUILDERS.has(program) || (program.startsWith('./') && !program.includes('..'))) {
      const absolute = args.find((a) => a.startsWith('/') || a.includes('..'));
      if (absolute !== undefined) throw refuse(`${absolute}: a path outside the stage's directory`);
      steps.push({ kind: 'exec', argv });
    } else {
      throw refuse(`${program || 'this'} is not something images/emulate.ts knows how to reproduce`);
    }
  }
  return steps;
}

/** `a && b && c`: the parts. Other shell syntax (; | redirections, substitutions) is refused. */
function splitAnd(command: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') current += command[i++];
      current += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      current += c;
    } else if (c === '&' && command[i + 1] === '&') {
      parts.push(current);
      current = '';
      i++;
    } else if (/[;|<>&`()]/.test(c) || (c === '$' && command[i + 1] === '(')) {
      throw new UnsupportedRunError(`RUN ${command.trim()}: shell syntax ${c} is not reproduced`);
    } else current += c;
  }
  if (quote) throw new UnsupportedRunError(`RUN ${command.trim()}: unmatched ${quote}`);
  parts.push(current);
  if (parts.some((p) => p.trim() === ''))
    throw new UnsupportedRunError(`RUN ${command.trim()}: empty command`);
  return parts;
}

/** The Debian release a base image is built on, from its reference; undefined when it does not say. */
export function debianRelease(ref: string): string | undefined {
  const { repository, tag = '' } = parseImageRef(ref);
  const named = /\b(bookworm|bullseye|trixie)\b/.exec(tag)?.[1];
  if (named) return named;
  if (repository === 'debian' || repository.endsWith('/debian'))
    return { '11': 'bullseye', '12': 'bookworm', '13': 'trixie' }[/^(\d+)/.exec(tag)?.[1] ?? ''];
  return undefined;
}

export interface EmulatorOptions {
  /** The build context: the repository root. */
  context: string;
  /** Where stage directories go (made world-readable: the operator's files are read as uid 65532). */
  workDir: string;
  /** Progress lines. */
  log?: (line: string) => void;
  /** The platform built for and on (default linux/amd64 both). */
  platform?: string;
}

export interface StagedImage {
  /** The Dockerfile, relative to the context. */
  dockerfile: string;
  stages: ResolvedStage[];
  /** The stage built (the last one). */
  stage: ResolvedStage;
  /** What the Dockerfile adds to its base: the host directory standing for the image's /. */
  root: string;
  /** The ignore file used, relative to the context (none: undefined). */
  ignoreFile?: string;
  /** apt-get installs of the built stage, checked against this machine's packages. */
  packages: DebianPackage[];
  /** RUN steps of the needed stages that were not reproduced (system changes), by stage. */
  notReproduced: { stage: string; command: string }[];
}

interface Build {
  dockerfile: string;
  stages: ResolvedStage[];
  ignore: IgnoreRule[];
  ignoreFile?: string;
  roots: Map<number, Promise<string>>;
  notReproduced: { stage: string; command: string }[];
}

export class Emulator {
  private readonly stageCache = new Map<string, Promise<string>>();
  private readonly log: (line: string) => void;
  private readonly platform: string;

  constructor(private readonly options: EmulatorOptions) {
    this.log = options.log ?? (() => {});
    this.platform = options.platform ?? 'linux/amd64';
    mkdirSync(options.workDir, { recursive: true });
    chmodSync(options.workDir, 0o755);
  }

  /** Resolves once every stage started has finished, built or failed (before removing workDir). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.stageCache.values());
  }

  /** Builds the Dockerfile's last stage (and the stages it needs). */
  async build(dockerfile: string, buildArgs: Record<string, string> = {}): Promise<StagedImage> {
    const stages = evaluate(parseDockerfile(readFileSync(join(this.options.context, dockerfile), 'utf8')), {
      buildArgs,
      targetPlatform: this.platform,
      buildPlatform: this.platform,
    });
    // BuildKit: <Dockerfile>.dockerignore beside the Dockerfile, else .dockerignore at the context's root.
    const ignoreFile = [`${dockerfile}.dockerignore`, '.dockerignore'].find((f) =>
      existsSync(join(this.options.context, f)),
    );
    const build: Build = {
      dockerfile,
      stages,
      ignore: ignoreFile
        ? parseDockerignore(readFileSync(join(this.options.context, ignoreFile), 'utf8'))
        : [],
      ...(ignoreFile ? { ignoreFile } : {}),
      roots: new Map(),
      notReproduced: [],
    };
    const target = finalStage(stages);
    // Every key first: a COPY of a missing or ignored file throws here, before any stage has started.
    const keys = new Map<number, string>();
    const needed = stagesNeeded(stages, target.index);
    for (const index of needed) keys.set(index, this.stageKey(build, stages[index]!, keys));
    for (const index of needed) {
      const stage = stages[index]!;
      const key = keys.get(index)!;
      let root = this.stageCache.get(key);
      if (root) this.log(`${dockerfile} [${label(stage)}]: the same as a stage built before, reused`);
      else {
        root = this.buildStage(
          build,
          stage,
          join(this.options.workDir, `${key.slice(0, 12)}-${label(stage)}`),
        );
        this.stageCache.set(key, root);
      }
      // Failures surface where a stage is awaited; this only keeps an early one from being "unhandled".
      void root.catch(() => {});
      build.roots.set(index, root);
    }
    const root = await build.roots.get(target.index)!;
    return {
      dockerfile,
      stages,
      stage: target,
      root,
      ...(ignoreFile ? { ignoreFile } : {}),
      packages: planPackages(target),
      notReproduced: build.notReproduced,
    };
  }

  /** What makes a stage's result: its base, instructions, the context files it copies, the stages it copies. */
  private stageKey(build: Build, stage: ResolvedStage, keys: Map<number, string>): string {
    const parts = {
      base: stage.base,
      platform: stage.platform ?? '',
      instructions: stage.instructions.map((i) => ({
        keyword: i.keyword,
        flag: i.flag,
        args: i.args,
        ...(i.keyword === 'RUN' ? { env: i.env } : {}),
        ...(i.keyword === 'COPY' && i.flag.from === undefined
          ? { files: i.args.slice(0, -1).map((src) => this.contextFiles(build, i, src)) }
          : {}),
      })),
      from: stage.dependsOn.map((d) => keys.get(d)),
    };
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  private async buildStage(build: Build, stage: ResolvedStage, root: string): Promise<string> {
    if (stage.baseStage !== undefined)
      throw new Error(
        `${build.dockerfile}: stage ${label(stage)} builds on another stage: not supported here`,
      );
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { mode: 0o755 });
    chmodSync(root, 0o755);
    const staged = stagedPaths(stage);
    let workdir = '/';
    for (const instruction of stage.instructions) {
      const where = `${build.dockerfile}:${instruction.line} [${label(stage)}]`;
      switch (instruction.keyword) {
        case 'WORKDIR':
          workdir = posix.resolve(workdir, instruction.args[0]!);
          mkdirSync(join(root, workdir), { recursive: true });
          break;
        case 'COPY':
          await this.copy(build, instruction, root, workdir, where);
          break;
        case 'ADD':
          throw new Error(`${where}: ADD is not supported here (use COPY)`);
        case 'RUN': {
          const command = instruction.json ? instruction.json.join(' ') : instruction.text;
          // --mount (a cache, a secret) changes no result here; other flags are not known to be as harmless.
          const unsupported = Object.keys(instruction.flag).filter((f) => f !== 'mount');
          if (unsupported.length > 0)
            throw new Error(`${where}: RUN --${unsupported[0]} is not supported here`);
          for (const step of planRun(command, instruction.env, staged)) {
            if (step.kind === 'exec') await this.exec(step.argv, join(root, workdir), instruction.env, where);
            else if (step.kind === 'packages') checkHostPackages(stage, step.packages, where);
            else build.notReproduced.push({ stage: label(stage), command: step.command });
          }
          break;
        }
        default:
          break; // ARG, ENV, LABEL, USER, ENTRYPOINT, CMD, EXPOSE, ...: configuration, no files
      }
    }
    return root;
  }

  private async copy(
    build: Build,
    instruction: ResolvedInstruction,
    root: string,
    workdir: string,
    where: string,
  ): Promise<void> {
    const unsupported = Object.keys(instruction.flag).filter((f) => !['from', 'chmod', 'link'].includes(f));
    if (unsupported.length > 0) throw new Error(`${where}: COPY --${unsupported[0]} is not supported here`);
    const sources = instruction.args.slice(0, -1);
    const dest = instruction.args[instruction.args.length - 1]!;
    const destAbs = posix.resolve(workdir, dest);
    const destIsDir =
      dest.endsWith('/') ||
      sources.length > 1 ||
      (existsSync(join(root, destAbs)) && statSync(join(root, destAbs)).isDirectory());
    const mode = instruction.flag.chmod !== undefined ? parseInt(instruction.flag.chmod, 8) : undefined;
    if (mode !== undefined && (!/^[0-7]{3,4}$/.test(instruction.flag.chmod!) || Number.isNaN(mode)))
      throw new Error(`${where}: --chmod=${instruction.flag.chmod}: only octal modes are supported here`);
    for (const src of sources) {
      if (/[*?[]/.test(src)) throw new Error(`${where}: wildcards in COPY sources are not supported here`);
      let sourceRoot: string;
      let sourcePath: string;
      let files: string[];
      if (instruction.flag.from !== undefined) {
        const from = build.stages.find(
          (s) => s.name === instruction.flag.from!.toLowerCase() || String(s.index) === instruction.flag.from,
        )!;
        sourceRoot = await build.roots.get(from.index)!;
        sourcePath = posix.resolve('/', src);
        if (!existsSync(join(sourceRoot, sourcePath)))
          throw new Error(
            `${where}: COPY --from=${instruction.flag.from} ${src}: stage ${label(from)} has no ${sourcePath}`,
          );
        files = walk(sourceRoot, sourcePath.slice(1) || '.');
      } else {
        sourceRoot = this.options.context;
        sourcePath = contextPath(src);
        files = this.contextFiles(build, instruction, src);
      }
      const rel = sourcePath.replace(/^\/+/, '') || '.';
      const isDir = lstatSync(join(sourceRoot, rel)).isDirectory();
      for (const file of files) {
        const target = isDir
          ? posix.join(destAbs, posix.relative(rel, file))
          : destIsDir
            ? posix.join(destAbs, posix.basename(file))
            : destAbs;
        copyEntry(join(sourceRoot, file), join(root, target), mode);
      }
      if (isDir) mkdirSync(join(root, destAbs), { recursive: true });
    }
  }

  /** The context's files under `src` that the build sees (relative paths); throws when there is none. */
  private contextFiles(build: Build, instruction: ResolvedInstruction, src: string): string[] {
    const rel = contextPath(src);
    const where = `${build.dockerfile}:${instruction.line}`;
    if (rel === '..' || rel.startsWith('../'))
      throw new Error(`${where}: COPY ${src} is outside the context`);
    if (!existsSync(join(this.options.context, rel)))
      throw new Error(`${where}: COPY ${src}: no such file in the context (${this.options.context})`);
    const files = walk(this.options.context, rel).filter((f) => !isIgnored(build.ignore, f));
    if (files.length === 0)
      throw new Error(`${where}: COPY ${src}: left out of the context by ${build.ignoreFile ?? 'nothing?'}`);
    return files;
  }

  private async exec(argv: string[], cwd: string, env: Record<string, string>, where: string): Promise<void> {
    if (this.sameInstall(argv, cwd)) {
      symlinkSync(join(this.options.context, 'node_modules'), join(cwd, 'node_modules'));
      this.log(`${where}: ${argv.join(' ')}: the context's node_modules is that install, linked`);
      return;
    }
    const started = Date.now();
    this.log(`${where}: ${argv.join(' ')} (in ${cwd}) ...`);
    // What reaching the registry from this machine takes: proxies, npm's settings, and the CA of a proxy
    // that inspects TLS (Node.js, npm included, reads it from NODE_EXTRA_CA_CERTS).
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) =>
          /^(PATH|HOME|TMPDIR|LANG|NODE_EXTRA_CA_CERTS|(https?|no|all)_proxy)$/i.test(k) ||
          k.startsWith('npm_config_'),
      ),
    );
    const result = await run(argv, { cwd, env: { ...inherited, ...env } });
    if (result.code !== 0)
      throw new Error(`${where}: ${argv.join(' ')} exited ${result.code}\n${result.output.slice(-4000)}`);
    this.log(`${where}: ${argv[0]} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  /**
   * Whether `npm ci` (every dependency, dev ones included) in `cwd` would install what the context's
   * node_modules already holds: the same lock file, and scripts/setup.sh's record that node_modules was
   * installed from it (node_modules/.lock-hash, the lock's sha256). Then that install stands in for it (as a
   * build cache would, and 30 s faster). The one difference: it ran install scripts, which the image's npm ci
   * may skip; the build stage only needs typescript and @types from it. An npm ci that omits anything runs.
   */
  private sameInstall(argv: string[], cwd: string): boolean {
    if (argv[0] !== 'npm' || argv[1] !== 'ci') return false;
    if (argv.some((a) => /^--(omit|only|production|include)\b/.test(a))) return false;
    const lock = join(cwd, 'package-lock.json');
    const ours = join(this.options.context, 'package-lock.json');
    const recorded = join(this.options.context, 'node_modules', '.lock-hash');
    if (
      !existsSync(lock) ||
      !existsSync(ours) ||
      !existsSync(recorded) ||
      existsSync(join(cwd, 'node_modules'))
    )
      return false;
    const text = readFileSync(lock);
    if (!text.equals(readFileSync(ours))) return false;
    return readFileSync(recorded, 'utf8').trim() === createHash('sha256').update(text).digest('hex');
  }
}

/** A COPY source as a path relative to the context root. */
function contextPath(src: string): string {
  return posix.normalize(src).replace(/^\/+/, '').replace(/\/+$/, '') || '.';
}

function label(stage: ResolvedStage): string {
  return stage.name ?? String(stage.index);
}

/** The absolute paths a stage works in or copies to. */
function stagedPaths(stage: ResolvedStage): string[] {
  const paths: string[] = [];
  let workdir = '/';
  for (const i of stage.instructions) {
    if (i.keyword === 'WORKDIR') paths.push((workdir = posix.resolve(workdir, i.args[0]!)));
    if (i.keyword === 'COPY')
      paths.push(posix.resolve(workdir, i.args[i.args.length - 1]!).replace(/\/$/, ''));
  }
  return paths;
}

function planPackages(stage: ResolvedStage): DebianPackage[] {
  return stage.instructions
    .filter((i) => i.keyword === 'RUN')
    .flatMap((i) => planRun(i.json ? i.json.join(' ') : i.text, i.env, stagedPaths(stage)))
    .flatMap((s) => (s.kind === 'packages' ? s.packages : []));
}

/** Files, symlinks and empty directories under context/rel (itself when it is not a directory), relative. */
function walk(base: string, rel: string): string[] {
  const stat = lstatSync(join(base, rel));
  if (!stat.isDirectory()) return [rel];
  const entries = readdirSync(join(base, rel)).sort();
  if (entries.length === 0) return [rel];
  return entries.flatMap((e) => walk(base, rel === '.' ? e : posix.join(rel, e)));
}

/** Copies a file (mode kept, or `mode`), a symlink (as a symlink) or an empty directory. */
function copyEntry(from: string, to: string, mode: number | undefined): void {
  const stat = lstatSync(from);
  mkdirSync(dirname(to), { recursive: true });
  if (stat.isSymbolicLink()) {
    rmSync(to, { force: true });
    symlinkSync(readlinkSync(from), to);
  } else if (stat.isDirectory()) {
    mkdirSync(to, { recursive: true });
    if (mode !== undefined) chmodSync(to, mode);
  } else {
    rmSync(to, { force: true });
    copyFileSync(from, to);
    chmodSync(to, mode ?? stat.mode & 0o7777);
  }
}

/**
 * A stage's apt-get install, checked on this machine: it must run the Debian release the stage's base is
 * built on, and have each package installed (at the pinned version, when there is one). What the image
 * installs is then what this machine's tests run.
 */
function checkHostPackages(stage: ResolvedStage, packages: DebianPackage[], where: string): void {
  const release = debianRelease(stage.base);
  if (release === undefined)
    throw new Error(`${where}: cannot tell which Debian release ${stage.base} is, to check its packages`);
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  const here = /^VERSION_CODENAME=(\S+)$/m.exec(osRelease)?.[1];
  if (here !== release)
    throw new Error(
      `${where}: installs Debian ${release} packages; they are checked against this machine's, which runs ${here ?? 'no Debian'}`,
    );
  for (const { name, version } of packages) {
    const q = spawnSync('dpkg-query', ['-W', '-f=${db:Status-Status} ${Version}', name], {
      encoding: 'utf8',
    });
    const [status, installed] = (q.stdout ?? '').split(' ');
    if (q.status !== 0 || status !== 'installed')
      throw new Error(
        `${where}: the image installs ${name}, which this machine lacks; the test checks the image's packages against this Debian ${release} machine's (make setup installs them)`,
      );
    if (version !== undefined && installed !== version)
      throw new Error(
        `${where}: the image pins ${name}=${version}; this machine (what the tests run) has ${installed}`,
      );
  }
}

interface RunResult {
  code: number;
  output: string;
}

/** Runs a program to completion, stdout and stderr together (its diagnostics if it fails). */
function run(argv: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.on('data', (d: Buffer) => chunks.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? -1,
        output: Buffer.concat(chunks).toString('utf8') + (signal ? `\n[${signal}]` : ''),
      });
    });
  });
}
