/**
 * Resolving readline targets in real root filesystems built from Debian's files: the host's bash (which
 * exports readline), a small program linked against libreadline standing in for an Alpine-style bash,
 * busybox-static posing as bash, and roots whose symlinks try to leave the root.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BUSYBOX, buildRootfs, sharedLibraries } from '../../e2e/support/rootfs.js';
import { type ReadlineTarget, resolveInRoot, resolveReadlineTargets } from './resolve.js';

let dir: string;
let withReadline: string; // a program linked against libreadline, built once

function newRoot(name: string, bash = true): string {
  const root = join(dir, name);
  buildRootfs(root, { bash });
  return root;
}

function copyInto(root: string, file: string, as = file): void {
  mkdirSync(dirname(join(root, as)), { recursive: true });
  copyFileSync(realpathSync(file), join(root, as));
}

/** A root whose /bin/bash is the libreadline-linked program, with its libraries (ldd) copied in. */
function readlineProgramRoot(name: string): string {
  const root = newRoot(name, false);
  copyInto(root, withReadline, '/bin/bash');
  for (const lib of sharedLibraries(withReadline)) copyInto(root, lib);
  return root;
}

function inode(path: string) {
  const info = statSync(path, { bigint: true });
  return { dev: info.dev, ino: info.ino };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'readline-targets-'));
  const source = join(dir, 'prog.c');
  writeFileSync(
    source,
    [
      '#include <stdio.h>',
      '#include <stdlib.h>',
      '#include <readline/readline.h>',
      'int main(void) { char *line = readline("> "); free(line); return 0; }',
      '',
    ].join('\n'),
  );
  withReadline = join(dir, 'prog');
  execFileSync('gcc', ['-o', withReadline, source, '-lreadline']);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('resolveReadlineTargets', () => {
  it("targets the root's own bash when bash exports readline (Debian)", async () => {
    const root = newRoot('debian');
    const results = await resolveReadlineTargets(root);
    expect(results).toEqual([
      {
        kind: 'target',
        bash: '/bin/bash',
        file: join(root, 'bin/bash'),
        via: 'bash',
        ...inode(join(root, 'bin/bash')),
      },
    ]);
  });

  it('gives one target for /bin/bash and /usr/bin/bash that are the same file', async () => {
    const root = newRoot('merged-usr');
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    symlinkSync('/bin/bash', join(root, 'usr/bin/bash'));
    // An extra candidate reaching the same file through a relative link and `..` counts once too.
    mkdirSync(join(root, 'opt/bin'), { recursive: true });
    symlinkSync('../../usr/bin/bash', join(root, 'opt/bin/bash'));
    const results = await resolveReadlineTargets(root, ['/opt/bin/bash']);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ kind: 'target', bash: '/bin/bash', file: join(root, 'bin/bash') });
  });

  it('keeps symlinks that point outside the root inside it', async () => {
    const root = newRoot('escape', false);
    const hostBash = realpathSync('/bin/bash');
    copyInto(root, hostBash, '/bin/bash.real');
    // Followed on the host, each of these would reach the host's files (its bash, pid 1's root).
    symlinkSync('/etc/../../../../../../bin/bash.real', join(root, 'bin/bash'));
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    symlinkSync('/proc/1/root/bin/bash', join(root, 'usr/bin/bash'));
    mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
    symlinkSync(`../../../../../../../../..${hostBash}`, join(root, 'usr/local/bin/bash'));
    expect(await resolveInRoot(root, '/bin/bash')).toEqual({ ok: true, path: '/bin/bash.real' });
    expect(await resolveInRoot(root, '/../../..//./etc/../bin')).toEqual({ ok: true, path: '/bin' });
    expect(await resolveInRoot(root, '/usr/bin/bash')).toMatchObject({ ok: false, missing: true });
    // /usr/local/bin/bash -> (root)/usr/bin/bash -> (root)/proc/1/root/bin/bash: missing, so skipped.
    expect(await resolveInRoot(root, '/usr/local/bin/bash')).toMatchObject({ ok: false, missing: true });
    const results = await resolveReadlineTargets(root);
    expect(results).toEqual([
      expect.objectContaining({ kind: 'target', bash: '/bin/bash', file: join(root, 'bin/bash.real') }),
    ]);
    const host = inode(hostBash);
    const target = results[0] as ReadlineTarget;
    expect(target.ino).not.toBe(host.ino);
  });

  it('reports a symlink loop as a coverage gap, not a hang', async () => {
    const root = newRoot('loop', false);
    symlinkSync('/bin/bash', join(root, 'bin/bash'));
    expect(await resolveReadlineTargets(root)).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: expect.stringContaining('too many symbolic links') as string,
      },
    ]);
  });

  it('targets libreadline when bash needs it (Alpine-style)', async () => {
    const root = readlineProgramRoot('alpine-style');
    const lib = join(root, '/lib/x86_64-linux-gnu/libreadline.so.8');
    const results = await resolveReadlineTargets(root);
    expect(results).toEqual([
      { kind: 'target', bash: '/bin/bash', file: lib, via: 'libreadline', ...inode(lib) },
    ]);
  });

  it('finds libreadline through /etc/ld.so.conf includes', async () => {
    const root = readlineProgramRoot('ld-so-conf');
    mkdirSync(join(root, 'opt/rl'), { recursive: true });
    execFileSync('mv', [join(root, 'lib/x86_64-linux-gnu/libreadline.so.8'), join(root, 'opt/rl/')]);
    mkdirSync(join(root, 'etc/ld.so.conf.d'), { recursive: true });
    writeFileSync(join(root, 'etc/ld.so.conf'), 'include /etc/ld.so.conf.d/*.conf\n');
    writeFileSync(join(root, 'etc/ld.so.conf.d/rl.conf'), '# readline lives here\n/opt/rl\n');
    expect(await resolveReadlineTargets(root)).toEqual([
      expect.objectContaining({
        kind: 'target',
        via: 'libreadline',
        file: join(root, 'opt/rl/libreadline.so.8'),
      }),
    ]);
  });

  it('reports busybox-static posing as bash as a coverage gap', async () => {
    const root = newRoot('static', false);
    copyInto(root, BUSYBOX, '/bin/bash');
    expect(await resolveReadlineTargets(root)).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: '/bin/bash is a static bash without a dynamic readline symbol',
      },
    ]);
  });

  it('reports a missing libreadline by name', async () => {
    const root = readlineProgramRoot('no-libreadline');
    unlinkSync(join(root, 'lib/x86_64-linux-gnu/libreadline.so.8'));
    expect(await resolveReadlineTargets(root)).toEqual([
      {
        kind: 'coverage',
        bash: '/bin/bash',
        reason: "/bin/bash needs libreadline.so.8 but it is not in the container's library path",
      },
    ]);
  });

  it('reports what is not an ELF file or not a regular file', async () => {
    const root = newRoot('not-elf', false);
    writeFileSync(join(root, 'bin/bash'), `#!/bin/sh\n${'# a shell script, not an ELF file\n'.repeat(4)}`);
    mkdirSync(join(root, 'usr/bin/bash'), { recursive: true });
    execFileSync('mkfifo', [join(root, 'fifo')]);
    mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
    symlinkSync('/fifo', join(root, 'usr/local/bin/bash'));
    expect(await resolveReadlineTargets(root)).toEqual([
      { kind: 'coverage', bash: '/bin/bash', reason: '/bin/bash: not an ELF file (bad magic)' },
      { kind: 'coverage', bash: '/usr/bin/bash', reason: '/usr/bin/bash is not a regular file' },
      { kind: 'coverage', bash: '/usr/local/bin/bash', reason: '/fifo is not a regular file' },
    ]);
  });
});
