/**
 * Root filesystems and OCI bundles for tests and benchmarks, built from what Debian installs (there is no
 * registry): busybox-static for a shell and the usual tools, and optionally the host's bash with the shared
 * libraries it needs, so a container runs a real Bash with readline.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

export const BUSYBOX = '/bin/busybox';
export const HOST_BASH = '/bin/bash';

export interface RootfsOptions {
  /** Copy the host's bash and its libraries (from ldd) into /bin/bash. */
  bash?: boolean;
}

/** The shared libraries a dynamic binary loads, with the dynamic loader, as ldd reports them. */
export function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(\/\S+) \(0x[0-9a-f]+\)/g)].map((m) => m[1]!);
}

function copyPreservingPath(root: string, file: string): void {
  const target = join(root, file);
  mkdirSync(dirname(target), { recursive: true });
  if (!existsSync(target)) copyFileSync(realpathSync(file), target);
}

/** Builds a root filesystem in `root` (created if needed); idempotent. */
export function buildRootfs(root: string, options: RootfsOptions = {}): void {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install Debian's busybox-static`);
  for (const dir of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root'])
    mkdirSync(join(root, dir), { recursive: true });
  copyPreservingPath(root, BUSYBOX);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) {
    const link = join(root, 'bin', applet);
    if (applet !== 'busybox' && !existsSync(link)) symlinkSync('busybox', link);
  }
  if (options.bash) {
    const bash = join(root, 'bin', 'bash');
    if (!existsSync(bash) || readFileSync(bash).length < 100_000) {
      execFileSync('rm', ['-f', bash]);
      copyPreservingPath(root, HOST_BASH);
    }
    for (const lib of sharedLibraries(HOST_BASH)) copyPreservingPath(root, lib);
  }
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\n');
}

/**
 * The root of the shell image (a demo pod's, the node stack's; see buildShellImage in image.ts), made anew in
 * `root`: buildRootfs with the host's bash (it must stay the dynamic binary exporting readline that Debian
 * ships: that is what the agent probes), the directories a distribution's image has, a sticky /tmp, and root's
 * login shell bash.
 */
export function buildShellRootfs(root: string): void {
  rmSync(root, { recursive: true, force: true });
  buildRootfs(root, { bash: true });
  for (const dir of ['run', 'var/tmp', 'usr/bin', 'usr/sbin', 'sbin'])
    mkdirSync(join(root, dir), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
}

export interface BundleOptions {
  args: string[];
  /** Share the host's network namespace (no CNI needed). Default true. */
  hostNetwork?: boolean;
}

/** Writes an OCI bundle (config.json from `runc spec`, adjusted) whose rootfs is `rootfs`. */
export function writeBundle(bundle: string, rootfs: string, options: BundleOptions): void {
  mkdirSync(bundle, { recursive: true });
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const configPath = join(bundle, 'config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as {
    root: { path: string; readonly: boolean };
    process: { terminal: boolean; args: string[] };
    linux: { namespaces: { type: string }[] };
  };
  config.root = { path: rootfs, readonly: false };
  config.process.terminal = false;
  config.process.args = options.args;
  if (options.hostNetwork ?? true) {
    config.linux.namespaces = config.linux.namespaces.filter((ns) => ns.type !== 'network');
  }
  writeFileSync(configPath, JSON.stringify(config, null, 2));
}
