import { chmod, mkdtemp, mkdir, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import type { Handoff } from '../../api/handoff/v1.js';
import { silentLogger } from '../../common/logging.js';
import { ACK_DIR, DROPPED_FILE, HEARTBEAT_FILE, HandoffSpool } from './spool.js';

const handoff = (verb: string, id: string) =>
  JSON.stringify({
    version: 1,
    verb,
    time: '2026-11-29T01:45:59.992699033Z',
    id,
    root: '/run/runc',
    bundle: verb === 'create' ? `/run/bundles/${id}` : null,
    pid: verb === 'delete' ? null : 4242,
    exitCode: 0,
    wrapperPid: 4241,
  });

let dir: string;
let spool: HandoffSpool;

beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'spool-test-')), 'handoff');
  spool = new HandoffSpool({ dir, logger: silentLogger() });
  await spool.prepare();
});
afterEach(async () => {
  await rm(join(dir, '..'), { recursive: true, force: true });
});

async function drainAll(): Promise<Handoff[]> {
  const seen: Handoff[] = [];
  await spool.drain(async (h) => {
    seen.push(h);
    await Promise.resolve();
  });
  return seen;
}

describe('HandoffSpool', () => {
  it('creates the spool and the ack dir owner-only', async () => {
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, ACK_DIR))).mode & 0o777).toBe(0o700);
  });

  it('hands over hand-offs in the order they were written, then removes them', async () => {
    await writeFile(join(dir, '1795916763376793395-12-delete.json'), handoff('delete', 'c1'));
    await writeFile(join(dir, '1795916759992987117-10-create.json'), handoff('create', 'c1'));
    await writeFile(join(dir, '.tmp-1795916763376793396-13-create'), 'half-written');
    const seen = await drainAll();
    expect(seen.map((h) => `${h.verb} ${h.id}`)).toEqual(['create c1', 'delete c1']);
    expect(await readdir(dir)).toEqual(
      expect.arrayContaining([ACK_DIR, '.tmp-1795916763376793396-13-create']),
    );
    expect(spool.stats).toEqual({ accepted: 2, rejected: {} });
  });

  it('keeps a hand-off whose consumer failed, so it is replayed rather than lost', async () => {
    await writeFile(join(dir, '1795916759992987117-10-create.json'), handoff('create', 'c1'));
    await expect(spool.drain(() => Promise.reject(new Error('queue full')))).rejects.toThrow('queue full');
    expect((await drainAll()).map((h) => h.id)).toEqual(['c1']);
  });

  it('refuses, counts and removes hostile files without following symlinks', async () => {
    const outside = join(dir, '..', 'secret.json');
    await writeFile(outside, handoff('create', 'planted'));
    await symlink(outside, join(dir, '1795916759992987117-10-create.json'));
    await writeFile(join(dir, '1795916759992987118-11-create.json'), '{"version":1,');
    await writeFile(join(dir, '1795916759992987119-12-create.json'), handoff('create', 'a/b'));
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await mkdir(join(dir, '1795916759992987120-13-exec.json'));

    expect(await drainAll()).toEqual([]);
    expect(spool.stats.rejected).toEqual({
      'not-regular-file': 2,
      'not-json': 1,
      invalid: 1,
      'unexpected-name': 1,
    });
    expect((await stat(outside)).isFile()).toBe(true); // the symlink's target is untouched
  });

  it('keeps a heartbeat fresh and acknowledges containers by id', async () => {
    const past = new Date(Date.now() - 60_000);
    await spool.heartbeat(past);
    expect((await stat(join(dir, HEARTBEAT_FILE))).mtimeMs).toBeCloseTo(past.getTime(), -3);
    const now = new Date();
    await spool.heartbeat(now);
    expect((await stat(join(dir, HEARTBEAT_FILE))).mtimeMs).toBeCloseTo(now.getTime(), -3);

    await spool.acknowledge('c1');
    expect(await readdir(join(dir, ACK_DIR))).toEqual(['c1']);
    await spool.release('c1');
    expect(await readdir(join(dir, ACK_DIR))).toEqual([]);
    await expect(spool.acknowledge('../escape')).rejects.toThrow('not a container id');
  });

  it("reads the wrapper's drop counter, and leaves it in place", async () => {
    expect(await spool.droppedByWrapper()).toBe(0); // no counter: nothing dropped
    await writeFile(join(dir, DROPPED_FILE), '17\n');
    await writeFile(join(dir, '1795916759992987117-10-create.json'), handoff('create', 'c1'));
    expect((await drainAll()).map((h) => h.id)).toEqual(['c1']);
    expect(spool.stats).toEqual({ accepted: 1, rejected: {} }); // not taken for a hand-off
    expect(await readdir(dir)).toContain(DROPPED_FILE);
    expect(await spool.droppedByWrapper()).toBe(17);
    await writeFile(join(dir, DROPPED_FILE), '9007199254740991\n');
    expect(await spool.droppedByWrapper()).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of ['', 'x\n', '-1\n', '017\n', '9007199254740992\n', '1'.repeat(40)]) {
      await writeFile(join(dir, DROPPED_FILE), bad);
      expect(await spool.droppedByWrapper()).toBeUndefined();
    }
    await rm(join(dir, DROPPED_FILE));
    await symlink(join(dir, '..', 'elsewhere'), join(dir, DROPPED_FILE));
    expect(await spool.droppedByWrapper()).toBeUndefined();
  });

  it('logs of a refused hand-off only a short escaped excerpt of what it held', async () => {
    const lines: string[] = [];
    const logger = winston.createLogger({
      format: winston.format.json(),
      transports: [
        new winston.transports.Stream({
          stream: new Writable({
            write(chunk: Buffer, _encoding, done) {
              lines.push(chunk.toString());
              done();
            },
          }),
        }),
      ],
    });
    const logged = new HandoffSpool({ dir, logger });
    // JSON.parse quotes the text around what it could not parse: here, what an exec's args could carry.
    const forged = `{"version": 1, "x": \u202e\x1b[2J${'A'.repeat(5000)}`;
    await writeFile(join(dir, '1795916759992987117-10-exec.json'), forged);
    await logged.drain(() => Promise.resolve());
    expect(logged.stats.rejected).toEqual({ 'not-json': 1 });
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as { detail: string; message: string };
    expect(entry.message).toBe('Refused a hand-off');
    expect(entry.detail.length).toBeLessThanOrEqual(200);
    expect(entry.detail.includes('\u202e') || entry.detail.includes('\x1b')).toBe(false);
    expect(lines[0]!.length).toBeLessThan(600);
  });

  it('refuses a spool that is a symlink, and tightens a loose mode', async () => {
    const link = join(dir, '..', 'link');
    await symlink(dir, link);
    await expect(new HandoffSpool({ dir: link, logger: silentLogger() }).prepare()).rejects.toThrow(
      'not a directory',
    );
    await chmod(dir, 0o777);
    await spool.prepare();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });
});
