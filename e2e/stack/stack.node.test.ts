/**
 * The node stack (stack.ts, and the harness's command line over it, e2e/harness/cli.ts): a containerd with its CRI plugin on, driven through crictl the way a
 * kubelet drives it, with the runc wrapper as the runtime binary of the `container-auditor` handler.
 *
 * Proves, in order, on one stack in a directory of its own:
 * - containerd's CRI is up with both handlers, our pause image as sandbox_image, and both images imported
 *   (the pause image's and the demo image's configs as built);
 * - the pause program exits 0 on SIGTERM and SIGINT, and reaps the orphans it inherits as a pid namespace's
 *   init;
 * - a pod with handler `container-auditor` and a Pod object's metadata runs in the node's network namespace,
 *   its container runs `sleep infinity` from the demo image with PATH set, the wrapper handed off both the
 *   sandbox and the container (and their bundles carry the CRI annotations naming the pod), and lines typed
 *   in `crictl exec -it <container> bash -i` reach bash, which the wrapper hands off as an exec;
 * - a pod with handler `runc`, run through the command line (`stack run-pod`), does not go through the wrapper;
 * - the command line finds the stack from its directory alone (`stack status`, `env`, `rm-pod`);
 * - removing the pods and taking the stack down leaves no process, shim, socket, mount, cgroup or directory.
 *
 * Node tier: root, Debian's containerd 1.6, runc, gcc, busybox-static; crictl (built by
 * e2e/cluster/build.sh, or by Stack.up when missing: minutes, hence beforeAll's time-out).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Handoff } from '../../api/handoff/v1.js';
import { runHarness } from '../harness/cli.js';
import { childrenOf, isAlive, mountsUnder } from '../support/containerd.js';
import {
  AUDITED_HANDLER,
  DEFAULT_HANDLER,
  DEMO_IMAGE,
  PAUSE_IMAGE,
  Stack,
  type RunningPod,
} from './stack.js';
import { until as waitFor } from '../support/wait.js';

/** Per test: the node project's testTimeout in jest.config.js does not reach the tests (Jest takes it from
 * the global configuration only), so they would get Jest's default of 5 s. */
const TEST_TIMEOUT = 120_000;
const IMAGE_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What a Pod object would hold: the test's pods are named after it. */
const auditedPod = { name: 'audited-shell', namespace: 'stack-test', uid: randomUUID() };
const plainPod = { name: 'plain-shell', namespace: 'stack-test', uid: randomUUID() };

const cniDirExisted = existsSync('/etc/cni/net.d');
let stack: Stack | undefined;
let audited: RunningPod | undefined;
let plain: RunningPod | undefined;

function theStack(): Stack {
  if (!stack) throw new Error('the stack did not come up (see beforeAll)');
  return stack;
}

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').slice(0, -1);
}

/** Whether a process has installed a handler for a signal (SigCgt in /proc/<pid>/status). */
function catches(pid: number, signal: number): boolean {
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return caught !== undefined && (BigInt(`0x${caught}`) & (1n << BigInt(signal - 1))) !== 0n;
}

/** The process's state letter (R, S, Z, ...), or undefined once it is gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** The harness's command line (`node dist/e2e/harness/main.js ...`) against this test's stack, in-process. */
async function harness(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runHarness(argv, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: { STACK_DIR: theStack().dir },
  });
  return { code, out, err };
}

function handoffsFor(id: string, verb?: Handoff['verb']): Handoff[] {
  return theStack()
    .handoffs()
    .filter((h) => h.id === id && (verb === undefined || h.verb === verb));
}

/** Cgroup directories named `name` at the top of any mounted hierarchy. */
function topCgroups(name: string): string[] {
  return readdirSync('/sys/fs/cgroup')
    .map((hierarchy) => join('/sys/fs/cgroup', hierarchy, name))
    .filter((dir) => existsSync(dir));
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (containerd, runc, mounts)');
  stack = await Stack.up();
}, 20 * 60_000);

afterAll(async () => {
  await stack?.down();
}, 180_000);

