/**
 * A flood of execs against the wrapper's spool (runc-wrapper/README.md, "The bound"). The spool lives in
 * /run, in memory: with the agent down or stuck, every `kubectl exec` used to leave a hand-off there, without
 * limit. Now, with no agent (no heartbeat, or a stale one) the wrapper writes nothing; with one, it writes at
 * most spool_max_files hand-offs and spool_max_bytes bytes; and every hand-off it does not write is counted
 * in <spool>/dropped, which the agent reads (HandoffSpool.droppedByWrapper). Either way the real runc runs
 * with the same result, and the wrapper waits for no acknowledgement that cannot come.
 *
 * Real runc, with a private --root and a running container, called the way containerd's shim calls it
 * (without containerd: runc-wrapper.node.test.ts covers that path). The bound is checked on a tmpfs spool
 * (where the wrapper counts entries with one fstat) and on the scratch directory's file system (where it
 * reads the directory), when that is not tmpfs too.
 *
 * Node tier: root, Debian's runc and busybox-static, gcc (the wrapper is built if out of date).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statfsSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseHandoff, type Handoff } from '../api/handoff/v1.js';
import { DROPPED_FILE, HEARTBEAT_FILE, HandoffSpool } from '../agent/handoff/spool.js';
import { RUNC, runCommand, type CommandResult } from '../e2e/support/containerd.js';
import { buildRootfs, writeBundle } from '../e2e/support/rootfs.js';
import { silentLogger } from '../common/logging.js';

const WRAPPER_DIR = import.meta.dirname;
const WRAPPER = join(WRAPPER_DIR, 'container-auditor-runc');
const TEST_TIMEOUT = 120_000;
/** Longer than any runc call here takes, far shorter than the ack timeout the tests set: a wrapper that
 * waited for an acknowledgement would take the whole ack timeout. */
const PROMPT_MS = 10_000;
const ACK_TIMEOUT_MS = 30_000;
const TMPFS_MAGIC = 0x01021994;
const HANDOFF_NAME = /^\d{19}-\d+-(create|run|exec|delete)\.json$/;
const SPOOL_OWN = new Set(['ack', HEARTBEAT_FILE, DROPPED_FILE]);

let scratch: string;
let root: string;
let bundle: string;
const CONTAINER = 'flood';
/** The exec the flood repeats: output on both streams, exit 0 (only a successful exec is handed off). */
const SCRIPT = ['sh', '-c', 'echo hi; echo ho >&2'];
let processFile: string;
let expected: CommandResult;

function writeProcess(path: string, args: string[]): void {
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { process: object };
  writeFileSync(path, JSON.stringify({ ...config.process, args, terminal: false }));
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (runc)');
  execFileSync('make', ['-s', '-C', WRAPPER_DIR, 'container-auditor-runc'], { stdio: 'inherit' });
  scratch = mkdtempSync(join(tmpdir(), 'ca-spool-flood-'));
  root = join(scratch, 'runc-root');
  bundle = join(scratch, 'bundle');
  buildRootfs(join(scratch, 'rootfs'));
  writeBundle(bundle, join(scratch, 'rootfs'), { args: ['sleep', '1000'] });
  processFile = join(scratch, 'process.json');
  writeProcess(processFile, SCRIPT);
  // The container's init keeps runc's stdio: no pipes, or spawnSync would wait for it.
  for (const verb of [['create', '--bundle', bundle], ['start']]) {
    const r = spawnSync(RUNC, ['--root', root, ...verb, CONTAINER], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`runc ${verb[0]} ${CONTAINER} failed`);
  }
  expected = await runCommand(RUNC, ['--root', root, 'exec', '--process', processFile, CONTAINER], {
    timeoutMs: 30_000,
  });
  expect(expected).toEqual({ code: 0, stdout: 'hi\n', stderr: 'ho\n' });
}, 60_000);

