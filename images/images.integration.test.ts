/**
 * The container images (images/operator/Dockerfile, images/agent/Dockerfile), as far as a machine without a
 * container engine or a registry can prove them:
 *
 *  - read as BuildKit reads them: every base pinned to a full version, the final stage's user, ENTRYPOINT,
 *    CMD and OCI labels as the Helm chart and package.json expect;
 *  - built by images/emulate.ts: the stages run here (npm ci from the lock file, tsc, make), COPY through
 *    each Dockerfile's .dockerignore, so the final stage's /app is what the image would hold, and then that
 *    /app runs: the image's ENTRYPOINT and CMD with --help (the operator's as uid 65532 when this runs as
 *    root), from a directory with no node_modules above it. A file the runtime needs and the Dockerfile does
 *    not copy, a dev dependency needed at run time, a source directory missing from the build stage: each
 *    fails here;
 *  - the agent's extras: its bpf-scripts where the compiled agent looks for them, the Debian packages it
 *    installs (the release and the bpftrace version of this machine, which the node tests run), the static
 *    runc wrapper at the path the chart's init container copies from.
 *
 * What is not proven: the base images themselves (their tags are not resolved: no registry here), and that
 * the apt-get lines succeed inside them. npm ci needs the registry or npm's cache: without both it fails.
 */
import { NODE_FLAGS } from '../cli/node-flags.js';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { evaluate, parseDockerfile, parseImageRef, pinProblem, type ResolvedStage } from './dockerfile.js';
import { Emulator, type StagedImage } from './emulate.js';

