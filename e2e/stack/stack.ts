/**
 * The node stack (stack.sh) from TypeScript, for tests: a containerd with its CRI plugin on,
 * driven through crictl as a kubelet would drive it, whose `container-auditor` runtime handler runs the runc
 * wrapper. stack.sh does the work (images, config, containerd, pods, cleanup); this module starts it in a
 * directory of its own, runs pods, reads what the wrapper handed off and opens interactive shells.
 *
 *   const stack = await Stack.up();                        // a new /tmp/ca-stack-* directory
 *   const pod = await stack.runPod({ name: 'web', namespace: 'default', uid: pod.metadata.uid });
 *   const shell = await stack.openShell(pod.containerId);  // crictl exec -it <id> bash -i, on a pty
 *   ...
 *   await stack.down();                                    // pods, containerd, shims, mounts, the directory
 *
 * Requires root, Debian's containerd 1.6, runc, gcc, busybox-static, and crictl (built by
 * e2e/cluster/build.sh; stack.sh builds it when missing).
 */
import { mkdtempSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Handoff, parseHandoff } from '../../api/handoff/v1.js';
import { type CommandResult, type RunCommandOptions, runCommand } from '../support/command.js';
import { shimPidsOf } from '../support/containerd.js';
import { REPO_ROOT } from '../support/paths.js';
import { Terminal } from '../support/terminal.js';

export const STACK_SCRIPT = join(REPO_ROOT, 'e2e', 'stack', 'stack.sh');
export const CRICTL = join(REPO_ROOT, '.cache', 'bin', 'crictl');
/** containerd's CRI sandbox_image in the stack's config: built from e2e/stack/pause.c. */
export const PAUSE_IMAGE = 'localhost/container-auditor/pause:1';
/** The host's bash and its libraries plus busybox's applets; runs `sleep infinity`. */
export const DEMO_IMAGE = 'localhost/container-auditor/demo-shell:1';
/** The runtime handler (a RuntimeClass's `handler`) whose runtime binary is the runc wrapper. */
export const AUDITED_HANDLER = 'container-auditor';
/** The handler of pods without a RuntimeClass: the host's runc. */
export const DEFAULT_HANDLER = 'runc';
/** containerd's namespace for everything the CRI does. */
export const CRI_NAMESPACE = 'k8s.io';

/** bash's default prompt as root with no rc file (`bash-5.2# `). */
export const BASH_PROMPT = /bash-[\d.]+# /;

export interface StackOptions {
  /** Everything of the stack; down() deletes it. Default: a new directory /tmp/ca-stack-XXXXXX. */
  dir?: string;
  /** The wrapper's hand-off spool; default `<dir>/handoff` (created by up). */
  handoffDir?: string;
  /** How long up waits for containerd's CRI, in seconds (stack.sh's default: 60). */
  readyTimeoutSeconds?: number;
  /** How long `stack.sh up` may take in all; it builds crictl when it is missing (minutes). */
  upTimeoutMs?: number;
}

/** A pod as the kubelet would ask for it: metadata from a Pod object, one container. */
export interface PodSpec {
  name: string;
  namespace: string;
  uid: string;
  /** The container's name; default `main`. */
  container?: string;
  /** The runtime handler (RuntimeClass handler); default AUDITED_HANDLER. DEFAULT_HANDLER for plain runc. */
  runtimeHandler?: string;
  /** Default DEMO_IMAGE. */
  image?: string;
  /** The container's command; default the image's (`sleep infinity` for DEMO_IMAGE). */
  command?: string[];
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

export class Stack {
  /** containerd's gRPC socket (the CRI endpoint is the same socket). */
  readonly socket: string;
  readonly containerdDir: string;
  readonly containerdLog: string;
  readonly crictlConfig: string;
  /** The wrapper's own log (its problems; absent when all is well). */
  readonly wrapperLog: string;
  /** Where the runc shim keeps each task's bundle (`<this>/<id>/config.json`). */
  readonly taskStateDir: string;
  /** runc's --root for the CRI's containers. */
  readonly runcRoot: string;
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly handoffDir: string,
  ) {
    this.containerdDir = join(dir, 'containerd');
    this.socket = join(this.containerdDir, 'containerd.sock');
    this.containerdLog = join(this.containerdDir, 'containerd.log');
    this.crictlConfig = join(dir, 'crictl.yaml');
    this.wrapperLog = join(dir, 'wrapper.log');
    this.taskStateDir = join(this.containerdDir, 'state', 'io.containerd.runtime.v2.task', CRI_NAMESPACE);
    this.runcRoot = join(this.containerdDir, 'runc', CRI_NAMESPACE);
  }