afterAll(() => {
  if (!scratch) return;
  const list = spawnSync(RUNC, ['--root', root, 'list', '-q'], { encoding: 'utf8' });
  for (const id of (list.stdout ?? '').split('\n').filter(Boolean))
    spawnSync(RUNC, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' });
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

// ---- a spool, the wrapper's settings, and what the flood left ----

interface Spool {
  dir: string;
  log: string;
  env: NodeJS.ProcessEnv;
  /** The agent's spool module, for the heartbeat and the drop counter. */
  agent: HandoffSpool;
}

const timers: NodeJS.Timeout[] = [];
const made: string[] = [];
afterEach(() => {
  for (const t of timers.splice(0)) clearInterval(t);
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

let spools = 0;
function spool(parent: string, settings: Record<string, string>): Spool {
  const base = mkdtempSync(join(parent, `ca-spool-${++spools}-`));
  made.push(base);
  const dir = join(base, 'spool');
  // As the agent makes it: root's, 0700, with ack/.
  mkdirSync(dir, { mode: 0o700 });
  mkdirSync(join(dir, 'ack'), { mode: 0o700 });
  const log = join(base, 'wrapper.log');
  const env = {
    ...process.env,
    CONTAINER_AUDITOR_RUNC: RUNC,
    CONTAINER_AUDITOR_HANDOFF_DIR: dir,
    CONTAINER_AUDITOR_WRAPPER_LOG: log,
    CONTAINER_AUDITOR_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS),
    CONTAINER_AUDITOR_RUNC_CONFIG: join(base, 'no-config-file'), // never the host's
    ...settings,
  };
  return { dir, log, env, agent: new HandoffSpool({ dir, logger: silentLogger() }) };
}

/** An agent that beats (every 200 ms) but neither consumes hand-offs nor acknowledges: a stuck agent. */
async function heartbeat(s: Spool): Promise<void> {
  await s.agent.heartbeat();
  timers.push(setInterval(() => void s.agent.heartbeat(), 200));
}

/** The hand-offs in the spool, each checked; anything else there (a .tmp- left behind) fails the test,
 * except the `planted` files. */
/** The heartbeat of an agent gone ten minutes ago. */
function staleHeartbeat(s: Spool): void {
  const path = join(s.dir, HEARTBEAT_FILE);
  writeFileSync(path, '');
  const old = Date.now() / 1000 - 600;
  utimesSync(path, old, old);
}

function handoffs(s: Spool, planted: string[] = []): { name: string; bytes: number; handoff: Handoff }[] {
  const names = readdirSync(s.dir).filter((n) => !SPOOL_OWN.has(n) && !planted.includes(n));
  const strays = names.filter((n) => !HANDOFF_NAME.test(n));
  expect(strays).toEqual([]);
  return names.sort().map((name) => {
    const text = readFileSync(join(s.dir, name), 'utf8');
    const parsed = parseHandoff(text);
    if (!parsed.ok) throw new Error(`${name}: ${parsed.reason}: ${parsed.detail}`);
    return { name, bytes: Buffer.byteLength(text), handoff: parsed.handoff };
  });
}

function wrapperLog(s: Spool): string[] {
  return existsSync(s.log) ? readFileSync(s.log, 'utf8').split('\n').filter(Boolean) : [];
}

/** Log lines for `dropped` drops: the 1st, 2nd, 4th, ... only. */
const logLinesFor = (dropped: number): number => (dropped === 0 ? 0 : Math.floor(Math.log2(dropped)) + 1);

// ---- runc calls through the wrapper ----

interface Timed extends CommandResult {
  ms: number;
}

let calls = 0;
async function wrappedExec(s: Spool, process = processFile): Promise<Timed> {
  const started = Date.now();
  const pidFile = join(scratch, `exec-${++calls}.pid`);
  const args = ['--root', root, 'exec', '--process', process, '--pid-file', pidFile, CONTAINER];
  const r = await runCommand(WRAPPER, args, { env: s.env, timeoutMs: 2 * ACK_TIMEOUT_MS });
  rmSync(pidFile, { force: true });
  return { ...r, ms: Date.now() - started };
}

/** create (the container's init keeps the stdio: none given) and delete --force of a new container. */
function wrappedCreateDelete(s: Spool, id: string): { create: Timed; delete: Timed } {
  const run = (args: string[]): Timed => {
    const started = Date.now();
    const r = spawnSync(WRAPPER, ['--root', root, ...args], {
      env: s.env,
      stdio: 'ignore',
      timeout: 2 * ACK_TIMEOUT_MS,
    });
    return { code: r.status ?? -1, stdout: '', stderr: '', ms: Date.now() - started };
  };
  const pidFile = join(scratch, `${id}.pid`);
  const create = run(['create', '--bundle', bundle, '--pid-file', pidFile, id]);
  const state = spawnSync(RUNC, ['--root', root, 'state', id], { encoding: 'utf8' });
  expect(JSON.parse(state.stdout || '{}')).toMatchObject({ id, status: 'created' });
  return { create, delete: run(['delete', '--force', id]) };
}

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** N execs, `parallel` at a time: each must have run exactly as runc alone does, and promptly. */
async function flood(s: Spool, n: number, parallel: number, process?: string): Promise<void> {
  const results: Timed[] = [];
  await inParallel(
    Array.from({ length: n }, (_, k) => k),
    parallel,
    async () => void results.push(await wrappedExec(s, process)),
  );
  expect(results.map(({ code, stdout, stderr }) => ({ code, stdout, stderr }))).toEqual(
    results.map(() => expected),
  );
  expect(results.filter((r) => r.ms >= PROMPT_MS)).toEqual([]);
}

// ---- the tests ----

describe('no agent', () => {
  it.each([
    [
      'no heartbeat, in a spool made more than agent_absent_ms (here 1 s) ago',
      { CONTAINER_AUDITOR_AGENT_ABSENT_MS: '1000' },
      () => sleep(1200),
    ],
    ['a heartbeat ten minutes old (agent_absent_ms: the default, 2 minutes)', {}, staleHeartbeat],
  ])(
    '%s: a flood of execs writes no hand-off, counts every one, and runc runs as ever without waiting',
    async (_, settings, prepare) => {
      const s = spool(scratch, settings);
      await prepare(s);
      await flood(s, 12, 1);
      await flood(s, 24, 6);
      // create would wait for the agent's acknowledgement (30 s here) if it took the agent for alive
      const { create, delete: del } = wrappedCreateDelete(s, 'no-agent');
      expect([create.code, del.code]).toEqual([0, 0]);
      expect(create.ms).toBeLessThan(PROMPT_MS);

      expect(handoffs(s)).toEqual([]);
      const dropped = 12 + 24 + 2;
      expect(await s.agent.droppedByWrapper()).toBe(dropped);
      expect(readFileSync(join(s.dir, DROPPED_FILE), 'utf8')).toBe(`${dropped}\n`);
      const log = wrapperLog(s);
      expect(log).toHaveLength(logLinesFor(dropped));
      for (const line of log) expect(line).toMatch(/ no hand-off: the agent is absent: .* dropped so far/);
      expect(log[0]).toMatch(/\(1 dropped so far, counted in .*\/dropped\)$/);
    },
    TEST_TIMEOUT,
  );

  it(
    'an agent still starting (a spool made just now, no heartbeat yet): hand-offs are written, no wait',
    async () => {
      const s = spool(scratch, {}); // agent_absent_ms: the default, 2 minutes
      const { create, delete: del } = wrappedCreateDelete(s, 'early');
      expect([create.code, del.code]).toEqual([0, 0]);
      expect(create.ms).toBeLessThan(PROMPT_MS);
      await flood(s, 2, 1);
      expect(handoffs(s).map((h) => h.handoff.verb)).toEqual(['create', 'delete', 'exec', 'exec']);
      expect(await s.agent.droppedByWrapper()).toBe(0);
      expect(wrapperLog(s)).toEqual([]);
    },
    TEST_TIMEOUT,
  );
});

/** The bound on a tmpfs spool and, when it is another file system, on the scratch directory's. */
const PLACES: [string, string][] = [['a tmpfs spool (/dev/shm)', '/dev/shm']];
if (statfsSync(tmpdir()).type !== TMPFS_MAGIC) PLACES.push([`a spool on ${tmpdir()} (not tmpfs)`, tmpdir()]);

describe.each(PLACES)('an agent that beats but consumes nothing, %s', (_, parent) => {
  beforeAll(() => {
    if (parent === '/dev/shm') expect(statfsSync(parent).type).toBe(TMPFS_MAGIC);
  });

  it(
    'spool_max_files 5: at most 5 hand-offs, whatever the flood; the rest counted; runc runs as ever',
    async () => {
      const s = spool(parent, { CONTAINER_AUDITOR_SPOOL_MAX_FILES: '5' });
      await heartbeat(s);
      // Parallel from empty: wrappers race for the last places, and none may get past the bound.
      await flood(s, 16, 6);
      const raced = handoffs(s);
      const droppedAfterRace = (await s.agent.droppedByWrapper())!;
      expect(raced.length).toBeLessThanOrEqual(5);
      expect(raced.length).toBeGreaterThanOrEqual(1);
      expect(raced.length + droppedAfterRace).toBe(16); // each exec either handed off or counted
      for (const h of raced) expect(h.handoff).toMatchObject({ verb: 'exec', process: { args: SCRIPT } });

      // The agent consumes them; then one by one: exactly 5 fit, and the spool stays there.
      for (const h of raced) rmSync(join(s.dir, h.name));
      await flood(s, 8, 1);
      expect(handoffs(s)).toHaveLength(5);
      await flood(s, 24, 6);
      expect(handoffs(s)).toHaveLength(5);
      expect(await s.agent.droppedByWrapper()).toBe(droppedAfterRace + 3 + 24);

      // A create in a full spool: no hand-off, so no wait for an acknowledgement (30 s), although the agent
      // beats. Its delete is dropped as well.
      const { create, delete: del } = wrappedCreateDelete(s, 'full');
      expect([create.code, del.code]).toEqual([0, 0]);
      expect(create.ms).toBeLessThan(PROMPT_MS);
      // The bound lowered while the spool held more (hand-offs written under the old one): nothing more.
      for (let k = 0; k < 20; k++)
        writeFileSync(join(s.dir, `${1795916762729649108n + BigInt(k)}-1-exec.json`), '{}');
      await flood(s, 4, 2);
      expect(readdirSync(s.dir).filter((n) => HANDOFF_NAME.test(n))).toHaveLength(25);
      const dropped = droppedAfterRace + 3 + 24 + 2 + 4;
      expect(await s.agent.droppedByWrapper()).toBe(dropped);
      const log = wrapperLog(s);
      expect(log).toHaveLength(logLinesFor(dropped));
      for (const line of log)
        expect(line).toMatch(/ no hand-off: the spool is full: it holds spool_max_files \(5\) hand-offs \(/);
    },
    TEST_TIMEOUT,
  );

  it(
    'spool_max_bytes 4096: the hand-offs stay within 4096 bytes, the rest counted',
    async () => {
      const s = spool(parent, { CONTAINER_AUDITOR_SPOOL_MAX_BYTES: '4096' });
      await heartbeat(s);
      // about 1.2 KB per hand-off: three fit
      const big = join(scratch, 'process-big.json');
      writeProcess(big, [...SCRIPT, 'x'.repeat(1000)]);
      await flood(s, 14, 4, big);
      const written = handoffs(s);
      expect(written.length).toBeGreaterThanOrEqual(1);
      expect(written.reduce((sum, h) => sum + h.bytes, 0)).toBeLessThanOrEqual(4096);
      expect(written.length + (await s.agent.droppedByWrapper())!).toBe(14);
      // a small exec still fits where a big one does not, if there is room for it
      await flood(s, 1, 1);
      expect(handoffs(s).reduce((sum, h) => sum + h.bytes, 0)).toBeLessThanOrEqual(4096);
      expect(
        wrapperLog(s).every((l) =>
          /the spool is full: its hand-offs would exceed spool_max_bytes \(4096\)/.test(l),
        ),
      ).toBe(true);
    },
    TEST_TIMEOUT,
  );

  it(
    'hand-offs being written count; ones left by a killed wrapper do not fill the spool for ever',
    async () => {
      const s = spool(parent, { CONTAINER_AUDITOR_SPOOL_MAX_FILES: '5' });
      await heartbeat(s);
      const planted = Array.from({ length: 5 }, (_, k) => `.tmp-${1795916762801234567n + BigInt(k)}-1-exec`);
      const tmp = (k: number) => join(s.dir, planted[k]!);
      for (let k = 0; k < 5; k++) writeFileSync(tmp(k), '{"version":1,', { mode: 0o600 });
      await flood(s, 1, 1); // five writes in progress: the spool is full
      expect(handoffs(s, planted)).toEqual([]);
      expect(await s.agent.droppedByWrapper()).toBe(1);
      // Ten minutes later they are no one's. A wrapper that reads the spool removes them at once; on tmpfs,
      // where a spool over the bound is not read, the 65th drop does (the 1st, 65th, 129th, ... sweep).
      const old = Date.now() / 1000 - 600;
      for (let k = 0; k < 5; k++) utimesSync(tmp(k), old, old);
      await flood(s, 70, 4);
      expect(readdirSync(s.dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
      const written = handoffs(s).length;
      expect(written).toBeGreaterThanOrEqual(1);
      expect(written).toBeLessThanOrEqual(5);
      expect(written + (await s.agent.droppedByWrapper())!).toBe(71);
    },
    TEST_TIMEOUT,
  );
});

describe('the drop counter', () => {
  it(
    'replaces a symlink planted at its name, never writing through it',
    async () => {
      const s = spool(scratch, {});
      staleHeartbeat(s); // every exec is dropped, and counted
      const target = join(s.dir, '..', 'target');
      writeFileSync(target, 'precious\n');
      symlinkSync(target, join(s.dir, DROPPED_FILE));
      await flood(s, 3, 1);
      expect(readFileSync(target, 'utf8')).toBe('precious\n');
      expect(lstatSync(join(s.dir, DROPPED_FILE)).isFile()).toBe(true);
      // the planted link held no count: counting starts again from 0
      expect(await s.agent.droppedByWrapper()).toBe(3);
      expect((lstatSync(join(s.dir, DROPPED_FILE)).mode & 0o777).toString(8)).toBe('600');
    },
    TEST_TIMEOUT,
  );
});