test(
  "containerd's CRI runs both runtime handlers, with our pause image as sandbox image and both images imported",
  async () => {
    const s = theStack();
    const info = await s.crictlJson<{
      status: { conditions: { type: string; status: boolean }[] };
      config: {
        sandboxImage: string;
        containerd: { runtimes: Record<string, { runtimeType: string; options: Record<string, unknown> }> };
        cni: { confDir: string };
      };
    }>(['info']);
    expect(info.status.conditions).toContainEqual(
      expect.objectContaining({ type: 'RuntimeReady', status: true }),
    );
    expect(info.config.sandboxImage).toBe(PAUSE_IMAGE);
    const runtimes = info.config.containerd.runtimes;
    expect(runtimes[AUDITED_HANDLER]).toMatchObject({
      runtimeType: 'io.containerd.runc.v2',
      options: { BinaryName: join(s.dir, 'runtime', 'container-auditor-runc') },
    });
    expect(runtimes[DEFAULT_HANDLER]?.runtimeType).toBe('io.containerd.runc.v2');
    // No CNI: a private, empty configuration directory, and the host's is left alone.
    expect(info.config.cni.confDir.startsWith(`${s.dir}/`)).toBe(true);
    expect(readdirSync(info.config.cni.confDir)).toEqual([]);
    expect(existsSync('/etc/cni/net.d')).toBe(cniDirExisted);

    const images = await s.crictlJson<{ images: { repoTags: string[] }[] }>(['images', '-o', 'json']);
    expect(images.images.flatMap((i) => i.repoTags).sort()).toEqual([DEMO_IMAGE, PAUSE_IMAGE].sort());
    type ImageInfo = {
      info: { imageSpec: { config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[] } } };
    };
    const pause = (await s.crictlJson<ImageInfo>(['inspecti', PAUSE_IMAGE])).info.imageSpec.config;
    expect(pause.Entrypoint).toEqual(['/pause']);
    const demo = (await s.crictlJson<ImageInfo>(['inspecti', DEMO_IMAGE])).info.imageSpec.config;
    expect(demo.Cmd).toEqual(['/bin/sleep', 'infinity']);
    expect(demo.Env).toEqual([IMAGE_PATH]);
  },
  TEST_TIMEOUT,
);

test(
  'the pause program is static, exits 0 on SIGTERM and SIGINT, and reaps orphans as a pid namespace init',
  async () => {
    const pause = join(theStack().dir, 'images', 'pause-rootfs', 'pause'); // the file in the image
    const ldd = spawnSync('ldd', [pause], { encoding: 'utf8' });
    expect(ldd.stdout + ldd.stderr).toMatch(/not a dynamic executable/);
    expect(spawnSync(pause, ['-v'], { encoding: 'utf8' }).stdout).toBe('container-auditor pause 1\n');

    for (const [signal, number] of [
      ['SIGTERM', 15],
      ['SIGINT', 2],
    ] as const) {
      const child = spawn(pause, [], { stdio: 'ignore' });
      const exited = new Promise<[number | null, string | null]>((resolve) =>
        child.on('exit', (code, sig) => resolve([code, sig])),
      );
      await waitFor(`pause to handle ${signal}`, () => catches(child.pid!, number));
      child.kill(signal);
      expect(await exited).toEqual([0, null]);
    }

    // pause as pid 1 of a new pid namespace; a shell entered into that namespace starts `sleep` in the
    // background and exits: the orphan goes to pause, which must reap it once it ends.
    const ns = spawn('unshare', ['--pid', '--fork', '--kill-child', pause], { stdio: 'ignore' });
    try {
      let pausePid = 0;
      await waitFor('pause under unshare', () => {
        pausePid = childrenOf(ns.pid!)[0] ?? 0;
        return pausePid > 0 && cmdline(pausePid)[0] === pause && catches(pausePid, 17);
      });
      // No pipes: spawnSync would wait for the orphan, which keeps them open, to end.
      const entered = spawnSync(
        'nsenter',
        ['--target', String(pausePid), '--pid', '--', 'sh', '-c', 'sleep 1 & exit 0'],
        {
          stdio: 'ignore',
        },
      );
      expect(entered.status).toBe(0);
      const orphans = childrenOf(pausePid);
      expect(orphans.map((pid) => cmdline(pid))).toEqual([['sleep', '1']]);
      await waitFor('the orphan to end and be reaped', () => processState(orphans[0]!) === undefined, 5_000);
      expect(childrenOf(pausePid)).toEqual([]);
    } finally {
      ns.kill('SIGKILL');
    }
  },
  TEST_TIMEOUT,
);

