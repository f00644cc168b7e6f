/**
 * The node stack: a containerd with its CRI plugin on (e2e/support/containerd.ts), driven through crictl as a
 * kubelet would drive it, whose `container-auditor` runtime handler runs the runc wrapper and whose default
 * handler `runc` runs the others. Pods share the node's network namespace, so no CNI plugin is needed. Images
 * are built here from the host's files and imported into the `k8s.io` namespace (there is no registry).
 *
 *   const stack = await Stack.up();                        // a new /tmp/ca-stack-* directory
 *   const pod = await stack.runPod({ name: 'web', namespace: 'default', uid: pod.metadata.uid });
 *   const shell = await stack.openShell(pod.containerId);  // crictl exec -it <id> bash -i, on a pty
 *   ...
 *   await stack.down();                                    // pods, containerd, shims, mounts, the directory
 *
 * containerd runs detached, so a stack outlives the process that brought it up: Stack.attach(dir) finds it
 * again (the harness's command line, e2e/harness/main.ts, does that between `stack up` and `stack down`).
 * Several stacks run side by side, each in a directory of its own: socket, state, runc root, CNI directories and
 * cgroup parent all derive from it, and down() only stops this stack's containerd and shims.
 *
 * Requires root, Debian's containerd 1.6, runc, gcc (with libc6-dev for -static), busybox-static, and crictl
 * (built by e2e/cluster/build.sh; up() builds it when missing).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Handoff, parseHandoff } from '../../api/handoff/v1.js';
import { type CommandResult, type RunCommandOptions, runCommand } from '../support/command.js';
import {
  Containerd,
  isAlive,
  RUNC,
  removeEmptyCgroups,
  unmountUnder,
  writeWrapperRuntimeScript,
} from '../support/containerd.js';
import { buildImageArchive, buildShellImage, importImage } from '../support/image.js';
import { REPO_ROOT } from '../support/paths.js';
import { Terminal } from '../support/terminal.js';
import {
  AUDITED_HANDLER,
  containerConfig,
  CRI_NAMESPACE,
  criConfig,
  crictlConfig,
  DEMO_IMAGE,
  PAUSE_IMAGE,
  type PodSpec,
  podSpecProblem,
  sandboxConfig,
} from './cri-config.js';

export {
  AUDITED_HANDLER,
  CRI_NAMESPACE,
  DEFAULT_HANDLER,
  DEMO_IMAGE,
  PAUSE_IMAGE,
  type PodSpec,
} from './cri-config.js';

export const CRICTL = join(REPO_ROOT, '.cache', 'bin', 'crictl');
/** The stack of the command line when STACK_DIR does not say otherwise. */
export const DEFAULT_STACK_DIR = join(REPO_ROOT, '.cache', 'stack');
const PAUSE_SOURCE = join(REPO_ROOT, 'e2e', 'stack', 'pause.c');

/** bash's default prompt as root with no rc file (`bash-5.2# `). */
export const BASH_PROMPT = /bash-[\d.]+# /;

export interface StackOptions {
  /** Everything of the stack; down() deletes it. Default: a new directory /tmp/ca-stack-XXXXXX. */
  dir?: string;
  /** The wrapper's hand-off spool; default `<dir>/handoff` (created with mode 0700 by up if missing). */
  handoffDir?: string;
  /** How long up waits for containerd's CRI, in seconds; default 60. */
  readyTimeoutSeconds?: number;
  /** Where up and down say what they do; default nowhere. */
  log?: (line: string) => void;
}

export interface RunningPod {
  podId: string;
  containerId: string;
}

/** The parts of an OCI runtime spec (a bundle's config.json) that tests look at. */
export interface BundleConfig {
  annotations?: Record<string, string>;
  process?: { args?: string[]; env?: string[]; cwd?: string };
  linux?: { cgroupsPath?: string; namespaces?: { type: string; path?: string }[] };
}

export class StackError extends Error {}

