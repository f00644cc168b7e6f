/**
 * The fixtures the capture engine's end-to-end tests stand on, proved against the real things: a private
 * containerd, runc, bpftrace and the agent's own target resolution and capture.
 *
 * - An OCI image built here (no registry) and unpacked by containerd's overlayfs snapshotter: the container's
 *   root is an overlay mount at <bundle>/rootfs, and a uretprobe on readline of the bash seen through that
 *   mount fires when a shell in the container reads a line. So does one on the same file in the snapshot's
 *   lower directory: the kernel binds a uprobe to the file under the overlay (d_real_inode), one inode for
 *   every container of the image.
 * - A shell that takes readline from libreadline.so (rlshell.c) resolves to the library and is captured.
 * - A static, stripped bash (Debian's bash-static) resolves to a coverage gap with the reason.
 *
 * Node tier: root, containerd, runc, bpftrace, busybox-static, bash-static, gcc and libreadline-dev.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ReadlineCapture } from '../../agent/capture/readline/capture.js';
import type { CapturedLine } from '../../agent/capture/readline/parse.js';
import { type ReadlineTarget, resolveReadlineTargets } from '../../agent/targets/resolve.js';
import { type CommandResult, Containerd, unmountUnder } from './containerd.js';
import {
  DEFAULT_IMAGE_PATH,
  OCI_LAYER_TAR_GZIP,
  REF_NAME_ANNOTATION,
  type ImageArchive,
  buildImageArchive,
  hostPlatform,
  importImage,
  readArchiveBlob,
  readArchiveFile,
  removeImage,
} from './image.js';
import { buildRootfs } from './rootfs.js';
import { buildLibreadlineRootfs, buildRlshell, buildStaticBashRootfs } from './shells.js';
import { CTRL_D, Terminal } from './terminal.js';
import { until as waitFor } from './wait.js';

const NAMESPACE = `ca-fixtures-${process.pid}`;
/** What bash (as root, without a profile) and rlshell show when they wait for a line. */
const BASH_PROMPT = /bash-[\d.]+# /;
const RLSHELL_PROMPT = /\$ /;

let scratch: string;
let containerd: Containerd;
let capture: ReadlineCapture;
const captured: CapturedLine[] = [];
const terminals: Terminal[] = [];
const images: string[] = [];

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (containerd, runc, bpftrace)');
  scratch = mkdtempSync(join(tmpdir(), 'ca-fixtures-test-'));
  containerd = await Containerd.start();
  capture = new ReadlineCapture({ maxCommandBytes: 4096 });
  capture.on('line', (line) => captured.push(line));
}, 60_000);

afterAll(async () => {
  for (const terminal of terminals) terminal.kill();
  await capture?.stop();
  if (containerd) {
    await containerd.removeAll(NAMESPACE);
    for (const ref of images) await removeImage(containerd, NAMESPACE, ref).catch(() => undefined);
    await containerd.stop();
  }
  if (scratch) {
    unmountUnder(scratch);
    rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);

function ok(result: CommandResult, what: string): CommandResult {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stdout}${result.stderr}`);
  return result;
}

/** The texts readline returned to the process that read `marker` first, in order. */
function session(marker: string): { lines: CapturedLine[]; texts: string[] } {
  const first = captured.find((l) => l.bytes.toString('latin1') === marker);
  const lines = first ? captured.filter((l) => l.pid === first.pid) : [];
  return { lines, texts: lines.map((l) => l.bytes.toString('latin1')) };
}

/** The line of /proc/self/mountinfo of the mount at `path` (the host's mount namespace), if any. */
function mountAt(path: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((line) => line.split(' ')[4] === path);
}

/** The inode number of a process's mount namespace (what the capture reports as mntns). */
function mountNamespace(pid: number): number {
  return Number(/^mnt:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/mnt`))![1]);
}

async function taskPid(id: string): Promise<number> {
  const tasks = ok(await containerd.ctr(NAMESPACE, ['tasks', 'ls']), 'ctr tasks ls').stdout;
  const line = tasks.split('\n').find((l) => l.split(/\s+/)[0] === id);
  if (!line) throw new Error(`no task ${id} in:\n${tasks}`);
  return Number(line.split(/\s+/)[1]);
}

/**
 * Opens a terminal on `argv` (a ctr command), waits for the shell's prompt, types `lines` one per prompt,
 * then `last` (`exit\n` or Ctrl-D), and waits for the shell to exit.
 */
async function typeInto(argv: string[], prompt: RegExp, lines: string[], last: string): Promise<Terminal> {
  const terminal = Terminal.open(argv);
  terminals.push(terminal);
  for (const [i, line] of lines.entries()) {
    await terminal.waitForOutput(prompt, 20_000, i + 1);
    terminal.type(`${line}\n`);
  }
  await terminal.waitForOutput(prompt, 20_000, lines.length + 1);
  terminal.type(last);
  const exit = await terminal.waitForExit();
  if (exit.code !== 0) throw new Error(`the terminal's program exited ${exit.code}:\n${terminal.output}`);
  return terminal;
}