  /** Runs `stack.sh up` in a directory of its own; on failure takes everything down again and throws. */
  static async up(options: StackOptions = {}): Promise<Stack> {
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'ca-stack-'));
    const stack = new Stack(dir, options.handoffDir ?? join(dir, 'handoff'));
    const env: NodeJS.ProcessEnv = {};
    if (options.readyTimeoutSeconds !== undefined)
      env.STACK_READY_TIMEOUT = String(options.readyTimeoutSeconds);
    const up = await stack.script(['up'], { timeoutMs: options.upTimeoutMs ?? 20 * 60_000, env });
    if (up.code !== 0) {
      await stack.down();
      try {
        rmdirSync(dir); // still there, empty, if up failed before it made it a stack's
      } catch {
        // gone, or not empty: not ours to remove
      }
      throw new StackError(`stack.sh up exited ${up.code}:\n${up.stdout}${up.stderr}`);
    }
    return stack;
  }

  /** stack.sh's environment: this stack's directory and spool. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { ...process.env, STACK_DIR: this.dir, STACK_HANDOFF_DIR: this.handoffDir, ...extra };
  }

  /** `stack.sh <args>` for this stack. */
  script(args: string[], options: Omit<RunCommandOptions, 'env'> & { env?: NodeJS.ProcessEnv } = {}) {
    return runCommand('bash', [STACK_SCRIPT, ...args], {
      timeoutMs: 120_000,
      ...options,
      env: this.env(options.env),
    });
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
   * start): `stack.sh run-pod`. The sandbox gets the metadata given, so containerd's annotations in the
   * containers' bundles name that pod.
   */
  async runPod(spec: PodSpec): Promise<RunningPod> {
    const args = ['run-pod', '--name', spec.name, '--namespace', spec.namespace, '--uid', spec.uid];
    if (spec.container !== undefined) args.push('--container', spec.container);
    args.push('--runtime', spec.runtimeHandler ?? AUDITED_HANDLER);
    if (spec.image !== undefined) args.push('--image', spec.image);
    if (spec.command) args.push('--', ...spec.command);
    const result = await this.script(args);
    const podId = /^POD_ID=([0-9a-f]+)$/m.exec(result.stdout)?.[1];
    const containerId = /^CONTAINER_ID=([0-9a-f]+)$/m.exec(result.stdout)?.[1];
    if (result.code !== 0 || !podId || !containerId)
      throw new StackError(`stack.sh run-pod exited ${result.code}:\n${result.stdout}${result.stderr}`);
    return { podId, containerId };
  }

  /** `crictl stopp` and `rmp`: the pod, its containers and their tasks are gone afterwards. */
  async removePod(podId: string): Promise<void> {
    const result = await this.script(['rm-pod', podId]);
    if (result.code !== 0)
      throw new StackError(`stack.sh rm-pod exited ${result.code}:\n${result.stdout}${result.stderr}`);
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
    return shimPidsOf(this.socket);
  }

  /** `stack.sh down`: pods, containerd, its shims, mounts and the directory. Idempotent; never throws. */
  async down(): Promise<CommandResult> {
    if (this.stopped) return { code: 0, stdout: '', stderr: '' };
    const result = await this.script(['down'], { timeoutMs: 180_000 });
    if (result.code === 0) this.stopped = true;
    return result;
  }
}
