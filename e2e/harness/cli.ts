/**
 * The test harness's command line: what the Makefile, the demo and a developer at a shell run (tests use the
 * modules it calls directly). `main.ts` runs it; `node dist/e2e/harness/main.js help` prints the usage.
 */
import { spawnSync } from 'node:child_process';
import { buildImageArchive, buildShellImage } from '../support/image.js';
import { type PodSpec } from '../stack/cri-config.js';
import { DEFAULT_STACK_DIR, Stack } from '../stack/stack.js';

export const USAGE = `Usage: node dist/e2e/harness/main.js COMMAND...

  stack up       build what is missing (the runc wrapper, crictl, a static pause, the images), start a
                 containerd with its CRI plugin on in the background, import the images, and wait until
                 the CRI lists them. Does nothing if the stack is up.
  stack down     remove every pod, stop containerd and its shims, unmount and delete STACK_DIR. Idempotent.
  stack status   print whether the stack runs; exit 0 if it does, 1 if not.
  stack env      print export lines for CONTAINER_RUNTIME_ENDPOINT, IMAGE_SERVICE_ENDPOINT, CRI_CONFIG_FILE
                 and PATH (eval "$(node dist/e2e/harness/main.js stack env)"; then plain crictl works).
  stack crictl ARGS...
                 crictl against the stack's containerd.
  stack run-pod --name NAME --namespace NS --uid UID [--container NAME] [--runtime HANDLER]
                [--image REF] [-- COMMAND...]
                 a pod sandbox (host network) with one container; prints POD_ID=<id> and CONTAINER_ID=<id>.
                 The metadata should be a Pod object's (containerd copies it into the containers'
                 annotations). HANDLER: container-auditor (default: through the runc wrapper) or runc.
  stack rm-pod POD_ID
                 stop and remove a pod and its containers.
  image shell ARCHIVE REF
                 the shell image (the host's bash and busybox, sleep infinity) as an OCI archive.
  image archive ROOTFS ARCHIVE REF [ENTRYPOINT...]
                 an OCI archive of one layer, the directory ROOTFS (deterministic: same files, same digests).

Environment of stack (defaults in brackets):
  STACK_DIR            everything of the stack; down deletes it [<repo>/.cache/stack]
  STACK_HANDOFF_DIR    the wrapper's hand-off spool [$STACK_DIR/handoff]; remembered by up
  STACK_READY_TIMEOUT  seconds up waits for containerd's CRI [60]
`;

export interface HarnessIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

export class UsageError extends Error {}

/** run-pod's arguments as a pod spec; throws a UsageError for anything else. */
export function parseRunPodArgs(args: string[]): PodSpec {
  const flags: Record<string, string> = {};
  let command: string[] | undefined;
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!;
    if (flag === '--') {
      command = args.slice(i + 1);
      break;
    }
    if (!['--name', '--namespace', '--uid', '--container', '--runtime', '--image'].includes(flag))
      throw new UsageError(`run-pod: unknown argument '${flag}'`);
    const value = args[i + 1];
    if (value === undefined) throw new UsageError(`run-pod: ${flag} needs a value`);
    flags[flag.slice(2)] = value;
  }
  for (const required of ['name', 'namespace', 'uid'])
    if (flags[required] === undefined) throw new UsageError(`run-pod: --${required} is required`);
  return {
    name: flags.name!,
    namespace: flags.namespace!,
    uid: flags.uid!,
    ...(flags.container !== undefined ? { container: flags.container } : {}),
    ...(flags.runtime !== undefined ? { runtimeHandler: flags.runtime } : {}),
    ...(flags.image !== undefined ? { image: flags.image } : {}),
    ...(command?.length ? { command } : {}),
  };
}

function readyTimeout(env: NodeJS.ProcessEnv): number | undefined {
  const value = env.STACK_READY_TIMEOUT;
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`STACK_READY_TIMEOUT must be a number, got '${value}'`);
  return Number(value);
}

