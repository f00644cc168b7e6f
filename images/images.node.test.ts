/**
 * The container images, built for real: images/build.sh builds images/operator/Dockerfile and
 * images/agent/Dockerfile with buildah (on local bases made from Debian packages and the Node.js the tests run
 * on: images/bases.sh) and the CRI sandbox image (pause), exports each as a docker-archive, and imports them
 * into a private containerd, where they run:
 *
 *  - the image configs: USER (65532:65532 for the operator, 0:0 for the agent), ENTRYPOINT (node with
 *    cli/node-flags.ts's flags), CMD, WORKDIR, NODE_ENV, the OCI labels (package.json's version and license),
 *    and the names containerd gives them (docker.io/container-auditor/<name>:<tag>, what the kubelet asks for);
 *  - the pins: the Node.js tag is .node-version's (and the image's node says so), the bpftrace package is this
 *    machine's version (what the node tests run), every base is pinned to a full version;
 *  - they run: `ctr run` of the image's ENTRYPOINT with `operator --help` (as 65532) and `agent --help`, and
 *    the agent's bpftrace; npm, npx, corepack and yarn are gone; /app holds exactly the lock file's production
 *    packages, none native or with install scripts, nothing in it writable by the image's user; the agent's
 *    compiled code finds and renders its bpftrace scripts; the runc wrapper is a static executable that runs; the
 *    pause image is /pause alone and runs;
 *  - build.sh run again builds nothing and says so; building left no network device, firewall chain or
 *    container-tools directory on the host.
 *
 * Node tier: root, buildah, debootstrap, containerd, runc, bpftrace. A cold build takes a few minutes (npm and
 * the Debian mirror are needed then); build.sh's cache makes a warm run cheap.
 */
import { NODE_FLAGS } from '../cli/node-flags.js';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { type Containerd, startContainerd } from '../e2e/support/containerd.js';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { evaluate, finalStage, parseDockerfile, parseImageRef, pinProblem } from './dockerfile.js';

interface PackageJson {
  version: string;
  license: string;
}
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as PackageJson;
interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  optional?: boolean;
}
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, LockEntry>;
};
const NODE_VERSION = readFileSync(join(REPO_ROOT, '.node-version'), 'utf8').trim();

/** A cold build (debootstrap, npm ci twice, apt-get, tsc) with room to spare. */
const BUILD_TIMEOUT = 40 * 60_000;
const TEST_TIMEOUT = 120_000;
const NAMESPACE = 'container-auditor-images';
const BUILD_SH = join(REPO_ROOT, 'images', 'build.sh');
const ENTRYPOINT = ['node', ...NODE_FLAGS, '/app/cli/container-auditor.js'];

const IMAGES = [
  {
    name: 'operator',
    ref: `docker.io/container-auditor/operator:${pkg.version}`,
    cmd: ['operator'],
    user: '65532:65532',
    uid: 65532,
    usage: 'container-auditor operator --tls-cert FILE --tls-key FILE',
  },
  {
    name: 'agent',
    ref: `docker.io/container-auditor/agent:${pkg.version}`,
    cmd: ['agent'],
    user: '0:0',
    uid: 0,
    usage: 'container-auditor agent --standalone --policy FILE',
  },
] as const;
const PAUSE_REF = 'docker.io/container-auditor/pause:3.10';

interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Env?: string[];
    Labels?: Record<string, string>;
  };
}
interface Archive {
  path: string;
  repoTags: string[];
  config: ImageConfig;
  layers: string[];
}

/** Runs images/build.sh, its progress on this process's stderr; resolves with its stdout. */
function buildSh(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.REVISION; // the Dockerfiles' default revision: the same key whatever the commit
    const child = spawn('bash', [BUILD_SH, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout }));
  });
}

