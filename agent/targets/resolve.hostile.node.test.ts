/**
 * Target resolution and probe pinning against roots built to be hostile: an image whose library search is
 * made expensive (e2e/support/hostile-roots.ts), and a container that swaps a directory for a link to the
 * host's files after the agent checked the path.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildIncludeBomb, buildLdSoConfBomb } from '../../e2e/support/hostile-roots.js';
import { buildRootfs } from '../../e2e/support/rootfs.js';
import { buildRlshell } from '../../e2e/support/shells.js';
import { PinnedFiles } from './pin.js';
import { type ReadlineFactsCache, type ReadlineTarget, resolveReadlineTargets } from './resolve.js';
import { DEFAULT_RESOLVE_LIMITS, FileFactsCache } from './resolve-budget.js';

let dir: string;
let rlshell: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'resolve-hostile-'));
  rlshell = buildRlshell(join(dir, 'build'));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The bash candidates a PATH environment variable makes (as the bundle's env does). */
const candidatesOf = (path: string): string[] =>
  path
    .slice('PATH='.length)
    .split(':')
    .map((d) => `${d}/bash`);

describe('resolution of a hostile image', () => {
  it('passes over 256 directories of 64 MiB decoys for 64 bash candidates within its budget', async () => {
    const root = join(dir, 'ld-so-conf-bomb');
    const path = buildLdSoConfBomb(root, rlshell);
    const started = performance.now();
    // Measured before the budget and the header check: 53 s for one candidate, and each candidate again.
    const results = await resolveReadlineTargets(root, candidatesOf(path), { cache: new FileFactsCache() });
    const tookMs = performance.now() - started;
    expect(results).toEqual([
      expect.objectContaining({
        kind: 'target',
        bash: '/bin/bash',
        via: 'libreadline',
        file: join(root, 'lib/x86_64-linux-gnu/libreadline.so.8'),
      }),
    ]);
    expect(tookMs).toBeLessThan(DEFAULT_RESOLVE_LIMITS.deadlineMs);
  }, 30_000);

  it('reads a file it saw before (by identity) no more', async () => {
    const root = join(dir, 'cached');
    const path = buildLdSoConfBomb(root, rlshell, { dirs: 4, pathDirs: 4 });
    const cache: ReadlineFactsCache = new FileFactsCache();
    const once = await resolveReadlineTargets(root, candidatesOf(path), { cache });
    const misses = cache.stats.misses;
    // Every ELF file of the second pass (each candidate, each decoy, each library) is one seen before.
    const again = await resolveReadlineTargets(root, candidatesOf(path), { cache });
    expect(again).toEqual(once);
    expect(cache.stats.misses).toBe(misses);
    expect(cache.stats.hits).toBeGreaterThan(0);
  });

  it('gives up, as a coverage gap saying which limit, at the first limit reached', async () => {
    const root = join(dir, 'include-bomb');
    buildIncludeBomb(root, rlshell);
    // Default limits: listing the same 5000 entries over and over is more lookups than any image needs.
    expect(await resolveReadlineTargets(root, [], { cache: new FileFactsCache() })).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: expect.stringMatching(
          /^gave up looking for readline at \/bin\/bash: the search looked up more than 8192 paths/,
        ) as string,
      },
    ]);
    const small = join(dir, 'small-budget');
    buildRootfs(small, { bash: true });
    expect(
      await resolveReadlineTargets(small, [], {
        cache: new FileFactsCache(),
        limits: { ...DEFAULT_RESOLVE_LIMITS, maxBytes: 1024 },
      }),
    ).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: expect.stringContaining('would read more than 1024 bytes') as string,
      },
    ]);
    let now = 0;
    expect(
      await resolveReadlineTargets(small, [], {
        cache: new FileFactsCache(),
        now: () => (now += 600),
      }),
    ).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: expect.stringContaining('took longer than 1000 ms') as string,
      },
    ]);
  }, 60_000);

  it('quotes what the image controls only escaped and cut', async () => {
    const root = join(dir, 'odd-names');
    buildRootfs(root);
    const odd = `/opt/\u202e${'x'.repeat(200)}\x1b[31m/bash`;
    execFileSync('mkdir', ['-p', join(root, odd.slice(0, odd.lastIndexOf('/')))]);
    execFileSync('cp', ['/bin/busybox', join(root, odd)]);
    const [gap] = await resolveReadlineTargets(root, [odd], { cache: new FileFactsCache() });
    expect(gap).toMatchObject({ kind: 'coverage', bash: odd });
    const { reason } = gap as { reason: string };
    expect(reason.includes('\u202e') || reason.includes('\x1b')).toBe(false);
    expect(reason).toContain('\\u{202e}');
    expect(reason.length).toBeLessThan(250);
  });
});

describe('pinning a checked target', () => {
  it('refuses a target whose directory was swapped for a link into the host after the check', async () => {
    const root = join(dir, 'swap');
    buildRootfs(root, { bash: true });
    const [target] = (await resolveReadlineTargets(root, [], { cache: new FileFactsCache() })) as [
      ReadlineTarget,
    ];
    expect(target).toMatchObject({ kind: 'target', file: join(root, 'bin/bash') });
    // The container, racing the agent: /bin is now a link that the host's kernel follows to the host's bash.
    renameSync(join(root, 'bin'), join(root, 'bin.real'));
    symlinkSync(realpathSync('/bin'), join(root, 'bin'));
    expect(statSync(join(root, 'bin/bash')).ino).toBe(statSync('/bin/bash').ino);
    const pins = new PinnedFiles();
    const expected = { dev: target.dev, ino: target.ino, within: root };
    const outcome = await pins.pin(`${target.dev}:${target.ino}`, target.file, expected);
    expect(outcome).toEqual({
      ok: false,
      reason: expect.stringContaining('changed between its check and its probe') as string,
    });
    expect(pins.size).toBe(0);
    // Put back, the same file is pinned, and what bpftrace is given is the agent's open file.
    rmSync(join(root, 'bin'));
    renameSync(join(root, 'bin.real'), join(root, 'bin'));
    const pinned = await pins.pin(`${target.dev}:${target.ino}`, target.file, expected);
    expect(pinned).toEqual({ ok: true, probe: expect.stringMatching(/^\/proc\/\d+\/fd\/\d+$/) as string });
    const probe = (pinned as { probe: string }).probe;
    expect(statSync(probe, { bigint: true })).toMatchObject({ dev: target.dev, ino: target.ino });
    // Swapped again after the pin: the probe path still leads to the checked file, not the host's.
    renameSync(join(root, 'bin'), join(root, 'bin.real'));
    symlinkSync(realpathSync('/bin'), join(root, 'bin'));
    expect(statSync(probe, { bigint: true })).toMatchObject({ dev: target.dev, ino: target.ino });
    await pins.keepOnly(new Set());
    expect(pins.size).toBe(0);
  });
});
