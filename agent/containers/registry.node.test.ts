/**
 * ContainerRegistry against a directory shaped like /proc (every rule, fast), then fed by the real runc
 * wrapper under a private containerd (e2e/support/containerd.ts): the mount namespace a container's
 * processes are in finds the container, and nothing else does.
 *
 * Node tier: root, Debian's containerd, runc and busybox-static, gcc (the wrapper is built if out of date).
 */
import { execFileSync } from 'node:child_process';
import {
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Handoff } from '../../api/handoff/v1.js';
import { silentLogger } from '../../common/logging.js';
import {
  Containerd,
  type CommandResult,
  unmountUnder,
  writeWrapperRuntimeScript,
} from '../../e2e/support/containerd.js';
import { buildRootfs } from '../../e2e/support/rootfs.js';
import { HandoffSpool } from '../handoff/spool.js';
import { CriAnnotation } from './bundle.js';
import { ContainerRegistry, type HandoffOutcome } from './registry.js';

const WRAPPER_DIR = join(import.meta.dirname, '..', '..', 'runc-wrapper');
/** Per test: the node project's testTimeout does not reach the tests (see runc-wrapper's node test). */
const TEST_TIMEOUT = 90_000;

let scratch: string;
beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (containerd, runc, mounts)');
  scratch = mkdtempSync(join(tmpdir(), 'ca-registry-test-'));
});
afterAll(() => {
  if (scratch) {
    unmountUnder(scratch);
    rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);

function handoff(verb: Handoff['verb'], id: string, fields: Partial<Handoff> = {}): Handoff {
  return {
    version: 1,
    verb,
    time: new Date().toISOString(),
    id,
    root: '/run/runc',
    bundle: null,
    pid: null,
    exitCode: 0,
    wrapperPid: 4242,
    ...fields,
  };
}

describe('with a /proc of regular files', () => {
  // ns/mnt and ns/pid are plain files here: their inodes play the namespaces' (a hard link = the same one).
  let proc: string;
  let n = 0;
  const now = new Date('2025-01-02T03:04:05Z');
  let registry: ContainerRegistry;

  beforeEach(() => {
    proc = join(scratch, `proc${++n}`);
    for (const pid of ['self', '1']) mkdirSync(join(proc, pid, 'ns'), { recursive: true });
    writeFileSync(join(proc, 'self', 'ns', 'mnt'), '');
    writeFileSync(join(proc, '1', 'ns', 'mnt'), '');
    registry = new ContainerRegistry({ logger: silentLogger(), procRoot: proc, now: () => now });
  });

  /** A bundle with config.json and rootfs/; returns its path. */
  function bundle(name: string, config: object = {}): string {
    const path = join(scratch, `proc${n}-${name}`);
    mkdirSync(join(path, 'rootfs'), { recursive: true });
    const spec = {
      root: { path: 'rootfs' },
      process: { args: ['sleep', '1'], env: ['PATH=/opt/bin'] },
      ...config,
    };
    writeFileSync(join(path, 'config.json'), JSON.stringify(spec));
    return path;
  }

  /** A process: ns/mnt (new, or a hard link to `sameMntAs`'s), ns/pid, root -> `root`. */
  function processDir(pid: number, root: string, sameMntAs?: number | 'self' | '1'): number {
    mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
    const mnt = join(proc, String(pid), 'ns', 'mnt');
    if (sameMntAs === undefined) writeFileSync(mnt, '');
    else linkSync(join(proc, String(sameMntAs), 'ns', 'mnt'), mnt);
    writeFileSync(join(proc, String(pid), 'ns', 'pid'), '');
    symlinkSync(root, join(proc, String(pid), 'root'));
    return statSync(mnt).ino;
  }

  it('registers a container, finds it by mount namespace and id, and forgets it on delete', async () => {
    const b = bundle('c1', { annotations: { [CriAnnotation.containerType]: 'container' } });
    const mntns = processDir(100, join(b, 'rootfs'));
    expect(await registry.onHandoff(handoff('create', 'c1', { bundle: b, pid: 100 }))).toEqual({
      ok: true,
      action: 'registered',
    });
    const record = registry.byMntns(mntns);
    expect(record).toMatchObject({
      id: 'c1',
      bundle: b,
      rootfs: join(b, 'rootfs'),
      identity: { kind: 'container' },
      initPid: 100,
      mntns,
      pidns: statSync(join(proc, '100', 'ns', 'pid')).ino,
      createdAt: now,
      execs: [],
    });
    expect(record?.bashCandidates).toContain('/opt/bin/bash');
    expect(registry.byId('c1')).toBe(record);
    expect(registry.all()).toEqual([record]);
    // A replayed hand-off changes nothing.
    expect(await registry.onHandoff(handoff('create', 'c1', { bundle: b, pid: 100 }))).toMatchObject({
      action: 'unchanged',
    });

    processDir(101, join(b, 'rootfs'), 100);
    const exec = handoff('exec', 'c1', { pid: 101, process: { args: ['sh'] } });
    expect(await registry.onHandoff(exec)).toEqual({ ok: true, action: 'exec-recorded' });
    expect(await registry.onHandoff(exec)).toEqual({ ok: true, action: 'unchanged' });
    expect(record?.execs).toEqual([{ pid: 101, args: ['sh'], at: now }]);

    expect(await registry.onHandoff(handoff('delete', 'c1'))).toEqual({ ok: true, action: 'removed' });
    expect(await registry.onHandoff(handoff('delete', 'c1', { exitCode: 1 }))).toEqual({
      ok: true,
      action: 'absent',
    });
    expect(registry.byMntns(mntns)).toBeUndefined();
    expect(registry.all()).toEqual([]);
  });

  it("refuses a container in the agent's or pid 1's mount namespace", async () => {
    const b = bundle('host');
    processDir(200, join(b, 'rootfs'), 'self');
    processDir(201, join(b, 'rootfs'), '1');
    for (const pid of [200, 201])
      expect(await registry.onHandoff(handoff('run', `h${pid}`, { bundle: b, pid }))).toMatchObject({
        ok: false,
        reason: 'host-mount-namespace',
      });
    expect(registry.all()).toEqual([]);
  });

  it('refuses a gone process, a reused pid, and a bad bundle, without throwing', async () => {
    const b = bundle('gone');
    const outcomes: HandoffOutcome[] = [];
    outcomes.push(await registry.onHandoff(handoff('create', 'gone', { bundle: b, pid: 300 })));
    processDir(301, join(scratch, 'elsewhere-root-that-is-missing'));
    outcomes.push(await registry.onHandoff(handoff('create', 'reused', { bundle: b, pid: 301 })));
    processDir(302, scratch); // alive, but its root is another directory
    outcomes.push(await registry.onHandoff(handoff('create', 'other-root', { bundle: b, pid: 302 })));
    const bad = bundle('bad');
    writeFileSync(join(bad, 'config.json'), '{');
    outcomes.push(await registry.onHandoff(handoff('create', 'bad', { bundle: bad, pid: 302 })));
    outcomes.push(
      await registry.onHandoff(handoff('create', 'none', { bundle: join(scratch, 'no-bundle'), pid: 302 })),
    );
    expect(outcomes.map((o) => (o.ok ? o.action : o.reason))).toEqual([
      'process-gone',
      'process-gone',
      'root-mismatch',
      'bundle-not-json',
      'bundle-unreadable',
    ]);
    expect(registry.all()).toEqual([]);
  });

  it('ignores failed runc calls, and checks where an exec landed', async () => {
    const b = bundle('x');
    processDir(400, join(b, 'rootfs'));
    expect(await registry.onHandoff(handoff('create', 'x', { bundle: b, pid: 400, exitCode: 1 }))).toEqual({
      ok: true,
      action: 'ignored',
    });
    expect(await registry.onHandoff(handoff('exec', 'x', { pid: 400 }))).toMatchObject({
      ok: false,
      reason: 'unknown-container',
    });
    await registry.onHandoff(handoff('create', 'x', { bundle: b, pid: 400 }));
    processDir(401, join(b, 'rootfs')); // a mount namespace of its own
    expect(await registry.onHandoff(handoff('exec', 'x', { pid: 401 }))).toMatchObject({
      ok: false,
      reason: 'exec-mount-namespace-mismatch',
    });
    expect(await registry.onHandoff(handoff('exec', 'x', { pid: 402 }))).toMatchObject({
      ok: false,
      reason: 'process-gone',
    });
  });

  it('keeps a container whose delete failed while its init lives, and forgets it once gone', async () => {
    const b = bundle('keep');
    processDir(500, join(b, 'rootfs'));
    await registry.onHandoff(handoff('create', 'keep', { bundle: b, pid: 500 }));
    expect(await registry.onHandoff(handoff('delete', 'keep', { exitCode: 1 }))).toEqual({
      ok: true,
      action: 'kept',
    });
    rmSync(join(proc, '500'), { recursive: true });
    expect(await registry.onHandoff(handoff('delete', 'keep', { exitCode: 1 }))).toEqual({
      ok: true,
      action: 'removed',
    });
  });

  it('hands a mount namespace over from a container whose delete was lost, not from a live one', async () => {
    const a = bundle('a');
    const mntns = processDir(600, join(a, 'rootfs'));
    await registry.onHandoff(handoff('create', 'a', { bundle: a, pid: 600 }));
    const b = bundle('b');
    processDir(601, join(b, 'rootfs'), 600);
    expect(await registry.onHandoff(handoff('create', 'b', { bundle: b, pid: 601 }))).toMatchObject({
      ok: false,
      reason: 'mount-namespace-taken',
    });
    rmSync(join(proc, '600'), { recursive: true }); // a's init gone, its namespace inode now b's
    expect(await registry.onHandoff(handoff('create', 'b', { bundle: b, pid: 601 }))).toMatchObject({
      ok: true,
      action: 'registered',
    });
    expect(registry.byMntns(mntns)?.id).toBe('b');
    expect(registry.byId('a')).toBeUndefined();
  });
});

// ---- under containerd, with the wrapper as its runtime ----

describe('fed by the runc wrapper under containerd', () => {
  let containerd: Containerd;
  let rootfs: string;
  const namespace = `ca-${process.pid}-registry`;

  beforeAll(async () => {
    execFileSync('make', ['-s', '-C', WRAPPER_DIR, 'container-auditor-runc'], { stdio: 'inherit' });
    rootfs = join(scratch, 'rootfs');
    buildRootfs(rootfs);
    containerd = await Containerd.start();
  }, 60_000);

  afterAll(async () => {
    await containerd?.removeAll(namespace);
    await containerd?.stop();
  }, 60_000);

  function ok(result: CommandResult, what: string): CommandResult {
    if (result.code !== 0)
      throw new Error(`${what} exited ${result.code}:\n${result.stdout}${result.stderr}`);
    return result;
  }

  async function taskLine(id: string): Promise<string | undefined> {
    const tasks = ok(await containerd.ctr(namespace, ['tasks', 'ls']), 'ctr tasks ls').stdout;
    return tasks.split('\n').find((l) => l.split(/\s+/)[0] === id);
  }

  const mntnsOf = (pid: number | 'self') => statSync(`/proc/${pid}/ns/mnt`).ino;

  it(
    'finds a container and its exec by mount namespace, nothing for the host, and nothing after delete',
    async () => {
      const dir = join(scratch, 'wrapped');
      const spool = join(dir, 'spool');
      mkdirSync(join(spool, 'ack'), { recursive: true, mode: 0o700 });
      const runtime = join(dir, 'runtime.sh');
      writeWrapperRuntimeScript(runtime, { handoffDir: spool, dir });
      const id = 'sleeper';
      const bundle = containerd.bundleDir(namespace, id);
      const spoolReader = new HandoffSpool({
        dir: spool,
        logger: silentLogger(),
        bundleRoots: [dirname(bundle)],
      });
      await spoolReader.prepare();
      const registry = new ContainerRegistry({ logger: silentLogger() });
      const outcomes: [Handoff['verb'], HandoffOutcome][] = [];
      const drain = () =>
        spoolReader.drain(async (h) => void outcomes.push([h.verb, await registry.onHandoff(h)]));

      const annotations = {
        [CriAnnotation.containerType]: 'container',
        [CriAnnotation.sandboxNamespace]: 'shop',
        [CriAnnotation.sandboxName]: 'web-0',
        [CriAnnotation.containerName]: 'app',
      };
      ok(
        await containerd.run(namespace, {
          id,
          rootfs,
          detach: true,
          runcBinary: runtime,
          env: ['PATH=/bin:/opt/tools/bin'],
          flags: Object.entries(annotations).flatMap(([k, v]) => ['--annotation', `${k}=${v}`]),
          args: ['sleep', '300'],
        }),
        'ctr run',
      );
      ok(
        await containerd.exec(namespace, { id, execId: 'e1', detach: true, args: ['sleep', '301'] }),
        'ctr tasks exec',
      );
      await drain();
      expect(outcomes).toEqual([
        ['create', { ok: true, action: 'registered' }],
        ['exec', { ok: true, action: 'exec-recorded' }],
      ]);

      const initPid = Number((await taskLine(id))!.split(/\s+/)[1]);
      const record = registry.byMntns(mntnsOf(initPid));
      expect(record).toMatchObject({
        id,
        bundle,
        rootfs,
        initPid,
        pidns: statSync(`/proc/${initPid}/ns/pid`).ino,
        identity: { kind: 'container', podNamespace: 'shop', podName: 'web-0', containerName: 'app' },
      });
      expect(record?.bashCandidates).toContain('/opt/tools/bin/bash');
      expect(record?.mntns).not.toBe(mntnsOf('self'));

      // The exec'd process: really `sleep 301`, and its mount namespace finds the same container.
      const execPid = record!.execs[0]!.pid;
      expect(readFileSync(`/proc/${execPid}/cmdline`, 'utf8')).toBe('sleep\x00301\x00');
      expect(registry.byMntns(mntnsOf(execPid))).toBe(record);

      // Host processes: this one, and pid 1 where we may look (a VM's init may refuse even root: EACCES).
      expect(registry.byMntns(mntnsOf('self'))).toBeUndefined();
      let initMntns: number | undefined;
      try {
        initMntns = mntnsOf(1);
      } catch {
        // not ours to see; the registry skips it too
      }
      if (initMntns !== undefined) expect(registry.byMntns(initMntns)).toBeUndefined();

      ok(await containerd.ctr(namespace, ['tasks', 'kill', '--signal', 'SIGKILL', id]), 'ctr tasks kill');
      for (let i = 0; !(await taskLine(id))?.includes('STOPPED'); i++) {
        if (i > 500) throw new Error(`task ${id} did not stop`);
        await sleep(20);
      }
      ok(await containerd.ctr(namespace, ['tasks', 'delete', id]), 'ctr tasks delete');
      ok(await containerd.ctr(namespace, ['containers', 'delete', id]), 'ctr containers delete');
      outcomes.length = 0;
      await drain();
      const deletes = outcomes.filter(([verb]) => verb === 'delete').map(([, o]) => o);
      expect(deletes.length).toBeGreaterThanOrEqual(2);
      expect(deletes[0]).toEqual({ ok: true, action: 'removed' });
      for (const later of deletes.slice(1)) expect(later).toEqual({ ok: true, action: 'absent' });
      expect(registry.byId(id)).toBeUndefined();
      expect(registry.byMntns(record!.mntns)).toBeUndefined();
      expect(registry.all()).toEqual([]);
    },
    TEST_TIMEOUT,
  );
});