test(
  'a pod with the container-auditor handler: host network, the demo image, hand-offs with the CRI annotations, bash through crictl exec -it',
  async () => {
    const s = theStack();
    audited = await s.runPod({ ...auditedPod, runtimeHandler: AUDITED_HANDLER });
    const { podId, containerId } = audited;

    // The sandbox: the pod's metadata, our handler, the node's network namespace, /pause as its process.
    const sandbox = await s.crictlJson<{
      status: {
        state: string;
        metadata: Record<string, unknown>;
        runtimeHandler: string;
        linux: { namespaces: { options: { network: string } } };
      };
    }>(['inspectp', podId]);
    expect(sandbox.status.state).toBe('SANDBOX_READY');
    expect(sandbox.status.metadata).toMatchObject(auditedPod);
    expect(sandbox.status.runtimeHandler).toBe(AUDITED_HANDLER);
    expect(sandbox.status.linux.namespaces.options.network).toBe('NODE');
    const pausePid = await s.pid(podId, true);
    expect(cmdline(pausePid)).toEqual(['/pause']);
    expect(readlinkSync(`/proc/${pausePid}/ns/net`)).toBe(readlinkSync('/proc/self/ns/net'));

    // The container: the demo image's command and PATH.
    const container = await s.crictlJson<{ status: { state: string; image: { image: string } } }>([
      'inspect',
      containerId,
    ]);
    expect(container.status.state).toBe('CONTAINER_RUNNING');
    const pid = await s.pid(containerId);
    expect(cmdline(pid)).toEqual(['/bin/sleep', 'infinity']);
    expect(environ(pid)).toContain(IMAGE_PATH);
    const which = await s.crictlOk(['exec', containerId, 'bash', '-c', 'command -v ls sleep; echo "$BASH"']);
    expect(which).toBe('/bin/ls\n/bin/sleep\n/bin/bash\n');

    // The wrapper handed off both, after runc create, with the bundle whose config.json names the pod.
    for (const [id, initPid] of [
      [podId, pausePid],
      [containerId, pid],
    ] as const) {
      expect(handoffsFor(id, 'create')).toEqual([
        expect.objectContaining({ root: s.runcRoot, bundle: s.bundleDir(id), pid: initPid, exitCode: 0 }),
      ]);
    }
    const podAnnotations = {
      'io.kubernetes.cri.sandbox-namespace': auditedPod.namespace,
      'io.kubernetes.cri.sandbox-name': auditedPod.name,
      'io.kubernetes.cri.sandbox-uid': auditedPod.uid,
    };
    expect(s.bundleConfig(containerId).annotations).toMatchObject({
      ...podAnnotations,
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.container-name': 'main',
      'io.kubernetes.cri.sandbox-id': podId,
      'io.kubernetes.cri.image-name': DEMO_IMAGE,
    });
    expect(s.bundleConfig(podId).annotations).toMatchObject({
      ...podAnnotations,
      'io.kubernetes.cri.container-type': 'sandbox',
    });

    // A person at a terminal: lines typed into `crictl exec -it ... bash -i` reach bash.
    const before = handoffsFor(containerId, 'exec').length;
    const shell = await s.openShell(containerId);
    try {
      shell.type('echo typed-$((6 * 7)) in $(pwd)\n');
      await shell.waitForOutput(/typed-42 in \/root/);
      // crictl says how the command ended, and exits 1 for anything but 0.
      shell.type('exit 7\n');
      expect((await shell.waitForExit()).code).toBe(1);
      expect(shell.output).toMatch(/command terminated with exit code 7/);
    } finally {
      shell.kill();
    }
    const execs = handoffsFor(containerId, 'exec').slice(before);
    expect(execs.map((h) => h.process)).toContainEqual(
      expect.objectContaining({ args: ['bash', '-i'], terminal: true }),
    );
    expect(existsSync(s.wrapperLog) ? readFileSync(s.wrapperLog, 'utf8') : '').toBe('');
  },
  TEST_TIMEOUT,
);