/**
 * Probes `file`, types `lines` into the shell that `argv` opens (typeInto), and waits for the capture to hold
 * that shell's last line (`exit` when `last` typed it; else the last of `lines`: Ctrl-D returns none). What
 * readline returned to the shell, in order.
 */
async function captureTyped(
  file: string,
  argv: string[],
  prompt: RegExp,
  lines: string[],
  last: string,
): Promise<{ lines: CapturedLine[]; texts: string[] }> {
  const outcome = await capture.setTargets([file]);
  // setTargets no longer throws for a target bpftrace cannot attach: it leaves it out and says why.
  expect(outcome.rejected).toEqual([]);
  await typeInto(argv, prompt, lines, last);
  const final = last === CTRL_D ? lines.at(-1)! : last.trim();
  await waitFor('the typed lines', () => session(lines[0]!).texts.includes(final));
  return session(lines[0]!);
}

/** `ctr tasks exec --tty` of `bash -i` (no rc files) in a running container: a terminal's command line. */
function interactiveBash(id: string, execId: string): string[] {
  const args = ['bash', '--norc', '--noprofile', '-i'];
  return containerd.ctrCommand(NAMESPACE, containerd.execArgs({ id, execId, tty: true, args }));
}

function onlyTarget(results: Awaited<ReturnType<typeof resolveReadlineTargets>>): ReadlineTarget {
  expect(results).toHaveLength(1);
  expect(results[0]!.kind).toBe('target');
  return results[0] as ReadlineTarget;
}

describe('buildImageArchive', () => {
  let rootfs: string;
  beforeAll(() => {
    rootfs = join(scratch, 'archive-rootfs');
    buildRootfs(rootfs);
  });

  it('writes an OCI layout: index with the reference, manifest, config with the host platform, one layer', () => {
    const archive = buildImageArchive(rootfs, join(scratch, 'a.tar'), {
      ref: 'localhost/ca-test/busybox:1',
      cmd: ['/bin/sh', '-c', 'echo hi'],
    });
    const index = JSON.parse(readArchiveFile(archive.path, 'index.json').toString()) as {
      manifests: { digest: string; platform: unknown; annotations: Record<string, string> }[];
    };
    expect(index.manifests).toEqual([
      expect.objectContaining({
        digest: archive.manifest.digest,
        platform: hostPlatform(),
        annotations: { [REF_NAME_ANNOTATION]: 'localhost/ca-test/busybox:1' },
      }),
    ]);
    const manifest = JSON.parse(readArchiveBlob(archive.path, archive.manifest.digest).toString()) as {
      config: { digest: string };
      layers: { mediaType: string; digest: string; size: number }[];
    };
    expect(manifest.config.digest).toBe(archive.config.digest);
    expect(manifest.layers).toEqual([archive.layer]);
    expect(archive.layer.mediaType).toBe(OCI_LAYER_TAR_GZIP);

    const layer = readArchiveBlob(archive.path, archive.layer.digest);
    expect(digestOf(layer)).toBe(archive.layer.digest);
    expect(digestOf(gunzipSync(layer))).toBe(archive.diffId);
    const config = JSON.parse(readArchiveBlob(archive.path, archive.config.digest).toString()) as {
      architecture: string;
      os: string;
      config: { Env: string[]; Cmd: string[] };
      rootfs: { diff_ids: string[] };
    };
    expect(config).toMatchObject({
      ...hostPlatform(),
      config: { Env: [DEFAULT_IMAGE_PATH], Cmd: ['/bin/sh', '-c', 'echo hi'] },
      rootfs: { type: 'layers', diff_ids: [archive.diffId] },
    });
  });

  it('gives the same bytes for the same tree', () => {
    const options = { ref: 'localhost/ca-test/busybox:1' };
    const a = buildImageArchive(rootfs, join(scratch, 'same-a.tar'), options);
    const b = buildImageArchive(rootfs, join(scratch, 'same-b.tar'), options);
    expect(b.manifest.digest).toBe(a.manifest.digest);
    expect(readFileSync(b.path).equals(readFileSync(a.path))).toBe(true);
  });
});

