import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRegularFile } from './files.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'files-test-'));
  writeFileSync(join(dir, 'small'), 'hello');
  writeFileSync(join(dir, 'big'), Buffer.alloc(101));
  symlinkSync(join(dir, 'small'), join(dir, 'link'));
  mkdirSync(join(dir, 'dir'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readRegularFile', () => {
  it('reads a regular file within the cap, with its identity', async () => {
    const read = await readRegularFile(join(dir, 'small'), 100);
    expect(read).toMatchObject({ ok: true, data: Buffer.from('hello') });
    expect(read.ok && read.ino > 0n).toBe(true);
  });

  it.each([
    ['a symlink', 'link', 'not-regular-file'],
    ['a directory', 'dir', 'not-regular-file'],
    ['a FIFO (without blocking)', 'fifo', 'not-regular-file'],
    ['a file over the cap', 'big', 'oversized'],
    ['a missing file', 'missing', 'unreadable'],
  ])('refuses %s', async (_name, file, reason) => {
    expect(await readRegularFile(join(dir, file), 100)).toMatchObject({ ok: false, reason });
  });
});
