import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CriAnnotation,
  MAX_CONFIG_BYTES,
  MAX_PATH_DIRS,
  bashCandidates,
  identityFromAnnotations,
  readBundle,
} from './bundle.js';
import { DEFAULT_BASH_CANDIDATES } from '../targets/resolve.js';

describe('identityFromAnnotations', () => {
  const container = {
    [CriAnnotation.containerType]: 'container',
    [CriAnnotation.sandboxNamespace]: 'shop',
    [CriAnnotation.sandboxName]: 'web-7d9f-abcde',
    [CriAnnotation.sandboxUid]: '0b7c6a0e-1111-2222-3333-444455556666',
    [CriAnnotation.containerName]: 'nginx',
    [CriAnnotation.imageName]: 'docker.io/library/nginx:1.27',
    [CriAnnotation.sandboxId]: 'a'.repeat(64),
    'io.kubernetes.cri.sandbox-log-directory': '/var/log/pods/x',
  };

  it('reads a CRI container', () => {
    expect(identityFromAnnotations(container)).toEqual({
      kind: 'container',
      podNamespace: 'shop',
      podName: 'web-7d9f-abcde',
      podUid: '0b7c6a0e-1111-2222-3333-444455556666',
      containerName: 'nginx',
      image: 'docker.io/library/nginx:1.27',
      sandboxId: 'a'.repeat(64),
    });
  });

  it('tells a sandbox from a container', () => {
    const sandbox = {
      [CriAnnotation.containerType]: 'sandbox',
      [CriAnnotation.sandboxNamespace]: 'shop',
      [CriAnnotation.sandboxName]: 'web-7d9f-abcde',
      [CriAnnotation.sandboxUid]: 'uid',
      [CriAnnotation.sandboxId]: 'b'.repeat(64),
    };
    expect(identityFromAnnotations(sandbox)).toEqual({
      kind: 'sandbox',
      podNamespace: 'shop',
      podName: 'web-7d9f-abcde',
      podUid: 'uid',
      sandboxId: 'b'.repeat(64),
    });
  });

  it('is unknown without CRI annotations, or with an odd type', () => {
    expect(identityFromAnnotations()).toEqual({ kind: 'unknown' });
    expect(identityFromAnnotations({})).toEqual({ kind: 'unknown' });
    expect(identityFromAnnotations({ [CriAnnotation.containerType]: 'podsandbox' })).toEqual({
      kind: 'unknown',
    });
  });

  it('leaves out empty, huge and prototype-shadowing values', () => {
    const odd = JSON.parse(
      JSON.stringify({
        [CriAnnotation.containerType]: 'container',
        [CriAnnotation.containerName]: '',
        [CriAnnotation.imageName]: 'x'.repeat(5000),
      }),
    ) as Record<string, string>;
    expect(identityFromAnnotations(odd)).toEqual({ kind: 'container' });
    // An own key named like a prototype member is just a key; a missing one never reads the prototype.
    expect(identityFromAnnotations(JSON.parse('{"__proto__":"x"}') as Record<string, string>)).toEqual({
      kind: 'unknown',
    });
  });
});

describe('bashCandidates', () => {
  it('adds <dir>/bash for the absolute PATH directories, deduplicated, after the defaults', () => {
    expect(
      bashCandidates(['HOME=/root', 'PATH=/usr/local/sbin:/usr/local/bin:/bin/:.::opt/bin:/usr//bin:/bin']),
    ).toEqual([...DEFAULT_BASH_CANDIDATES, '/usr/local/sbin/bash']);
    expect(bashCandidates(['PATH=/opt/tools/bin'])).toEqual([
      ...DEFAULT_BASH_CANDIDATES,
      '/opt/tools/bin/bash',
    ]);
  });

  it('is the defaults without a PATH', () => {
    expect(bashCandidates()).toEqual([...DEFAULT_BASH_CANDIDATES]);
    expect(bashCandidates(['TERM=xterm', 'MYPATH=/opt'])).toEqual([...DEFAULT_BASH_CANDIDATES]);
  });

  it('takes every PATH= entry, and at most MAX_PATH_DIRS directories', () => {
    expect(bashCandidates(['PATH=/a', 'PATH=/b'])).toEqual([
      ...DEFAULT_BASH_CANDIDATES,
      '/a/bash',
      '/b/bash',
    ]);
    const many = Array.from({ length: 500 }, (_, i) => `/d${i}`).join(':');
    expect(bashCandidates([`PATH=${many}`])).toHaveLength(DEFAULT_BASH_CANDIDATES.length + MAX_PATH_DIRS);
  });
});