describe('a container from an image unpacked by the overlayfs snapshotter', () => {
  const id = 'overlay-bash';
  let archive: ImageArchive;
  let root: string;
  let target: ReadlineTarget;

  beforeAll(async () => {
    const rootfs = join(scratch, 'bash-rootfs');
    buildRootfs(rootfs, { bash: true });
    archive = buildImageArchive(rootfs, join(scratch, 'bash.tar'), { ref: 'localhost/ca-test/bash:1' });
    images.push(await importImage(containerd, NAMESPACE, archive));
    ok(
      await containerd.runImage(NAMESPACE, {
        id,
        image: archive.ref,
        args: ['sh', '-c', 'exec sleep 3600'],
        detach: true,
        annotations: { 'io.kubernetes.cri.container-name': 'shell' },
      }),
      'ctr run',
    );
    root = containerd.rootfsDir(NAMESPACE, id);
  }, 60_000);

  it('has an overlay mount as its root, whose bash is the target', async () => {
    expect(mountAt(root)).toMatch(/ - overlay overlay .*lowerdir=/);
    const spec = JSON.parse(
      readFileSync(join(containerd.bundleDir(NAMESPACE, id), 'config.json'), 'utf8'),
    ) as {
      annotations?: Record<string, string>;
    };
    expect(spec.annotations).toMatchObject({ 'io.kubernetes.cri.container-name': 'shell' });
    target = onlyTarget(await resolveReadlineTargets(root));
    expect(target).toMatchObject({ bash: '/bin/bash', file: join(root, 'bin/bash'), via: 'bash' });
    // The image's PATH is the container's (from the image config, not from ctr).
    const env = ok(
      await containerd.exec(NAMESPACE, { id, execId: 'env', args: ['sh', '-c', 'echo "$PATH"'] }),
      'ctr tasks exec',
    );
    expect(env.stdout.trim()).toBe(DEFAULT_IMAGE_PATH.slice('PATH='.length));
  });

  it('captures a line typed into bash -i through a uretprobe on the overlay path', async () => {
    const marker = ': typed-through-overlay';
    const typed = [marker, 'echo "$((6 * 7))"'];
    const { lines, texts } = await captureTyped(
      target.file,
      interactiveBash(id, 'shell-1'),
      BASH_PROMPT,
      typed,
      'exit\n',
    );
    expect(texts).toEqual([...typed, 'exit']);
    const mntns = mountNamespace(await taskPid(id));
    expect(lines.every((l) => l.mntns === mntns && l.uid === 0 && !l.truncated)).toBe(true);
  }, 60_000);

  it("also captures it with the probe on the snapshot's lower directory: the kernel probes the file under the overlay", async () => {
    const lowerdir = /lowerdir=([^,\s]+)/.exec(mountAt(root) ?? '')![1]!;
    const lower = join(lowerdir.split(':')[0]!, 'bin/bash');
    const [viaOverlay, viaLower] = [target.file, lower].map((f) => statSync(f, { bigint: true }));
    // Not the same inode to stat(2) (the overlay has a device of its own) ...
    expect(viaOverlay!.dev).not.toBe(viaLower!.dev);
    // ... but the same file to the uprobe.
    const marker = ': typed-probed-in-lowerdir';
    const { texts } = await captureTyped(
      lower,
      interactiveBash(id, 'shell-2'),
      BASH_PROMPT,
      [marker],
      'exit\n',
    );
    expect(texts).toEqual([marker, 'exit']);
  }, 60_000);
});

describe('a shell that takes readline from libreadline.so', () => {
  let rootfs: string;

  beforeAll(() => {
    rootfs = join(scratch, 'libreadline-rootfs');
    buildLibreadlineRootfs(rootfs, buildRlshell(join(scratch, 'build')));
  });

  it('resolves to the library and is captured in a container', async () => {
    const target = onlyTarget(await resolveReadlineTargets(rootfs));
    expect(target).toMatchObject({ bash: '/bin/bash', via: 'libreadline' });
    expect(target.file).toMatch(new RegExp(`^${rootfs}/.*/libreadline\\.so\\.8$`));

    const marker = 'typed into rlshell';
    const run = containerd.runArgs({ id: 'rlshell', rootfs, args: ['/bin/bash'], tty: true, rm: true });
    const typed = [marker, 'a second line'];
    const { texts } = await captureTyped(
      target.file,
      containerd.ctrCommand(NAMESPACE, run),
      RLSHELL_PROMPT,
      typed,
      CTRL_D,
    );
    expect(texts).toEqual(typed);
  }, 60_000);
});

describe('a static, stripped bash', () => {
  let rootfs: string;

  beforeAll(() => {
    rootfs = join(scratch, 'static-rootfs');
    buildStaticBashRootfs(rootfs);
  });

  it('is a coverage gap, with the reason', async () => {
    expect(await resolveReadlineTargets(rootfs)).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: '/bin/bash is a static bash without a dynamic readline symbol',
      },
    ]);
  });

  it('is a real bash that runs in a container', async () => {
    const result = ok(
      await containerd.run(NAMESPACE, {
        id: 'static-bash',
        rootfs,
        args: ['/bin/bash', '-c', 'echo "${BASH_VERSINFO[0]}"'],
        rm: true,
      }),
      'ctr run',
    );
    expect(Number(result.stdout.trim())).toBeGreaterThanOrEqual(5);
  });
});

function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