/** What a stack remembers in its directory, so later commands need only the directory. */
interface StackSettings {
  handoffDir: string;
}

/** The directory a stack may own: absolute, and none whose deletion would hurt. */
export function stackDir(dir: string): string {
  const absolute = resolve(dir);
  const refused = ['/', homedir(), REPO_ROOT, join(REPO_ROOT, '.cache'), '/tmp', '/run'];
  if (refused.includes(absolute)) throw new StackError(`refusing to use ${absolute} as a stack's directory`);
  // A unix socket path holds at most 107 bytes; the shim's ttrpc one is 6 longer than containerd's.
  if (join(absolute, 'containerd', 'containerd.sock').length + 6 > 107)
    throw new StackError(`${absolute} is too long for a unix socket path in it`);
  return absolute;
}

export class Stack {
  readonly containerdDir: string;
  /** containerd's gRPC socket (the CRI endpoint is the same socket). */
  readonly socket: string;
  readonly containerdLog: string;
  readonly crictlConfig: string;
  /** The wrapper's own log (its problems; absent when all is well). */
  readonly wrapperLog: string;
  /** The wrapper's optional configuration file (for ack_timeout_ms, agent_stale_ms); absent by default. */
  readonly wrapperConfig: string;
  /** The `container-auditor` handler's runtime binary: a script that runs the wrapper with its settings. */
  readonly runtimeScript: string;
  /** Where the runc shim keeps each task's bundle (`<this>/<id>/config.json`). */
  readonly taskStateDir: string;
  /** runc's --root for the CRI's containers. */
  readonly runcRoot: string;
  /** Every pod's cgroup parent (cgroupfs, like the kubelet's /kubepods), named after the directory. */
  readonly cgroupRoot: string;
  readonly imagesDir: string;
  private readonly podsDir: string;
  private readonly settingsFile: string;
  /** Lets down() know the directory is a stack's, which it may delete. */
  private readonly marker: string;
  private containerd: Containerd;

  private constructor(
    readonly dir: string,
    readonly handoffDir: string,
    private readonly log: (line: string) => void,
  ) {
    this.containerdDir = join(dir, 'containerd');
    this.containerd = Containerd.attach(this.containerdDir);
    this.socket = this.containerd.address;
    this.containerdLog = this.containerd.logFile;
    this.taskStateDir = join(this.containerd.state, 'io.containerd.runtime.v2.task', CRI_NAMESPACE);
    this.runcRoot = join(this.containerd.runcRoot, CRI_NAMESPACE);
    this.crictlConfig = join(dir, 'crictl.yaml');
    this.wrapperLog = join(dir, 'wrapper.log');
    this.wrapperConfig = join(dir, 'runc-wrapper.conf');
    this.runtimeScript = join(dir, 'runtime', 'container-auditor-runc');
    this.imagesDir = join(dir, 'images');
    this.podsDir = join(dir, 'pods');
    this.settingsFile = join(dir, 'stack.json');
    this.marker = join(dir, '.container-auditor-stack');
    this.cgroupRoot = `ca-stack-${createHash('sha256').update(dir).digest('hex').slice(0, 10)}`;
  }

  /**
   * The stack in `dir` as an earlier up() left it (running or not): its spool as it remembered it unless
   * `handoffDir` says otherwise.
   */
  static attach(dir: string, options: Pick<StackOptions, 'handoffDir' | 'log'> = {}): Stack {
    const absolute = stackDir(dir);
    let handoffDir = options.handoffDir;
    try {
      const settings = JSON.parse(readFileSync(join(absolute, 'stack.json'), 'utf8')) as StackSettings;
      handoffDir ??= settings.handoffDir;
    } catch {
      // never up, or gone
    }
    return new Stack(absolute, resolve(handoffDir ?? join(absolute, 'handoff')), options.log ?? (() => {}));
  }