describe('readBundle', () => {
  let dir: string;
  let n = 0;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'ca-bundle-test-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function bundle(config?: string | object): string {
    const path = join(dir, `b${++n}`);
    mkdirSync(path);
    if (config !== undefined)
      writeFileSync(join(path, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    return path;
  }

  const good = {
    ociVersion: '1.0.2-dev',
    process: { args: ['sleep', '300'], env: ['PATH=/usr/sbin:/usr/bin', 'TERM=xterm'], cwd: '/' },
    root: { path: 'rootfs', readonly: true },
    annotations: { [CriAnnotation.containerType]: 'container', [CriAnnotation.containerName]: 'app' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/proc/1/ns/net' }] },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
  };

  it('reads a spec, with a relative root.path resolved against the bundle', async () => {
    const b = bundle(good);
    const result = await readBundle(b);
    if (!result.ok) throw new Error(result.detail);
    expect(result.rootfs).toBe(join(b, 'rootfs'));
    expect(result.config.process?.args).toEqual(['sleep', '300']);
    expect(result.config.annotations?.[CriAnnotation.containerName]).toBe('app');
    expect(result.config.linux?.namespaces?.map((ns) => ns.type)).toEqual(['pid', 'mount', 'network']);
    // Loose: fields outside the schema survive untouched.
    expect((result.config as Record<string, unknown>).ociVersion).toBe('1.0.2-dev');
  });

  it('keeps an absolute root.path, normalized', async () => {
    const result = await readBundle(bundle({ ...good, root: { path: '/var/lib/x//rootfs/' } }));
    expect(result).toMatchObject({ ok: true, rootfs: '/var/lib/x/rootfs' });
    const relative = await readBundle(bundle({ ...good, root: { path: './a/../rootfs' } }));
    expect(relative).toMatchObject({ ok: true, rootfs: join(dir, `b${n}`, 'rootfs') });
  });

  it('refuses bad JSON, a spec without a root, and wrong types', async () => {
    expect(await readBundle(bundle('{"root": '))).toMatchObject({ ok: false, reason: 'not-json' });
    expect(await readBundle(bundle({ process: { args: ['x'] } }))).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
    expect(await readBundle(bundle({ ...good, annotations: { a: 1 } }))).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
    expect(await readBundle(bundle({ ...good, root: { path: 'a\0b' } }))).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
  });

  it('refuses an oversized config.json unread', async () => {
    const big = JSON.stringify({ ...good, padding: 'x'.repeat(MAX_CONFIG_BYTES) });
    expect(await readBundle(bundle(big))).toMatchObject({ ok: false, reason: 'oversized' });
  });

  it('reports a missing config.json', async () => {
    expect(await readBundle(bundle())).toMatchObject({ ok: false, reason: 'unreadable' });
    expect(await readBundle(join(dir, 'nowhere'))).toMatchObject({ ok: false, reason: 'unreadable' });
  });

  it('refuses a symlinked config.json, even to a good one', async () => {
    const target = bundle(good);
    const b = bundle();
    symlinkSync(join(target, 'config.json'), join(b, 'config.json'));
    expect(await readBundle(b)).toMatchObject({ ok: false, reason: 'not-regular-file' });
  });

  it('refuses a FIFO named config.json without blocking on it', async () => {
    const b = bundle();
    execFileSync('mkfifo', [join(b, 'config.json')]);
    expect(await readBundle(b)).toMatchObject({ ok: false, reason: 'not-regular-file' });
  });

  it('refuses a directory named config.json', async () => {
    const b = bundle();
    mkdirSync(join(b, 'config.json'));
    expect(await readBundle(b)).toMatchObject({ ok: false, reason: 'not-regular-file' });
  });
});