/** The docker-archive build.sh left for an image: its manifest and image config, straight from the tar. */
function readArchive(name: string): Archive {
  const path = join(REPO_ROOT, '.cache', 'images', `${name}.tar`);
  const member = (file: string) => execFileSync('tar', ['-xOf', path, file], { maxBuffer: 64 << 20 });
  const [manifest] = JSON.parse(member('manifest.json').toString()) as {
    Config: string;
    RepoTags: string[];
    Layers: string[];
  }[];
  if (!manifest) throw new Error(`${path}: no image in manifest.json`);
  return {
    path,
    repoTags: manifest.RepoTags,
    config: JSON.parse(member(manifest.Config).toString()) as ImageConfig,
    layers: manifest.Layers,
  };
}

/** What a host change would look like: network devices, firewall chains, container tools' directories. */
const HOST_PATHS = [
  '/etc/cni',
  '/etc/containers/networks',
  '/var/lib/containers',
  '/var/cache/containers',
  '/run/containers',
  '/var/lib/cni',
];
function hostState() {
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter(Boolean);
  const chains = ['filter', 'nat', 'mangle', 'raw'].flatMap((table) =>
    spawnSync('iptables', ['-t', table, '-S'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.startsWith('-N '))
      .map((l) => `${table}/${l.slice(3)}`),
  );
  return { links, chains, paths: HOST_PATHS.filter((p) => existsSync(p)) };
}
type HostState = ReturnType<typeof hostState>;
/** The podman/buildah kind of network a build with oci isolation sets up (cni-podman0, NETAVARK-*, CNI-*). */
const CONTAINER_NETWORK = /podman|netavark|^cni/i;

let containerd: Containerd | undefined;
let before: HostState;
let after: HostState;
const archives = new Map<string, Archive>();
let runs = 0;

beforeAll(async () => {
  before = hostState();
  process.stderr.write(
    'images: bash images/build.sh (cached by content: a cold build takes minutes, a warm one seconds)\n',
  );
  const built = await buildSh([]);
  if (built.code !== 0) throw new Error(`images/build.sh failed (exit ${built.code})`);
  after = hostState();
  for (const name of ['operator', 'agent', 'pause']) archives.set(name, readArchive(name));
  containerd = await startContainerd();
  const imported = await buildSh(['import', '--address', containerd.address, '--namespace', NAMESPACE]);
  if (imported.code !== 0) throw new Error(`images/build.sh import failed (exit ${imported.code})`);
}, BUILD_TIMEOUT);

afterAll(async () => {
  await containerd?.stop();
}, TEST_TIMEOUT);

/** `ctr run --rm` of an image: the image config's user, environment and working directory; `args` replace
 * its ENTRYPOINT and CMD (as `ctr run` does), so callers give the ENTRYPOINT they mean to run. */
function run(image: string, args: string[], options: { env?: string[]; user?: string } = {}) {
  return containerd!.runImage(NAMESPACE, {
    id: `images-${process.pid}-${++runs}`,
    image,
    args,
    rm: true,
    ...(options.env ? { env: options.env } : {}),
    ...(options.user ? { flags: ['--user', options.user] } : {}),
    timeoutMs: 60_000,
  });
}

/** Runs a CommonJS script with the image's node; its stdout is JSON. */
async function nodeJson<T>(image: string, script: string, user?: string): Promise<T> {
  const result = await run(image, ['node', '-e', script], user ? { user } : {});
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/** Walks /app in the image: packages under node_modules, native or install-script ones, and what is
 * writable by anyone but root or not owned by root. */
const SCAN_APP = `
const fs = require('node:fs');
const path = require('node:path');
const out = { packages: [], native: [], installScripts: [], worldWritable: [], notRootOwned: [] };
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    const rel = path.relative('/app', file);
    const st = fs.lstatSync(file);
    if (!entry.isSymbolicLink() && (st.mode & 0o002) !== 0) out.worldWritable.push(rel);
    if (st.uid !== 0 || st.gid !== 0) out.notRootOwned.push(rel);
    if (entry.isDirectory()) {
      if (/(^|\\/)node_modules\\/(@[^/]+\\/)?[^/@][^/]*$/.test(rel) && fs.existsSync(path.join(file, 'package.json'))) {
        out.packages.push(rel);
        const scripts = JSON.parse(fs.readFileSync(path.join(file, 'package.json'), 'utf8')).scripts ?? {};
        if (['preinstall', 'install', 'postinstall'].some((s) => scripts[s] !== undefined)) out.installScripts.push(rel);
      }
      walk(file);
    } else if (entry.name.endsWith('.node') || entry.name === 'binding.gyp') out.native.push(rel);
  }
};
walk('/app');
process.stdout.write(JSON.stringify(out));`;

/** Which of these paths exist in the image (lstat: a dangling link counts). */
const existing = (paths: string[]) => `
process.stdout.write(JSON.stringify(${JSON.stringify(paths)}.filter((p) => {
  try { require('node:fs').lstatSync(p); return true; } catch { return false; }
})));`;

const NODE_TOOLS = [
  '/usr/local/lib/node_modules',
  '/usr/local/bin/npm',
  '/usr/local/bin/npx',
  '/usr/local/bin/corepack',
  '/usr/local/bin/yarn',
  '/usr/local/bin/yarnpkg',
  '/opt/yarn-v1.22.22',
];

describe('images/build.sh', () => {
  it(
    'builds nothing the second time, and says so in one line',
    async () => {
      const again = await buildSh([]);
      expect(again.code).toBe(0);
      const progress = again.stdout.split('\n').filter((l) => l.startsWith('==> '));
      expect(progress).toHaveLength(1);
      expect(progress[0]).toMatch(/^==> Images up to date, nothing built: operator agent pause/);
    },
    TEST_TIMEOUT,
  );

  it('left no container network, firewall chain or container-tools directory on the host', () => {
    const added = (a: string[], b: string[]) => b.filter((x) => !a.includes(x));
    expect(added(before.links, after.links).filter((l) => CONTAINER_NETWORK.test(l))).toEqual([]);
    expect(
      added(before.chains, after.chains).filter((c) => CONTAINER_NETWORK.test(c.split('/')[1]!)),
    ).toEqual([]);
    expect(added(before.paths, after.paths)).toEqual([]);
  });

  it(
    'names the images as the chart does, and containerd lists them as the kubelet asks for them',
    async () => {
      for (const { name, ref } of IMAGES) expect(archives.get(name)!.repoTags).toEqual([ref]);
      expect(archives.get('pause')!.repoTags).toEqual([PAUSE_REF]);
      const listed = await containerd!.ctr(NAMESPACE, ['images', 'ls', '-q']);
      expect(listed.code).toBe(0);
      expect(listed.stdout.split('\n').filter(Boolean).sort()).toEqual(
        [...IMAGES.map((i) => i.ref), PAUSE_REF].sort(),
      );
    },
    TEST_TIMEOUT,
  );
});

describe.each(IMAGES)('images/$name/Dockerfile, built', ({ name, ref, cmd, user, uid, usage }) => {
  const dockerfile = () =>
    evaluate(parseDockerfile(readFileSync(join(REPO_ROOT, 'images', name, 'Dockerfile'), 'utf8')));
  const config = () => archives.get(name)!.config;

  it('pins every base to a full version, and Node.js to .node-version (what the tests run on)', () => {
    const stages = dockerfile();
    const bases = stages.filter((s) => s.baseStage === undefined).map((s) => s.base);
    expect(bases.map((b) => pinProblem(b)).filter(Boolean)).toEqual([]);
    const base = parseImageRef(finalStage(stages).base);
    expect(base.repository).toBe('node');
    expect(/^(\d+\.\d+\.\d+)-/.exec(base.tag ?? '')?.[1]).toBe(NODE_VERSION);
    // The stages that run npm and tsc use the same Node.js image.
    for (const stage of stages.filter((s) => s.instructions.some((i) => /\b(npm|tsc)\b/.test(i.text))))
      expect(stage.base).toBe(finalStage(stages).base);
  });

  it(`has the config the chart relies on: user ${user}, ENTRYPOINT, CMD ${cmd.join(' ')}, /app`, () => {
    const { config: c, os, architecture } = config();
    expect(c.User).toBe(user);
    expect(c.Entrypoint).toEqual(ENTRYPOINT);
    expect(c.Cmd).toEqual(cmd);
    expect(c.WorkingDir).toBe('/app');
    expect(c.Env).toContain('NODE_ENV=production');
    expect(c.Env).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(os).toBe('linux');
    expect(architecture).toBe(process.arch === 'x64' ? 'amd64' : process.arch);
  });

  it("carries the OCI labels: package.json's version and license, the base it is built on", () => {
    const labels = config().config.Labels ?? {};
    expect(labels['org.opencontainers.image.title']).toBe(`container-auditor-${name}`);
    expect(labels['org.opencontainers.image.description']).toMatch(/\S/);
    expect(labels['org.opencontainers.image.version']).toBe(pkg.version);
    expect(labels['org.opencontainers.image.licenses']).toBe(pkg.license);
    expect(labels['org.opencontainers.image.revision']).toMatch(/\S/);
    expect(labels['org.opencontainers.image.base.name']).toBe(finalStage(dockerfile()).base);
  });

  it(
    `runs its ENTRYPOINT with ${cmd.join(' ')} --help, as uid ${uid}, on the Node.js of .node-version`,
    async () => {
      const help = await run(ref, [...config().config.Entrypoint!, ...cmd, '--help']);
      expect(help.stderr).toBe('');
      expect(help.stdout).toContain(usage);
      expect(help.code).toBe(0);
      const who = await nodeJson<{ uid: number; gid: number; version: string; cwd: string }>(
        ref,
        'process.stdout.write(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), version: process.version, cwd: process.cwd() }))',
      );
      expect(who).toEqual({ uid, gid: uid, version: `v${NODE_VERSION}`, cwd: '/app' });
    },
    TEST_TIMEOUT,
  );

  it(
    'has no npm, npx, corepack or yarn left (running needs node only)',
    async () => {
      expect(await nodeJson<string[]>(ref, existing(NODE_TOOLS))).toEqual([]);
      const which = await run(ref, [
        'sh',
        '-c',
        'for c in npm npx corepack yarn yarnpkg; do command -v $c; done; true',
      ]);
      expect(which.stdout).toBe('');
    },
    TEST_TIMEOUT,
  );

  it(
    "holds in /app the lock file's production packages exactly, none native or with install scripts, all root's and none world-writable",
    async () => {
      const scan = await nodeJson<{
        packages: string[];
        native: string[];
        installScripts: string[];
        worldWritable: string[];
        notRootOwned: string[];
      }>(ref, SCAN_APP);
      // The lock file says which packages production needs (no flag), which it may have (optional ones,
      // platform permitting) and which only development does (dev).
      const entries = Object.entries(lock.packages).filter(([path]) => path !== '');
      const required = entries.filter(([, e]) => !e.dev && !e.devOptional && !e.optional).map(([p]) => p);
      const allowed = new Set(entries.filter(([, e]) => !e.dev).map(([p]) => p));
      expect(required.length).toBeGreaterThan(0);
      expect(required.filter((p) => !scan.packages.includes(p))).toEqual([]);
      expect(scan.packages.filter((p) => !allowed.has(p))).toEqual([]);
      expect(scan.packages).not.toContain('node_modules/typescript');
      expect(scan.native).toEqual([]);
      expect(scan.installScripts).toEqual([]);
      expect(scan.worldWritable).toEqual([]);
      expect(scan.notRootOwned).toEqual([]);
      // package.json makes dist/ ES modules, and says what npm ci installed with the lock file.
      const files = await nodeJson<Record<string, string>>(
        ref,
        `const fs = require('node:fs'); process.stdout.write(JSON.stringify({ pkg: fs.readFileSync('/app/package.json', 'utf8'), lock: fs.readFileSync('/app/package-lock.json', 'utf8') }))`,
      );
      expect(files.pkg).toBe(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
      expect(files.lock).toBe(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8'));
    },
    TEST_TIMEOUT,
  );
});

describe('images/operator/Dockerfile, beyond the common checks', () => {
  const ref = IMAGES[0].ref;

  it(
    'carries none of the agent (bpftrace scripts, runc wrapper, bpftrace); uid 65532 is named nonroot',
    async () => {
      expect(
        await nodeJson<string[]>(
          ref,
          existing(['/app/agent', '/opt/container-auditor', '/usr/bin/bpftrace', '/app/dist/agent']),
        ),
      ).toEqual(['/app/dist/agent']); // the one CLI: dist/ holds both commands
      const passwd = await run(ref, ['sh', '-c', 'getent passwd 65532; getent group 65532']);
      expect(passwd.stdout).toBe('nonroot:x:65532:65532::/nonexistent:/usr/sbin/nologin\nnonroot:x:65532:\n');
    },
    TEST_TIMEOUT,
  );
});

describe('images/agent/Dockerfile, beyond the common checks', () => {
  const ref = IMAGES[1].ref;

  it(
    "installs Debian bookworm's bpftrace at this machine's version (what the node tests run), and it runs",
    async () => {
      const host = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'bpftrace'], { encoding: 'utf8' });
      expect(host.status).toBe(0);
      const agent = finalStage(
        evaluate(parseDockerfile(readFileSync(join(REPO_ROOT, 'images', 'agent', 'Dockerfile'), 'utf8'))),
      );
      expect(agent.args.BPFTRACE_VERSION).toBe(host.stdout);
      const installed = await run(ref, [
        'dpkg-query',
        '-W',
        '-f=${Package} ${Version}\\n',
        'bpftrace',
        'util-linux',
        'mount',
      ]);
      expect(installed.code).toBe(0);
      expect(installed.stdout).toMatch(new RegExp(`^bpftrace ${host.stdout.replaceAll('.', '\\.')}$`, 'm'));
      expect(installed.stdout).toMatch(/^util-linux \S+$/m);
      expect(installed.stdout).toMatch(/^mount \S+$/m);
      expect((await run(ref, ['sh', '-c', 'cat /etc/debian_version'])).stdout).toMatch(/^12\.\d+\n$/);
      const version = await run(ref, ['bpftrace', '--version']);
      expect(version.stderr).toBe('');
      expect(version.stdout).toBe(`bpftrace v${host.stdout.replace(/-[^-]*$/, '')}\n`);
      expect(version.code).toBe(0);
      // What agent/capture/exec/bpftrace-tracefs.sh runs.
      const tools = await run(ref, ['sh', '-c', 'command -v unshare; command -v mount']);
      expect(tools.stdout).toBe('/usr/bin/unshare\n/usr/bin/mount\n');
    },
    TEST_TIMEOUT,
  );

  it(
    'has its bpftrace scripts under /app, where the compiled agent looks, and renders them',
    async () => {
      // The image's own dist computes the paths (import.meta.dirname there), as the agent does.
      const script = `
        const exec = await import('/app/dist/agent/capture/exec/script.js');
        const readline = await import('/app/dist/agent/capture/readline/script.js');
        const fs = await import('node:fs');
        process.stdout.write(JSON.stringify({
          exec: exec.execTemplatePath(),
          tracefs: exec.tracefsWrapperPath(),
          readline: readline.templatePath(),
          tracefsMode: fs.statSync(exec.tracefsWrapperPath()).mode & 0o777,
          tracefsFirstLine: fs.readFileSync(exec.tracefsWrapperPath(), 'utf8').split('\\n')[0],
          execScript: exec.renderExecScript({ hostMntns: 4026531840, maxArgvBytes: 256 }),
          readlineScript: readline.renderReadlineScript(['/usr/bin/bash'], 100),
        }));`;
      const result = await run(ref, ['node', '--input-type=module', '-e', script]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const out = JSON.parse(result.stdout) as Record<string, string | number>;
      expect(out.exec).toBe('/app/agent/capture/exec/exec.bt.tpl');
      expect(out.tracefs).toBe('/app/agent/capture/exec/bpftrace-tracefs.sh');
      expect(out.readline).toBe('/app/agent/capture/readline/readline.bt.tpl');
      expect(out.execScript).toContain('4026531840');
      expect(out.readlineScript).toContain('uretprobe:/usr/bin/bash:readline');
      // The agent runs the tracefs wrapper itself: executable, by /bin/sh.
      expect(out.tracefsMode).toBe(0o755);
      expect(out.tracefsFirstLine).toBe('#!/bin/sh');
      expect((await run(ref, ['/bin/sh', '-c', 'echo ok'])).stdout).toBe('ok\n');
    },
    TEST_TIMEOUT,
  );

  it(
    'carries the runc wrapper at /opt/container-auditor/bin/container-auditor-runc: static, and it runs',
    async () => {
      const wrapper = '/opt/container-auditor/bin/container-auditor-runc';
      // Whether the ELF asks for a program interpreter (PT_INTERP): a dynamically linked one would.
      const elf = await nodeJson<{ mode: number; elf: boolean; interp: boolean }>(
        ref,
        `
const fs = require('node:fs');
const b = fs.readFileSync(${JSON.stringify(wrapper)});
const phoff = Number(b.readBigUInt64LE(0x20)), size = b.readUInt16LE(0x36), count = b.readUInt16LE(0x38);
let interp = false;
for (let i = 0; i < count; i++) if (b.readUInt32LE(phoff + i * size) === 3) interp = true;
process.stdout.write(JSON.stringify({
  mode: fs.statSync(${JSON.stringify(wrapper)}).mode & 0o777,
  elf: b.toString('latin1', 0, 4) === '\\x7fELF' && b[4] === 2 && b[5] === 1,
  interp,
}));`,
      );
      expect(elf).toEqual({ mode: 0o755, elf: true, interp: false });
      // A verb it does not watch goes straight to "runc": here echo, so its arguments come back.
      const ran = await run(ref, [wrapper, '--version', 'x'], {
        env: [
          'CONTAINER_AUDITOR_RUNC=/bin/echo',
          'CONTAINER_AUDITOR_WRAPPER_LOG=/tmp/wrapper.log',
          'CONTAINER_AUDITOR_RUNC_CONFIG=/nonexistent.conf',
        ],
      });
      expect(ran.stderr).toBe('');
      expect(ran.stdout).toBe('--version x\n');
      expect(ran.code).toBe(0);
    },
    TEST_TIMEOUT,
  );
});

describe('the pause image (container-auditor/pause)', () => {
  it(
    'is /pause alone, static, run as 65535, and runs',
    async () => {
      const archive = archives.get('pause')!;
      expect(archive.config.config.Entrypoint).toEqual(['/pause']);
      expect(archive.config.config.User).toBe('65535:65535');
      expect(archive.layers).toHaveLength(1);
      const entries = spawnSync(
        'sh',
        ['-c', `tar -xOf "$1" "$2" | tar -t`, 'sh', archive.path, archive.layers[0]!],
        { encoding: 'utf8' },
      );
      expect(entries.stdout.split('\n').filter(Boolean)).toEqual(['pause']);
      const version = await run(PAUSE_REF, ['/pause', '-v']);
      expect(version.stdout).toBe('container-auditor pause 1\n');
      expect(version.code).toBe(0);
    },
    TEST_TIMEOUT,
  );
});

// The link build.sh keeps for each archive points into the cache, by content key.
it('links <repo>/.cache/images/<name>.tar to the keyed archive in the cache', () => {
  for (const name of ['operator', 'agent', 'pause'])
    expect(readlinkSync(join(REPO_ROOT, '.cache', 'images', `${name}.tar`))).toMatch(
      new RegExp(`/images/archives/${name}-[0-9a-f]{16}\\.tar$`),
    );
});