async function stackCommand(command: string | undefined, args: string[], io: HarnessIo): Promise<number> {
  const dir = io.env.STACK_DIR || DEFAULT_STACK_DIR;
  const handoffDir = io.env.STACK_HANDOFF_DIR || undefined;
  const stack = Stack.attach(dir, { ...(handoffDir ? { handoffDir } : {}), log: io.out });
  const notUp = `the stack in ${stack.dir} is not up; start it with: stack up`;
  switch (command) {
    case 'up': {
      const timeout = readyTimeout(io.env);
      await Stack.up({
        dir: stack.dir,
        handoffDir: stack.handoffDir,
        log: io.out,
        ...(timeout !== undefined ? { readyTimeoutSeconds: timeout } : {}),
      });
      io.out(`  crictl: eval "$(node dist/e2e/harness/main.js stack env)"; crictl pods`);
      io.out(
        `  hand-offs of the container-auditor handler: ${stack.handoffDir} (wrapper log: ${stack.wrapperLog})`,
      );
      io.out('  stop it (and delete its data) with: node dist/e2e/harness/main.js stack down');
      return 0;
    }
    case 'down':
      await stack.down();
      return 0;
    case 'status': {
      const pid = stack.containerdPid();
      if (pid !== undefined && (await stack.criReady())) {
        const pods = (await stack.crictlOk(['pods', '-q'])).split('\n').filter(Boolean).length;
        io.out(`running: containerd pid ${pid}, CRI socket ${stack.socket}, ${pods} pod(s)`);
        return 0;
      }
      io.out(
        pid !== undefined
          ? `not running: containerd (pid ${pid}) does not answer on the CRI; see ${stack.containerdLog}`
          : `not running (STACK_DIR=${stack.dir})`,
      );
      return 1;
    }
    case 'env':
      if (stack.containerdPid() === undefined) throw new UsageError(notUp);
      for (const line of stack.envLines()) io.out(line);
      return 0;
    case 'crictl': {
      if (stack.containerdPid() === undefined) throw new UsageError(notUp);
      const [crictl, ...rest] = stack.crictlCommand(args);
      return spawnSync(crictl!, rest, { stdio: 'inherit' }).status ?? 1;
    }
    case 'run-pod': {
      const pod = await stack.runPod(parseRunPodArgs(args));
      io.out(`POD_ID=${pod.podId}`);
      io.out(`CONTAINER_ID=${pod.containerId}`);
      return 0;
    }
    case 'rm-pod':
      if (args.length !== 1) throw new UsageError('rm-pod: expected one pod sandbox id');
      if (stack.containerdPid() === undefined) throw new UsageError(notUp);
      await stack.removePod(args[0]!);
      io.out(`Removed pod ${args[0]}`);
      return 0;
    default:
      throw new UsageError(`unknown stack command '${command ?? ''}'`);
  }
}

/** Runs one command line; returns the exit code (2 for a usage error, 1 for a failure). */
export async function runHarness(argv: string[], io: HarnessIo): Promise<number> {
  const [group, command, ...args] = argv;
  try {
    if (group === 'stack') return await stackCommand(command, args, io);
    if (group === 'image' && command === 'shell' && args.length === 2) {
      const [archive, ref] = args as [string, string];
      buildShellImage(`${archive}.rootfs`, archive, ref);
      return 0;
    }
    if (group === 'image' && command === 'archive' && args.length >= 3) {
      const [rootfs, archive, ref, ...entrypoint] = args as [string, string, string, ...string[]];
      buildImageArchive(rootfs, archive, { ref, cmd: [], ...(entrypoint.length ? { entrypoint } : {}) });
      return 0;
    }
    if (group === 'help' || group === '--help') {
      io.out(USAGE);
      return 0;
    }
    throw new UsageError(group === undefined ? 'no command' : `unknown command '${argv.join(' ')}'`);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`harness: ${error.message}`);
      io.err(USAGE);
      return 2;
    }
    io.err(`harness: error: ${(error as Error).message}`);
    return 1;
  }
}