  /**
   * Brings a stack up: builds what is missing (crictl, the runc wrapper), the images, containerd's config, then
   * starts containerd, imports the images and waits until the CRI lists them. A stack that runs already is
   * kept; one that is stopped or unhealthy is taken down first. On failure takes everything down and throws.
   */
  static async up(options: StackOptions = {}): Promise<Stack> {
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'ca-stack-'));
    const stack = Stack.attach(dir, options);
    try {
      ensureTools(stack.log);
    } catch (error) {
      removeIfEmpty(stack.dir); // the temporary directory made above
      throw error;
    }
    mkdirSync(stack.dir, { recursive: true });
    let unlock = await lockDir(stack.dir);
    try {
      if (stack.containerd.running() && (await stack.criReady())) {
        stack.log(`Stack in ${stack.dir} is already up (containerd pid ${stack.containerdPid()})`);
        return stack;
      }
      if (existsSync(stack.marker)) {
        stack.log(`Found a stopped or unhealthy stack in ${stack.dir}; taking it down first`);
        await stack.teardown();
        mkdirSync(stack.dir, { recursive: true });
        unlock = await lockDir(stack.dir);
      }
      try {
        await stack.bringUp(options.readyTimeoutSeconds ?? 60);
      } catch (error) {
        const message = `${(error as Error).message}\n--- containerd log (tail) ---\n${stack.containerd.logTail(30)}`;
        await stack.teardown();
        throw new StackError(message, { cause: error });
      }
    } finally {
      unlock();
    }
    return stack;
  }

  private async bringUp(readyTimeoutSeconds: number): Promise<void> {
    const started = Date.now();
    writeFileSync(this.marker, '');
    writeFileSync(
      this.settingsFile,
      `${JSON.stringify({ handoffDir: this.handoffDir } satisfies StackSettings)}\n`,
    );
    mkdirSync(this.imagesDir, { recursive: true });
    mkdirSync(this.podsDir, { recursive: true });

    this.log(`Building the images (pause, demo-shell) in ${this.imagesDir}`);
    const pauseRoot = join(this.imagesDir, 'pause-rootfs');
    mkdirSync(pauseRoot, { recursive: true });
    compile(PAUSE_SOURCE, join(pauseRoot, 'pause'));
    const pause = buildImageArchive(pauseRoot, join(this.imagesDir, 'pause.oci.tar'), {
      ref: PAUSE_IMAGE,
      entrypoint: ['/pause'],
      cmd: [],
    });
    const shell = buildShellImage(
      join(this.imagesDir, 'demo-shell-rootfs'),
      join(this.imagesDir, 'demo-shell.oci.tar'),
      DEMO_IMAGE,
    );

    mkdirSync(dirname(this.runtimeScript), { recursive: true });
    writeWrapperRuntimeScript(this.runtimeScript, {
      handoffDir: this.handoffDir,
      dir: this.dir,
      configFile: this.wrapperConfig,
    });
    writeFileSync(this.crictlConfig, crictlConfig(this.socket));
    if (!existsSync(this.handoffDir)) mkdirSync(this.handoffDir, { recursive: true, mode: 0o700 });
    const cniDir = join(this.containerdDir, 'cni');
    for (const sub of ['bin', 'net.d']) mkdirSync(join(cniDir, sub), { recursive: true });

    this.log(`Starting containerd with the CRI plugin (socket ${this.socket}, log ${this.containerdLog})`);
    const deadline = Date.now() + readyTimeoutSeconds * 1000;
    const containerd = await Containerd.start({
      dir: this.containerdDir,
      cri: true,
      extraConfig: criConfig({
        runc: RUNC,
        auditedRuntime: this.runtimeScript,
        runcRoot: this.containerd.runcRoot,
        cniDir,
      }),
      detached: true,
      startTimeoutMs: readyTimeoutSeconds * 1000,
    });
    this.containerd = containerd;
    while (!(await this.criReady())) {
      if (!this.containerd.running()) throw new StackError('containerd exited during start-up');
      if (Date.now() > deadline)
        throw new StackError(`containerd's CRI did not answer within ${readyTimeoutSeconds} s`);
      await sleep(200);
    }
    this.log(`Importing ${PAUSE_IMAGE} and ${DEMO_IMAGE} into containerd's ${CRI_NAMESPACE} namespace`);
    for (const archive of [pause, shell]) {
      await importImage(this.containerd, CRI_NAMESPACE, archive);
      // The CRI keeps its own view of the images, updated from containerd's events.
      while ((await this.crictl(['inspecti', archive.ref])).code !== 0) {
        if (Date.now() > deadline)
          throw new StackError(`the CRI does not list ${archive.ref} after its import`);
        await sleep(200);
      }
    }
    this.log(
      `Stack is up in ${((Date.now() - started) / 1000).toFixed(1)} s: containerd pid ${this.containerdPid()}, CRI socket ${this.socket}`,
    );
  }

  /** The pid of the stack's containerd if it runs. */
  containerdPid(): number | undefined {
    return this.containerd.running() ? this.containerd.pid : undefined;
  }

  /** Whether containerd runs and its CRI says the runtime is ready. */
  async criReady(): Promise<boolean> {
    if (!existsSync(CRICTL) || !existsSync(this.crictlConfig)) return false;
    const info = await this.crictl(['--timeout', '5s', 'info'], { timeoutMs: 10_000 });
    return info.code === 0 && info.stdout.includes('"RuntimeReady"');
  }

  /** Shell lines that point crictl (and the CRI's usual variables) at this stack: for `eval`. */
  envLines(): string[] {
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    return [
      `export CONTAINER_RUNTIME_ENDPOINT=${quote(`unix://${this.socket}`)}`,
      `export IMAGE_SERVICE_ENDPOINT=${quote(`unix://${this.socket}`)}`,
      `export CRI_CONFIG_FILE=${quote(this.crictlConfig)}`,
      `export PATH=${quote(`${join(REPO_ROOT, '.cache', 'bin')}:${process.env.PATH ?? ''}`)}`,
    ];
  }

  /** The whole command line of crictl against this stack (to run elsewhere, on a terminal for one). */
  crictlCommand(args: string[]): string[] {
    return [CRICTL, '--config', this.crictlConfig, ...args];
  }

  /** crictl against this stack; never rejects for a non-zero exit. */
  crictl(args: string[], options: RunCommandOptions = {}): Promise<CommandResult> {
    const [command, ...rest] = this.crictlCommand(args);
    return runCommand(command!, rest, { timeoutMs: 60_000, ...options });
  }

  /** crictl's output, or an error with what it said. */
  async crictlOk(args: string[], options: RunCommandOptions = {}): Promise<string> {
    const result = await this.crictl(args, options);
    if (result.code !== 0)
      throw new StackError(
        `crictl ${args.join(' ')} exited ${result.code}:\n${result.stdout}${result.stderr}`,
      );
    return result.stdout;
  }

  /** crictl's JSON output (`inspect`, `inspectp`, `info`, `images -o json`, ...). */
  async crictlJson<T = unknown>(args: string[]): Promise<T> {
    return JSON.parse(await this.crictlOk(args)) as T;
  }

  /**
   * A pod sandbox in the node's network namespace (runp with the handler), then its container (create,
   * start), from the configs a kubelet would send (kept in `pods/<ns>_<name>_<uid>/`). The sandbox gets the
   * metadata given, so containerd's annotations in the containers' bundles name that pod.
   */
  async runPod(spec: PodSpec): Promise<RunningPod> {
    const problem = podSpecProblem(spec);
    if (problem) throw new StackError(`run-pod: ${problem}`);
    if (!this.containerd.running() || !(await this.criReady()))
      throw new StackError(`the stack in ${this.dir} is not up`);
    const dir = join(this.podsDir, `${spec.namespace}_${spec.name}_${spec.uid}`);
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const sandboxFile = join(dir, 'sandbox.json');
    const containerFile = join(dir, 'container.json');
    writeFileSync(
      sandboxFile,
      JSON.stringify(sandboxConfig(spec, join(dir, 'logs'), this.cgroupRoot), null, 2),
    );
    writeFileSync(containerFile, JSON.stringify(containerConfig(spec), null, 2));
    const handler = spec.runtimeHandler ?? AUDITED_HANDLER;
    const podId = (await this.crictlOk(['runp', '--runtime', handler, sandboxFile])).trim();
    try {
      const containerId = (await this.crictlOk(['create', podId, containerFile, sandboxFile])).trim();
      await this.crictlOk(['start', containerId]);
      return { podId, containerId };
    } catch (error) {
      await this.crictl(['stopp', podId]);
      await this.crictl(['rmp', '--force', podId]);
      throw new StackError(
        `could not create or start the container in pod ${podId} (see ${this.containerdLog})`,
        {
          cause: error,
        },
      );
    }
  }

  /** `crictl stopp` and `rmp`: the pod, its containers and their tasks are gone afterwards. */
  async removePod(podId: string): Promise<void> {
    if (!/^[0-9a-f]+$/.test(podId)) throw new StackError(`rm-pod: expected a pod sandbox id, got '${podId}'`);
    await this.crictlOk(['stopp', podId]);
    await this.crictlOk(['rmp', podId]);
  }

  /** A task's bundle directory, as runc gets it with --bundle (while the task exists). */
  bundleDir(id: string): string {
    return join(this.taskStateDir, id);
  }

  /** A task's config.json (the OCI spec containerd wrote, CRI annotations included). */
  bundleConfig(id: string): BundleConfig {
    return JSON.parse(readFileSync(join(this.bundleDir(id), 'config.json'), 'utf8')) as BundleConfig;
  }

  /** Every hand-off in the spool, in creation order, validated by the agent's schema (throws if one is bad). */
  handoffs(): Handoff[] {
    let names: string[];
    try {
      names = readdirSync(this.handoffDir);
    } catch {
      return [];
    }
    return names
      .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
      .sort()
      .map((name) => {
        const parsed = parseHandoff(readFileSync(join(this.handoffDir, name), 'utf8'));
        if (!parsed.ok) throw new StackError(`hand-off ${name} is ${parsed.reason}: ${parsed.detail}`);
        return parsed.handoff;
      });
  }

  /** The host pid of a container's init (`crictl inspect`) or, with `sandbox`, of a pod's pause. */
  async pid(id: string, sandbox = false): Promise<number> {
    const inspected = await this.crictlJson<{ info?: { pid?: number } }>([
      sandbox ? 'inspectp' : 'inspect',
      id,
    ]);
    const pid = inspected.info?.pid;
    if (!pid) throw new StackError(`crictl ${sandbox ? 'inspectp' : 'inspect'} ${id} gives no pid`);
    return pid;
  }

  /**
   * `crictl exec -it <container> bash -i` on a pseudo-terminal of its own (what `kubectl exec -it` does
   * through the kubelet), once bash shows its prompt. Type lines with terminal.type('...\n').
   */
  async openShell(containerId: string, timeoutMs = 30_000): Promise<Terminal> {
    const terminal = Terminal.open(this.crictlCommand(['exec', '-it', containerId, 'bash', '-i']));
    try {
      await terminal.waitForOutput(BASH_PROMPT, timeoutMs);
    } catch (error) {
      terminal.kill();
      throw error;
    }
    return terminal;
  }

  /** Pids of this stack's runc shims (`containerd-shim-runc-v2 ... -address <socket>`). */
  shimPids(): number[] {
    return this.containerd.shimPids();
  }

  /**
   * Pods, containerd, its shims, mounts, cgroups and the directory. Idempotent: nothing to do when the
   * directory is gone. Throws if the directory is not a stack's.
   */
  async down(): Promise<void> {
    if (!existsSync(this.dir)) {
      this.log(`Stack in ${this.dir} is not running (nothing to do)`);
      return;
    }
    if (!existsSync(this.marker))
      throw new StackError(`not touching ${this.dir}: no stack was brought up there`);
    const unlock = await lockDir(this.dir);
    try {
      if (!this.containerd.running()) this.log(`containerd of the stack in ${this.dir} is not running`);
      await this.teardown();
    } finally {
      unlock();
    }
    this.log(`Stack in ${this.dir} is down; removed ${this.dir}`);
  }

  /**
   * Pods first (through the CRI, so containerd stops and deletes everything itself), then containerd and
   * whatever of it is left (Containerd.stop), then the rest of the directory.
   */
  private async teardown(): Promise<void> {
    if (this.containerd.running() && existsSync(CRICTL) && existsSync(this.crictlConfig)) {
      const pods = await this.crictl(['pods', '-q']);
      for (const pod of pods.code === 0 ? pods.stdout.split('\n').filter(Boolean) : []) {
        await this.crictl(['stopp', pod]);
        await this.crictl(['rmp', '--force', pod]);
      }
    }
    if (this.containerd.running()) this.log(`Stopping containerd (pid ${this.containerd.pid})`);
    await this.containerd.stop();
    unmountUnder(this.dir);
    removeEmptyCgroups(this.cgroupRoot);
    if (!this.handoffDir.startsWith(`${this.dir}/`))
      this.log(`Leaving the spool ${this.handoffDir} (outside ${this.dir}) in place`);
    if (existsSync(this.marker)) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The tools up() needs; crictl and the runc wrapper are built when missing. */
function ensureTools(log: (line: string) => void): void {
  if (process.getuid?.() !== 0) throw new StackError('the stack needs root (containerd, runc, mounts)');
  for (const tool of ['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc', 'gcc', 'ldd', 'tar']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0)
      throw new StackError(`'${tool}' is missing (make setup installs what the project needs)`);
  }
  if (!existsSync(CRICTL)) {
    log('crictl is not built yet: building it (e2e/cluster/build.sh crictl)');
    const built = spawnSync('bash', [join(REPO_ROOT, 'e2e', 'cluster', 'build.sh'), 'crictl'], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (built.status !== 0) throw new StackError('e2e/cluster/build.sh crictl failed');
  }
  const make = spawnSync('make', ['-s', '-C', join(REPO_ROOT, 'runc-wrapper'), 'container-auditor-runc'], {
    encoding: 'utf8',
  });
  if (make.status !== 0)
    throw new StackError(
      `cannot build the runc wrapper (make -C runc-wrapper):\n${make.stdout}${make.stderr}`,
    );
}

/** /pause, statically linked: the whole of the sandbox image. */
function compile(source: string, output: string): void {
  const gcc = spawnSync(
    'gcc',
    [
      '-std=c11',
      '-D_GNU_SOURCE',
      '-O2',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-static',
      '-s',
      '-o',
      output,
      source,
    ],
    { encoding: 'utf8' },
  );
  if (gcc.status !== 0)
    throw new StackError(
      `cannot build the pause program (gcc -static needs Debian's gcc and libc6-dev):\n${gcc.stderr}`,
    );
}

/**
 * One up or down at a time per directory: `<dir>/.lock` made exclusively, holding the holder's pid; a lock
 * whose holder is gone is taken over. Returns the release (harmless once the directory is gone).
 */
async function lockDir(dir: string): Promise<() => void> {
  const lock = join(dir, '.lock');
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      writeFileSync(lock, `${process.pid}\n`);
      return () => rmSync(lock, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: number;
    try {
      holder = Number(readFileSync(lock, 'utf8').trim());
    } catch {
      continue; // released meanwhile
    }
    // An empty file: its holder is between creating and writing it; a dead holder's lock is stale.
    if (holder > 0 && !isAlive(holder)) rmSync(lock, { force: true });
    await sleep(200);
  }
}

/** For up() in a directory that stayed empty because it failed early (not a stack's yet). */
function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // gone, or not empty: not ours to remove
  }
}