test(
  'a pod with the default handler (runc), run through the command line, does not go through the wrapper',
  async () => {
    const s = theStack();
    const run = await harness(
      'stack',
      'run-pod',
      ...['--name', plainPod.name, '--namespace', plainPod.namespace, '--uid', plainPod.uid],
      ...['--runtime', DEFAULT_HANDLER],
    );
    expect(run).toMatchObject({ code: 0, err: [] });
    const podId = /^POD_ID=([0-9a-f]+)$/.exec(run.out[0] ?? '')?.[1];
    const containerId = /^CONTAINER_ID=([0-9a-f]+)$/.exec(run.out[1] ?? '')?.[1];
    if (!podId || !containerId) throw new Error(`stack run-pod printed ${run.out.join('\n')}`);
    plain = { podId, containerId };
    const sandbox = await s.crictlJson<{ status: { runtimeHandler: string } }>(['inspectp', plain.podId]);
    expect(sandbox.status.runtimeHandler).toBe(DEFAULT_HANDLER);
    expect(await s.crictlOk(['exec', plain.containerId, 'bash', '-c', 'echo plain'])).toBe('plain\n');
    expect(handoffsFor(plain.podId)).toEqual([]);
    expect(handoffsFor(plain.containerId)).toEqual([]);
  },
  TEST_TIMEOUT,
);

test(
  'the command line finds the stack from its directory alone',
  async () => {
    const s = theStack();
    const status = await harness('stack', 'status');
    expect(status.code).toBe(0);
    expect(status.out).toEqual([
      `running: containerd pid ${s.containerdPid()}, CRI socket ${s.socket}, 2 pod(s)`,
    ]);
    const env = await harness('stack', 'env');
    expect(env.out).toContain(`export CRI_CONFIG_FILE='${s.crictlConfig}'`);
    expect(env.out).toContain(`export CONTAINER_RUNTIME_ENDPOINT='unix://${s.socket}'`);
    // The lines work in a shell: crictl finds the stack through them.
    const listed = spawnSync('bash', ['-c', `${env.out.join('\n')}\ncrictl pods -q | wc -l`], {
      encoding: 'utf8',
    });
    expect(listed.stdout.trim()).toBe('2');
    expect(
      await harness('stack', 'run-pod', '--name', 'Not_A_DNS_Name', '--namespace', 'x', '--uid', 'u'),
    ).toMatchObject({
      code: 1,
      err: ["harness: error: run-pod: name must be a DNS name, got 'Not_A_DNS_Name'"],
    });
    expect((await harness('stack', 'run-pod', '--name', 'x')).code).toBe(2);
  },
  TEST_TIMEOUT,
);

test(
  'removing the pods and taking the stack down leaves nothing behind',
  async () => {
    const s = theStack();
    if (!audited || !plain) throw new Error('the earlier tests did not start their pods');
    const pids = [
      await s.pid(audited.podId, true),
      await s.pid(audited.containerId),
      await s.pid(plain.podId, true),
      await s.pid(plain.containerId),
    ];
    const shims = s.shimPids();
    expect(shims).toHaveLength(2); // one per pod
    const shimSockets = [audited.podId, plain.podId].map((id) =>
      readFileSync(join(s.bundleDir(id), 'address'), 'utf8')
        .trim()
        .replace(/^unix:\/\//, ''),
    );
    for (const socket of shimSockets) expect(existsSync(socket)).toBe(true);
    const cgroupRoot = s.bundleConfig(audited.containerId).linux?.cgroupsPath?.split('/')[1];
    expect(cgroupRoot).toMatch(/^ca-stack-[0-9a-f]+$/);
    expect(topCgroups(cgroupRoot!).length).toBeGreaterThan(0);

    await s.removePod(audited.podId);
    // The wrapper saw the audited pod's containers go (runc delete; the shim may run it more than once).
    expect(handoffsFor(audited.containerId, 'delete').length).toBeGreaterThan(0);
    expect(handoffsFor(audited.podId, 'delete').length).toBeGreaterThan(0);
    expect(await harness('stack', 'rm-pod', plain.podId)).toMatchObject({
      code: 0,
      out: [`Removed pod ${plain.podId}`],
    });
    expect(await s.crictlOk(['pods', '-q'])).toBe('');
    for (const pid of pids) await waitFor(`pid ${pid} to be gone`, () => !isAlive(pid));

    expect(await harness('stack', 'down')).toMatchObject({ code: 0, err: [] });
    expect(existsSync(s.dir)).toBe(false);
    expect(mountsUnder(s.dir)).toEqual([]);
    expect(s.shimPids()).toEqual([]);
    expect(shims.filter(isAlive)).toEqual([]);
    for (const socket of shimSockets) expect(existsSync(socket)).toBe(false);
    expect(topCgroups(cgroupRoot!)).toEqual([]);
    await s.down(); // idempotent
    expect(await harness('stack', 'status')).toMatchObject({
      code: 1,
      out: [`not running (STACK_DIR=${s.dir})`],
    });
  },
  TEST_TIMEOUT,
);