interface PackageJson {
  version: string;
  license: string;
  engines: { node: string };
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

/** What each image must be, as the chart (charts/container-auditor) runs it. */
const IMAGES = [
  {
    name: 'operator',
    cmd: ['operator'],
    user: '65532:65532',
    usage: 'container-auditor operator --tls-cert FILE --tls-key FILE',
  },
  {
    name: 'agent',
    cmd: ['agent'],
    user: '0:0',
    usage: 'container-auditor agent --standalone --policy FILE',
  },
] as const;
const ENTRYPOINT = ['node', ...NODE_FLAGS, '/app/bin/container-auditor.js'];
const BUILD_TIMEOUT = 15 * 60_000;

const workDir = mkdtempSync(join(tmpdir(), 'container-auditor-images-'));
const emulator = new Emulator({
  context: REPO_ROOT,
  workDir,
  log: (line) => process.stderr.write(`images: ${line}\n`),
});
const builds = new Map<string, Promise<StagedImage>>();
/** The image's stages, built once (both images' builds start together, and share identical stages). */
function built(name: string): Promise<StagedImage> {
  let image = builds.get(name);
  if (!image) {
    image = emulator.build(`images/${name}/Dockerfile`);
    void image.catch(() => {}); // reported by the tests that await it
    builds.set(name, image);
  }
  return image;
}

beforeAll(() => {
  for (const { name } of IMAGES) void built(name);
});
afterAll(async () => {
  await emulator.settled(); // a failed build may leave sibling stages running: let them end first
  rmSync(workDir, { recursive: true, force: true });
}, BUILD_TIMEOUT);

/** The image's view of a path: where the staged root holds it. */
function inImage(image: StagedImage, path: string): string {
  return join(image.root, path);
}

/**
 * The image's node: the Node.js running these tests (the version of .node-version, which the Dockerfiles
 * build on), copied where the image's user can run it (the cached build may sit under root's 0700 home).
 */
let imageNode: string | undefined;
function nodeOfImages(): string {
  if (imageNode) return imageNode;
  const bin = join(workDir, 'node', 'bin');
  mkdirSync(bin, { recursive: true, mode: 0o755 });
  copyFileSync(process.execPath, join(bin, 'node'));
  chmodSync(join(bin, 'node'), 0o755);
  return (imageNode = join(bin, 'node'));
}

/** Runs a command of the image (an absolute path in it mapped to the staged root), as the image would. */
function runInImage(image: StagedImage, argv: string[], options: { user?: string } = {}) {
  const node = nodeOfImages();
  const mapped = argv.map((a, i) =>
    i === 0 && a === 'node'
      ? node
      : a.startsWith('/') && existsSync(inImage(image, a))
        ? inImage(image, a)
        : a,
  );
  const spawnOptions: SpawnSyncOptions = {
    cwd: inImage(image, image.stage.workdir),
    env: {
      PATH: `${dirname(node)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: '/nonexistent',
      ...image.stage.env,
    },
    encoding: 'utf8',
    timeout: 60_000,
  };
  // Run as the image's user where this process may (root); otherwise as whoever runs the tests.
  if (options.user !== undefined && process.getuid?.() === 0) {
    const [uid, gid = uid] = options.user.split(':').map(Number);
    if (!Number.isInteger(uid) || !Number.isInteger(gid))
      throw new Error(`not a numeric user: ${options.user}`);
    spawnOptions.uid = uid;
    spawnOptions.gid = gid;
  }
  const result = spawnSync(mapped[0]!, mapped.slice(1), spawnOptions);
  return {
    code: result.status,
    stdout: String(result.stdout),
    stderr: String(result.stderr),
    error: result.error,
  };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f));
}

/** Whether an ELF executable asks for a program interpreter (PT_INTERP): dynamically linked. 64-bit only. */
function elfInterpreter(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const header = Buffer.alloc(64);
    readSync(fd, header, 0, 64, 0);
    if (header.toString('latin1', 0, 4) !== '\x7fELF') throw new Error(`${file} is not ELF`);
    if (header[4] !== 2 || header[5] !== 1) throw new Error(`${file}: not a 64-bit little-endian ELF`);
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return true;
    return false;
  } finally {
    closeSync(fd);
  }
}

/** a.b.c as numbers. */
function version(text: string): number[] {
  return text.split('.').map(Number);
}
function compare(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
/** package.json's engines range, as written here: space-separated >=, >, <=, < comparators. */
function satisfies(v: string, range: string): boolean {
  return range.split(/\s+/).every((c) => {
    const m = /^(>=|<=|>|<)(\d+(?:\.\d+)*)$/.exec(c);
    if (!m) throw new Error(`engines: cannot read ${c}`);
    const d = compare(version(v), version(m[2]!));
    return { '>=': d >= 0, '<=': d <= 0, '>': d > 0, '<': d < 0 }[m[1] as '>=' | '<=' | '>' | '<'];
  });
}

describe.each(IMAGES)('images/$name/Dockerfile', ({ name, cmd, user, usage }) => {
  // Reading and evaluating the Dockerfile needs no build: these come straight from the parse.
  let parsed: ResolvedStage[];
  beforeAll(() => {
    parsed = evaluate(parseDockerfile(readFileSync(join(REPO_ROOT, 'images', name, 'Dockerfile'), 'utf8')));
  });
  const final = () => parsed[parsed.length - 1]!;

  it('pins every base image to a full version', () => {
    const bases = parsed.filter((s) => s.baseStage === undefined).map((s) => s.base);
    expect(bases.length).toBeGreaterThan(0);
    expect(bases.map((b) => pinProblem(b)).filter(Boolean)).toEqual([]);
  });

  it(`runs ${ENTRYPOINT.join(' ')} ${cmd.join(' ')} as ${user}, in /app`, () => {
    expect(final().entrypoint).toEqual(ENTRYPOINT);
    expect(final().cmd).toEqual(cmd);
    expect(final().user).toBe(user);
    expect(final().workdir).toBe('/app');
  });

  it("carries OCI labels: package.json's version and license, the base it is built on", () => {
    const labels = final().labels;
    expect(labels['org.opencontainers.image.title']).toBe(`container-auditor-${name}`);
    expect(labels['org.opencontainers.image.description']).toMatch(/\S/);
    expect(labels['org.opencontainers.image.version']).toBe(pkg.version);
    expect(labels['org.opencontainers.image.licenses']).toBe(pkg.license);
    expect(labels['org.opencontainers.image.revision']).toMatch(/\S/);
    expect(labels['org.opencontainers.image.base.name']).toBe(final().base);
  });

  it('runs on the Node.js of .node-version (what the tests run on), which package.json accepts', () => {
    const tag = parseImageRef(final().base).tag ?? '';
    const node = /^(\d+\.\d+\.\d+)/.exec(tag)?.[1];
    expect(parseImageRef(final().base).repository).toBe('node');
    expect(node).toBe(readFileSync(join(REPO_ROOT, '.node-version'), 'utf8').trim());
    expect(satisfies(node!, pkg.engines.node)).toBe(true);
    expect(version(node!)[0]).toBe(version(process.versions.node)[0]);
    // The stages that run npm and tsc use the same Node.js image.
    for (const stage of parsed.filter((s) => s.instructions.some((i) => /\b(npm|tsc)\b/.test(i.text))))
      expect(stage.base).toBe(final().base);
  });

  it(
    `assembles an /app that runs: ${ENTRYPOINT.join(' ')} ${cmd.join(' ')} --help`,
    async () => {
      const image = await built(name);
      for (const n of image.notReproduced)
        process.stderr.write(`images: ${image.dockerfile} [${n.stage}]: not reproduced here: ${n.command}\n`);
      // Nothing above the staged root may lend it modules (Node.js looks for node_modules upward).
      for (let dir = dirname(image.root); dir !== dirname(dir); dir = dirname(dir))
        expect(existsSync(join(dir, 'node_modules'))).toBe(false);
      // package.json makes dist/ ES modules (Node.js would also guess so, at a cost), and says what
      // npm ci installed with the lock file.
      for (const file of ['package.json', 'package-lock.json'])
        expect(readFileSync(inImage(image, `/app/${file}`), 'utf8')).toBe(
          readFileSync(join(REPO_ROOT, file), 'utf8'),
        );
      const help = runInImage(image, [...final().entrypoint!, ...final().cmd!, '--help'], { user });
      expect(help.error).toBeUndefined();
      expect(help.stderr).toBe('');
      expect(help.stdout).toContain(usage);
      expect(help.code).toBe(0);
    },
    BUILD_TIMEOUT,
  );

  it(
    'holds production dependencies only, none native or needing install scripts (built on any platform)',
    async () => {
      const image = await built(name);
      const app = inImage(image, '/app');
      const modules = join(app, 'node_modules');
      // The lock file says which packages production needs (no flag) and which only development does (dev).
      const entries = Object.entries(lock.packages).filter(([path]) => path !== '');
      const production = entries.filter(([, e]) => !e.dev && !e.devOptional && !e.optional);
      expect(
        production.map(([path]) => path).filter((path) => !existsSync(join(app, path, 'package.json'))),
      ).toEqual([]);
      const dev = entries.filter(([, e]) => e.dev).map(([path]) => path);
      expect(dev.length).toBeGreaterThan(0);
      expect(dev.filter((path) => existsSync(join(app, path)))).toEqual([]);
      expect(existsSync(join(modules, 'typescript'))).toBe(false);
      const files = filesUnder(modules);
      expect(files.filter((f) => f.endsWith('.node') || f.endsWith('/binding.gyp'))).toEqual([]);
      const withScripts = files
        .filter((f) => f.endsWith('/package.json') && lstatSync(f).isFile())
        .filter((f) => {
          const scripts = (JSON.parse(readFileSync(f, 'utf8')) as { scripts?: Record<string, string> })
            .scripts;
          return ['preinstall', 'install', 'postinstall'].some((s) => scripts?.[s] !== undefined);
        });
      expect(withScripts).toEqual([]);
    },
    BUILD_TIMEOUT,
  );

  it(
    'leaves nothing in /app that a process in the image could change (root-owned, none world-writable)',
    async () => {
      const image = await built(name);
      const writable = filesUnder(inImage(image, '/app')).filter(
        (f) => !lstatSync(f).isSymbolicLink() && (statSync(f).mode & 0o002) !== 0,
      );
      expect(writable).toEqual([]);
    },
    BUILD_TIMEOUT,
  );
});

describe('images/operator/Dockerfile, beyond the common checks', () => {
  it(
    'installs no system packages and carries none of the agent (bpf-scripts, runc wrapper)',
    async () => {
      const image = await built('operator');
      expect(image.packages).toEqual([]);
      expect(existsSync(inImage(image, '/app/bpf-scripts'))).toBe(false);
      expect(existsSync(inImage(image, '/opt/container-auditor'))).toBe(false);
    },
    BUILD_TIMEOUT,
  );
});

describe('images/agent/Dockerfile, beyond the common checks', () => {
  it(
    'has its bpf-scripts under /app, where the compiled agent looks, and renders them',
    async () => {
      const image = await built('agent');
      const capture = inImage(image, '/app/dist/agent/capture');
      // The staged dist's own code computes the paths (import.meta.dirname there), as it would in the image.
      const script = `
        const exec = await import(${JSON.stringify(join(capture, 'exec-script.js'))});
        const readline = await import(${JSON.stringify(join(capture, 'readline-script.js'))});
        process.stdout.write(JSON.stringify({
          exec: exec.execTemplatePath(),
          tracefs: exec.tracefsWrapperPath(),
          readline: readline.templatePath(),
          execScript: exec.renderExecScript({ hostMntns: 4026531840, maxArgvBytes: 256 }),
          readlineScript: readline.renderReadlineScript(['/usr/bin/bash'], 100),
        }));`;
      const result = runInImage(image, ['node', '--input-type=module', '-e', script], { user: '0:0' });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const out = JSON.parse(result.stdout) as Record<string, string>;
      expect(out.exec).toBe(inImage(image, '/app/bpf-scripts/exec/exec.bt.tpl'));
      expect(out.tracefs).toBe(inImage(image, '/app/bpf-scripts/exec/bpftrace-tracefs.sh'));
      expect(out.readline).toBe(inImage(image, '/app/bpf-scripts/readline/readline.bt.tpl'));
      expect(out.execScript).toContain('4026531840');
      expect(out.readlineScript).toContain('uretprobe:/usr/bin/bash:readline');
      // The agent runs the tracefs wrapper itself: executable, by /bin/sh (dash, in every Debian image).
      expect(statSync(out.tracefs!).mode & 0o111).toBe(0o111);
      expect(readFileSync(out.tracefs!, 'utf8').split('\n')[0]).toBe('#!/bin/sh');
    },
    BUILD_TIMEOUT,
  );

  it(
    "installs Debian bookworm's bpftrace at this machine's version (what the node tests run), util-linux and mount",
    async () => {
      const image = await built('agent');
      // The emulator has checked each against this machine: same Debian release, installed, pinned version.
      const installed = new Map(image.packages.map((p) => [p.name, p.version]));
      const bpftrace = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'bpftrace'], { encoding: 'utf8' });
      expect(installed.get('bpftrace')).toBe(bpftrace.stdout);
      expect(installed.has('util-linux')).toBe(true);
      expect(installed.has('mount')).toBe(true);
      // ... and they hold what the agent runs: /usr/bin/bpftrace, unshare and mount (for bpftrace-tracefs.sh).
      const files = (p: string) =>
        spawnSync('dpkg-query', ['-L', p], { encoding: 'utf8' }).stdout.split('\n');
      expect(files('bpftrace')).toContain('/usr/bin/bpftrace');
      expect(files('util-linux')).toContain('/usr/bin/unshare');
      expect(files('mount').some((f) => /^(\/usr)?\/bin\/mount$/.test(f))).toBe(true);
    },
    BUILD_TIMEOUT,
  );

  it(
    'carries the runc wrapper, static, at /opt/container-auditor/bin/container-auditor-runc, and it runs',
    async () => {
      const image = await built('agent');
      const wrapper = inImage(image, '/opt/container-auditor/bin/container-auditor-runc');
      expect(statSync(wrapper).mode & 0o111).toBe(0o111);
      expect(elfInterpreter(wrapper)).toBe(false);
      // A verb it does not watch goes straight to "runc": here echo, so its arguments come back.
      const log = join(workDir, 'wrapper.log');
      const run = spawnSync(wrapper, ['--version', 'x'], {
        encoding: 'utf8',
        env: {
          CONTAINER_AUDITOR_RUNC: '/bin/echo',
          CONTAINER_AUDITOR_WRAPPER_LOG: log,
          CONTAINER_AUDITOR_RUNC_CONFIG: join(workDir, 'no-such.conf'),
        },
      });
      expect(run.stderr).toBe('');
      expect(run.stdout).toBe('--version x\n');
      expect(run.status).toBe(0);
    },
    BUILD_TIMEOUT,
  );
});
