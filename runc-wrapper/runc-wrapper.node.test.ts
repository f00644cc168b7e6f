/**
 * container-auditor-runc as the runtime binary of a private containerd (e2e/support/containerd.ts), with the
 * real runc behind it: containerd and the containers see no difference, every create, exec and delete leaves
 * a complete hand-off in the spool, the wrapper fails open whatever state the spool is in, and a container's
 * first instruction waits for the agent's acknowledgement.
 *
 * The node agent does not run yet: TestAgent below plays its part of the spool protocol (heartbeat file,
 * acknowledgements in ack/). Hand-offs are validated with the agent's schema, api/handoff/v1.ts.
 *
 * Node tier: root, Debian's containerd, runc and busybox-static, gcc (the wrapper is built if out of date).
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseHandoff, type Handoff } from '../api/handoff/v1.js';
import {
  Containerd,
  CTR,
  RUNC,
  isAlive,
  runCommand,
  shellQuote,
  unmountUnder,
  writeRuncBinaryScript,
  type CommandResult,
} from '../e2e/support/containerd.js';
import { buildRootfs } from '../e2e/support/rootfs.js';
import { HandoffSpool } from '../agent/handoff/spool.js';
import { silentLogger } from '../common/logging.js';
import { until as waitFor } from '../e2e/support/wait.js';

const WRAPPER_DIR = import.meta.dirname;
const WRAPPER = join(WRAPPER_DIR, 'container-auditor-runc');

/** A command whose result (output on both streams, exit code) must not depend on the runtime binary. */
const SCRIPT = ['sh', '-c', 'echo hi; echo ho >&2; exit 3'];
const SCRIPT_RESULT: CommandResult = { code: 3, stdout: 'hi\n', stderr: 'ho\n' };
/** Words of the wrapper's own messages: none may reach what containerd or ctr print. */
const OUR_WORDS = /hand-off|spool|acknowledg|container-auditor/i;
/** Per test: the node project's testTimeout in jest.config.js does not reach the tests (Jest takes it from
 * the global configuration only), so they would get Jest's default of 5 s. */
const TEST_TIMEOUT = 60_000;
const TIMEOUT_LINE = /agent did not acknowledge within \d+ ms; starting the container anyway/;

let containerd: Containerd;
let scratch: string;
/** One rootfs shared by every container here (see e2e/support/containerd.ts on sharing). */
let rootfs: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the node tier runs as root (containerd, runc, mounts)');
  execFileSync('make', ['-s', '-C', WRAPPER_DIR, 'container-auditor-runc'], { stdio: 'inherit' });
  scratch = mkdtempSync(join(tmpdir(), 'ca-wrapper-test-'));
  rootfs = join(scratch, 'rootfs');
  buildRootfs(rootfs);
  containerd = await Containerd.start();
}, 60_000);

afterAll(async () => {
  await containerd?.stop();
  if (scratch) {
    unmountUnder(scratch);
    rmSync(scratch, { recursive: true, force: true });
  }
}, 60_000);

// ---- per-test set-up, undone after each test whatever happened ----

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.error('cleanup failed:', error);
    }
  }
}, 60_000);

interface Fixture {
  dir: string;
  /** The spool the wrapper is told about (CONTAINER_AUDITOR_HANDOFF_DIR). */
  spool: string;
  /** The wrapper's log file. */
  log: string;
  /** "<pid> <argv>" of every runtime invocation by the shim. */
  trace: string;
  /** The --runc-binary script: exports the settings and execs the wrapper (or runc). */
  runtime: string;
  namespace: string;
  /** The wrapper's settings, as the script exports them. */
  env: Record<string, string>;
}

interface FixtureOptions {
  ackTimeoutMs?: number;
  /** The wrapper's agent_absent_ms. 0 here (the absence check off: hand-offs are written with no heartbeat),
   * since these tests are about hand-offs; spool.hostile.node.test.ts tests the absence and the bound. */
  agentAbsentMs?: number;
  /** Exec the host's runc instead of the wrapper (still traced). */
  plainRunc?: boolean;
}

let fixtures = 0;
function fixture(options: FixtureOptions = {}): Fixture {
  const name = `t${++fixtures}`;
  const dir = join(scratch, name);
  mkdirSync(dir, { mode: 0o700 });
  const namespace = `ca-${process.pid}-${name}`;
  const spool = join(dir, 'spool');
  // A spool as the agent will make it: owned by root, mode 0700, with ack/.
  mkdirSync(spool, { mode: 0o700 });
  mkdirSync(join(spool, 'ack'), { mode: 0o700 });
  const f: Fixture = {
    dir,
    spool,
    log: join(dir, 'wrapper.log'),
    trace: join(dir, 'trace'),
    runtime: join(dir, 'runtime.sh'),
    namespace,
    env: {},
  };
  f.env = {
    CONTAINER_AUDITOR_RUNC: RUNC,
    CONTAINER_AUDITOR_HANDOFF_DIR: spool,
    CONTAINER_AUDITOR_WRAPPER_LOG: f.log,
    CONTAINER_AUDITOR_ACK_TIMEOUT_MS: String(options.ackTimeoutMs ?? 2000),
    CONTAINER_AUDITOR_AGENT_STALE_MS: '5000',
    CONTAINER_AUDITOR_AGENT_ABSENT_MS: String(options.agentAbsentMs ?? 0),
    // Never the host's /etc/container-auditor/runc-wrapper.conf.
    CONTAINER_AUDITOR_RUNC_CONFIG: join(dir, 'no-config-file'),
  };
  writeRuncBinaryScript(f.runtime, { exec: options.plainRunc ? RUNC : WRAPPER, env: f.env, trace: f.trace });
  cleanups.push(() => {
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  cleanups.push(() => containerd.removeAll(namespace));
  return f;
}

function wrapperLog(f: Fixture): string {
  return existsSync(f.log) ? readFileSync(f.log, 'utf8') : '';
}

/** Output with the timestamps of runc's and ctr's log lines (time="...") blanked. */
function normalized(result: CommandResult): CommandResult {
  const blank = (s: string) => s.replace(/time="[^"]*"/g, 'time=""');
  return { code: result.code, stdout: blank(result.stdout), stderr: blank(result.stderr) };
}

/** `ctr run --rm` of SCRIPT with the fixture's runtime binary. */
function runScript(f: Fixture, id: string): Promise<CommandResult> {
  return containerd.run(f.namespace, { id, rootfs, args: SCRIPT, rm: true, runcBinary: f.runtime });
}

/** Fails the test unless a command succeeded. */
function ok(result: CommandResult, what: string): CommandResult {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stdout}${result.stderr}`);
  return result;
}

async function taskPid(f: Fixture, id: string): Promise<number> {
  const tasks = ok(await containerd.ctr(f.namespace, ['tasks', 'ls']), 'ctr tasks ls').stdout;
  const line = tasks.split('\n').find((l) => l.split(/\s+/)[0] === id);
  if (!line) throw new Error(`no task ${id} in:\n${tasks}`);
  return Number(line.split(/\s+/)[1]);
}

async function killAndDelete(f: Fixture, id: string): Promise<CommandResult[]> {
  const kill = await containerd.ctr(f.namespace, ['tasks', 'kill', '--signal', 'SIGKILL', id]);
  await waitFor(`task ${id} to stop`, async () => {
    const tasks = (await containerd.ctr(f.namespace, ['tasks', 'ls'])).stdout;
    return tasks.split('\n').some((l) => l.split(/\s+/)[0] === id && l.includes('STOPPED'));
  });
  const deleteTask = await containerd.ctr(f.namespace, ['tasks', 'delete', id]);
  const deleteContainer = await containerd.ctr(f.namespace, ['containers', 'delete', id]);
  return [kill, deleteTask, deleteContainer].map(normalized);
}

// ---- the spool, as the agent will read it ----

interface Entry {
  name: string;
  text: string;
  handoff: Handoff;
}

const HANDOFF_NAME = /^(\d{19})-(\d+)-(create|run|exec|delete)\.json$/;
const AGENT_FILES = new Set(['ack', 'agent.alive']);

function parseEntry(spool: string, name: string): Entry {
  const match = HANDOFF_NAME.exec(name);
  if (!match) throw new Error(`unexpected file in the spool: ${name}`);
  const path = join(spool, name);
  const st = lstatSync(path);
  if (!st.isFile() || (st.mode & 0o7777) !== 0o600) {
    throw new Error(`${name}: not a regular file of mode 0600 (mode ${(st.mode & 0o7777).toString(8)})`);
  }
  const text = readFileSync(path, 'utf8');
  const parsed = parseHandoff(text);
  if (!parsed.ok) throw new Error(`${name}: ${parsed.reason}: ${parsed.detail}\n${text}`);
  const handoff = parsed.handoff;
  if (handoff.verb !== match[3] || handoff.wrapperPid !== Number(match[2])) {
    throw new Error(`${name}: the name does not match the content:\n${text}`);
  }
  if (!text.endsWith('}\n') || text.indexOf('\n') !== text.length - 1) {
    throw new Error(`${name}: not one line of JSON:\n${text}`);
  }
  return { name, text, handoff };
}

/** Every hand-off in name order, each checked (name, mode 0600, one line, the agent's schema). Anything else
 * in the spool, a leftover `.tmp-` file in particular, fails the test. */
function readSpool(spool: string): Entry[] {
  return readdirSync(spool)
    .filter((name) => !AGENT_FILES.has(name))
    .sort()
    .map((name) => parseEntry(spool, name));
}

/** The hand-offs present now, skipping files being written; for watching a spool while wrappers run. */
function peekSpool(spool: string): Entry[] {
  return readdirSync(spool)
    .filter((name) => HANDOFF_NAME.test(name))
    .sort()
    .map((name) => parseEntry(spool, name));
}

interface Invocation {
  pid: number;
  verb: string;
  line: string;
}

const RUNC_VERBS = new Set([
  'create',
  'start',
  'run',
  'exec',
  'delete',
  'kill',
  'state',
  'ps',
  'pause',
  'resume',
]);
const HANDOFF_VERBS = new Set(['create', 'run', 'exec', 'delete']);

/** The runtime invocations the shim made, from the script's trace. */
function readTrace(f: Fixture): Invocation[] {
  if (!existsSync(f.trace)) return [];
  return readFileSync(f.trace, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pid, ...args] = line.split(' ');
      return { pid: Number(pid), verb: args.find((a) => RUNC_VERBS.has(a)) ?? '?', line };
    });
}

/** Each create, exec and delete the shim ran left exactly one hand-off (its wrapperPid is the invocation's
 * pid: the script execs the wrapper), and no hand-off came from anywhere else. */
function expectOneHandoffPerInvocation(f: Fixture, entries: Entry[]): void {
  const byPid = new Map<number, Entry[]>();
  for (const entry of entries)
    byPid.set(entry.handoff.wrapperPid, [...(byPid.get(entry.handoff.wrapperPid) ?? []), entry]);
  const invocations = readTrace(f).filter((i) => HANDOFF_VERBS.has(i.verb));
  const problems: string[] = [];
  for (const invocation of invocations) {
    const found = byPid.get(invocation.pid) ?? [];
    if (found.length !== 1 || found[0]!.handoff.verb !== invocation.verb) {
      problems.push(`${found.length} hand-offs for: ${invocation.line}`);
    }
    byPid.delete(invocation.pid);
  }
  for (const [pid, orphans] of byPid)
    problems.push(`hand-off of no traced invocation (pid ${pid}): ${orphans[0]!.name}`);
  expect(problems).toEqual([]);
}

/** Same file: /proc/<pid>/root of a container process is the rootfs directory. */
function expectRootIsRootfs(pid: number): void {
  const root = statSync(`/proc/${pid}/root/`);
  const expected = statSync(rootfs);
  expect({ dev: root.dev, ino: root.ino }).toEqual({ dev: expected.dev, ino: expected.ino });
}

/**
 * The agent's side of the spool protocol, with the agent's own spool module (agent/handoff/spool.ts) for the
 * heartbeat and the acknowledgements; the test decides when to acknowledge, as probes being attached would.
 */
class TestAgent {
  private timer: NodeJS.Timeout | undefined;
  private readonly spoolFiles: HandoffSpool;

  constructor(readonly spool: string) {
    this.spoolFiles = new HandoffSpool({ dir: spool, logger: silentLogger() });
    cleanups.push(() => this.stop());
  }

  async heartbeat(): Promise<this> {
    await this.spoolFiles.heartbeat();
    this.timer = setInterval(() => void this.spoolFiles.heartbeat(), 200);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async waitForHandoff(predicate: (h: Handoff) => boolean, timeoutMs = 20_000): Promise<Entry> {
    let found: Entry | undefined;
    await waitFor(
      'a hand-off',
      () => (found = peekSpool(this.spool).find((e) => predicate(e.handoff))) !== undefined,
      timeoutMs,
    );
    return found!;
  }

  ack(id: string): Promise<void> {
    return this.spoolFiles.acknowledge(id);
  }
}

// ---- the tests ----

describe('under containerd', () => {
  /** create (run -d), exec (plain, detached, with a tty), kill and delete, and one `ctr run --rm`. */
  async function lifecycle(f: Fixture, during?: (id: string) => Promise<void>) {
    const results: Record<string, CommandResult | CommandResult[]> = {};
    results.runRm = normalized(await runScript(f, 'once'));
    const id = 'long';
    results.run = normalized(
      await containerd.run(f.namespace, {
        id,
        rootfs,
        detach: true,
        runcBinary: f.runtime,
        args: ['sleep', '300'],
      }),
    );
    results.exec = normalized(await containerd.exec(f.namespace, { id, execId: 'e1', args: SCRIPT }));
    results.execDetached = normalized(
      await containerd.exec(f.namespace, { id, execId: 'e2', detach: true, args: ['sleep', '300'] }),
    );
    // A terminal needs one on ctr's side too: script(1) gives it a pty. Only the exit code is compared (ctr
    // may report a harmless resize race on that terminal).
    const ttyCommand = [CTR, '--address', containerd.address, '-n', f.namespace];
    ttyCommand.push(
      ...containerd.execArgs({ id, execId: 'e3', tty: true, args: ['sh', '-c', 'test -t 0 && exit 5'] }),
    );
    const tty = await runCommand('script', ['-qec', ttyCommand.map(shellQuote).join(' '), '/dev/null'], {
      timeoutMs: 60_000,
    });
    results.execTtyCode = { code: tty.code, stdout: '', stderr: '' };
    await during?.(id);
    results.delete = await killAndDelete(f, id);
    return results;
  }

  it(
    'changes nothing containerd or the container sees, and hands off create, exec and delete',
    async () => {
      const plain = fixture({ plainRunc: true });
      const expected = await lifecycle(plain);
      expect(expected.runRm).toEqual(SCRIPT_RESULT);
      expect(expected.exec).toEqual(SCRIPT_RESULT);
      expect(expected.execTtyCode).toMatchObject({ code: 5 });

      const f = fixture();
      const live: { initPid?: number; execPid?: number } = {};
      const actual = await lifecycle(f, async (id) => {
        // While the container runs: the pids the hand-offs name are its live processes.
        const entries = readSpool(f.spool);
        const create = entries.find((e) => e.handoff.verb === 'create' && e.handoff.id === id)!.handoff;
        const detached = entries.find(
          (e) => e.handoff.verb === 'exec' && e.handoff.process?.args?.[0] === 'sleep',
        );
        live.initPid = create.pid!;
        live.execPid = detached!.handoff.pid!;
        expect(create.pid).toBe(await taskPid(f, id));
        for (const pid of [live.initPid, live.execPid]) {
          expect(isAlive(pid)).toBe(true);
          expectRootIsRootfs(pid);
        }
        expect(readFileSync(`/proc/${live.execPid}/cmdline`, 'utf8')).toBe('sleep\u0000300\u0000');
      });
      expect(actual).toEqual(expected);
      // The shim ran the same runtime commands in the same order.
      const verbs = (x: Fixture) => readTrace(x).map((i) => i.verb);
      expect(verbs(f)).toEqual(verbs(plain));

      const entries = readSpool(f.spool);
      expectOneHandoffPerInvocation(f, entries);
      const runcRoot = join(containerd.runcRoot, f.namespace);
      const of = (verb: string, id: string) =>
        entries.filter((e) => e.handoff.verb === verb && e.handoff.id === id);
      for (const id of ['once', 'long']) {
        const creates = of('create', id);
        expect(creates).toHaveLength(1);
        expect(creates[0]!.handoff).toMatchObject({
          version: 1,
          root: runcRoot,
          bundle: containerd.bundleDir(f.namespace, id),
          exitCode: 0,
        });
        expect(creates[0]!.handoff.process).toBeUndefined();
        expect(of('delete', id).length).toBeGreaterThanOrEqual(1);
        for (const e of of('delete', id))
          expect(e.handoff).toMatchObject({ root: runcRoot, bundle: null, pid: null });
      }
      expect(of('create', 'long')[0]!.handoff.pid).toBe(live.initPid);
      const execs = of('exec', 'long').map((e) => e.handoff);
      expect(execs.map((h) => h.process)).toEqual([
        { args: SCRIPT, cwd: '/', user: { uid: 0, gid: 0 } }, // runc's process.json omits "terminal": false
        { args: ['sleep', '300'], cwd: '/', user: { uid: 0, gid: 0 } },
        { args: ['sh', '-c', 'test -t 0 && exit 5'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: true },
      ]);
      for (const h of execs) {
        expect(h).toMatchObject({ root: runcRoot, bundle: null, exitCode: 0 });
        expect(h.pid).toBeGreaterThan(1);
      }
      expect(execs[1]!.pid).toBe(live.execPid);
      // Hand-offs are written in the order things happened, and their names sort in that order.
      expect(entries.map((e) => e.handoff.time)).toEqual(entries.map((e) => e.handoff.time).sort());
      expect(wrapperLog(f)).toBe('');
    },
    TEST_TIMEOUT,
  );
});

describe('runc commands run directly, with and without the wrapper', () => {
  const CASES: [string, string[], boolean][] = [
    ['state of a missing container', ['state', 'nosuch'], true],
    ['delete of a missing container', ['delete', 'nosuch'], true],
    ['exec in a missing container', ['exec', 'nosuch', 'true'], true],
    ['kill of a missing container', ['kill', 'nosuch'], true],
    ['create from a missing bundle', ['create', '--bundle', '/nonexistent/bundle', 'nosuch'], true],
    ['--version', ['--version'], false],
    ['list', ['list'], false],
  ];

  it.each(CASES)(
    '%s: byte-identical output and the same exit code',
    async (_, args, fails) => {
      const f = fixture();
      const root = join(f.dir, 'runc-root');
      const options = { encoding: 'latin1' as const, timeoutMs: 30_000, env: { ...process.env, ...f.env } };
      const plain = normalized(await runCommand(RUNC, ['--root', root, ...args], options));
      const wrapped = normalized(await runCommand(WRAPPER, ['--root', root, ...args], options));
      expect(wrapped).toEqual(plain);
      expect(plain.code !== 0).toBe(fails);

      const entries = readSpool(f.spool);
      if (args[0] === 'delete') {
        // delete is handed off even when it failed: the container may be gone either way.
        expect(entries.map((e) => e.handoff)).toEqual([
          expect.objectContaining({ verb: 'delete', id: 'nosuch', root, exitCode: plain.code, pid: null }),
        ]);
      } else {
        expect(entries).toEqual([]);
      }
      expect(wrapperLog(f)).toBe('');
    },
    TEST_TIMEOUT,
  );

  it(
    'runs runc once when its caller ignores SIGCHLD',
    async () => {
      // An ignored SIGCHLD is inherited through exec; the kernel then reaps children itself. The wrapper used
      // to lose runc's status that way, run runc a second time and write no hand-off.
      const f = fixture();
      const root = join(f.dir, 'runc-root');
      const options = { encoding: 'latin1' as const, timeoutMs: 30_000, env: { ...process.env, ...f.env } };
      const ignoringSigchld = (program: string) =>
        runCommand(
          'perl',
          [
            '-e',
            '$SIG{CHLD} = "IGNORE"; exec @ARGV or die "exec: $!"',
            program,
            '--root',
            root,
            'delete',
            'nosuch',
          ],
          options,
        );
      const plain = normalized(await ignoringSigchld(RUNC));
      expect(normalized(await ignoringSigchld(WRAPPER))).toEqual(plain);
      expect(readSpool(f.spool).map((e) => e.handoff)).toEqual([
        expect.objectContaining({ verb: 'delete', id: 'nosuch', exitCode: plain.code }),
      ]);
      expect(wrapperLog(f)).toBe('');
    },
    TEST_TIMEOUT,
  );
});

describe('without an agent, the absence check off (agent_absent_ms 0)', () => {
  it(
    'hand-offs accumulate and stay while nobody consumes them',
    async () => {
      const f = fixture();
      expect(await runScript(f, 'first')).toEqual(SCRIPT_RESULT);
      const first = readSpool(f.spool);
      expect(first.length).toBeGreaterThanOrEqual(2);
      for (const id of ['second', 'third']) expect(await runScript(f, id)).toEqual(SCRIPT_RESULT);
      const all = readSpool(f.spool);
      expect(all).toEqual(expect.arrayContaining(first)); // same names, same content
      expect(all.filter((e) => e.handoff.verb === 'create').map((e) => e.handoff.id)).toEqual([
        'first',
        'second',
        'third',
      ]);
      expectOneHandoffPerInvocation(f, all);
    },
    TEST_TIMEOUT,
  );

  it.each([
    ['no heartbeat', (_: string) => {}],
    [
      'a heartbeat 60 s old',
      (spool: string) => {
        const path = join(spool, 'agent.alive');
        writeFileSync(path, '1\n');
        const old = Date.now() / 1000 - 60;
        utimesSync(path, old, old);
      },
    ],
  ])(
    'with %s, create does not wait for an acknowledgement',
    async (_, prepare) => {
      const f = fixture({ ackTimeoutMs: 20_000 });
      prepare(f.spool);
      const started = Date.now();
      expect(await runScript(f, 'c')).toEqual(SCRIPT_RESULT);
      expect(Date.now() - started).toBeLessThan(20_000); // bound, not a measurement: a wait would be the full 20 s
      expect(readSpool(f.spool).filter((e) => e.handoff.verb === 'create')).toHaveLength(1);
      expect(wrapperLog(f)).not.toMatch(/acknowledg/);
    },
    TEST_TIMEOUT,
  );
});

describe('fail-open', () => {
  interface Case {
    prepare: (f: Fixture) => void;
    /** What the wrapper's log must say. */
    reason: RegExp;
    /** Checks afterwards: nothing written where it must not be. */
    after: (f: Fixture) => void;
  }
  const CASES: [string, Case][] = [
    [
      'the spool is missing',
      {
        prepare: (f) => rmSync(f.spool, { recursive: true }),
        reason: /no hand-off: cannot open spool .*: No such file or directory/,
        after: (f) => expect(existsSync(f.spool)).toBe(false),
      },
    ],
    [
      'the spool is writable by everyone (0777)',
      {
        prepare: (f) => chmodSync(f.spool, 0o777),
        reason: /no hand-off: spool .* refusing to write there/,
        after: (f) => expect(readdirSync(f.spool)).toEqual(['ack']),
      },
    ],
    [
      'the spool is a symlink to a real directory',
      {
        prepare: (f) => {
          rmSync(f.spool, { recursive: true });
          mkdirSync(join(f.dir, 'target'), { mode: 0o700 });
          symlinkSync(join(f.dir, 'target'), f.spool);
        },
        reason: /no hand-off: cannot open spool .*: (Too many levels of symbolic links|Not a directory)/,
        after: (f) => expect(readdirSync(join(f.dir, 'target'))).toEqual([]),
      },
    ],
    [
      'the spool is on a full file system',
      {
        prepare: (f) => {
          execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', f.spool]);
          mkdirSync(join(f.spool, 'ack'), { mode: 0o700 });
          const fd = openSync(join(f.spool, 'filler'), 'w');
          try {
            const block = Buffer.alloc(4096, 1);
            for (;;) writeSync(fd, block);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          } finally {
            closeSync(fd);
          }
        },
        reason: /no hand-off: cannot (write|create) .* in the spool: No space left on device/,
        after: (f) => expect(readdirSync(f.spool).sort()).toEqual(['ack', 'filler']),
      },
    ],
  ];

  it.each(CASES)(
    '%s: containers start and run as ever, and the log says why',
    async (_, c) => {
      const f = fixture();
      c.prepare(f);
      const logBefore = readFileSync(containerd.logFile, 'utf8').length;
      expect(await runScript(f, 'rm')).toEqual(SCRIPT_RESULT);
      ok(
        await containerd.run(f.namespace, {
          id: 'd',
          rootfs,
          detach: true,
          runcBinary: f.runtime,
          args: ['sleep', '300'],
        }),
        'ctr run -d',
      );
      expect(await containerd.exec(f.namespace, { id: 'd', execId: 'x', args: SCRIPT })).toEqual(
        SCRIPT_RESULT,
      );
      for (const r of await killAndDelete(f, 'd')) expect(r.stdout + r.stderr).not.toMatch(OUR_WORDS);
      c.after(f);
      const log = wrapperLog(f);
      // one line per create, exec and delete the shim ran
      const handingOff = readTrace(f).filter((i) => HANDOFF_VERBS.has(i.verb)).length;
      expect(log.split('\n').filter((l) => c.reason.test(l))).toHaveLength(handingOff);
      expect(readFileSync(containerd.logFile, 'utf8').slice(logBefore)).not.toMatch(OUR_WORDS);
    },
    TEST_TIMEOUT,
  );

  it(
    'does not follow an ack directory planted as a symlink',
    async () => {
      const f = fixture({ ackTimeoutMs: 5_000 });
      const elsewhere = join(f.dir, 'elsewhere');
      mkdirSync(elsewhere, { mode: 0o700 });
      rmSync(join(f.spool, 'ack'), { recursive: true });
      symlinkSync(elsewhere, join(f.spool, 'ack'));
      await new TestAgent(f.spool).heartbeat();
      expect(await runScript(f, 'c')).toEqual(SCRIPT_RESULT);
      const log = wrapperLog(f);
      expect(log).toMatch(
        /id=c not waiting for the agent: cannot open .*\/ack: (Too many levels of symbolic links|Not a directory)/,
      );
      expect(log).not.toMatch(TIMEOUT_LINE);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(readSpool(f.spool).filter((e) => e.handoff.verb === 'create')).toHaveLength(1);
    },
    TEST_TIMEOUT,
  );
});

describe('acknowledgement', () => {
  it(
    "holds the container's first instruction until the agent acknowledged",
    async () => {
      const f = fixture({ ackTimeoutMs: 60_000 }); // the longest allowed: the ack, not the timeout, must release it
      const agent = await new TestAgent(f.spool).heartbeat();
      const id = 'held';
      const marker = join(rootfs, `marker-${id}`);
      cleanups.push(() => rmSync(marker, { force: true }));
      let ctrReturned = false;
      const run = containerd
        .run(f.namespace, {
          id,
          rootfs,
          detach: true,
          runcBinary: f.runtime,
          args: ['sh', '-c', `touch /marker-${id}; exec sleep 300`],
        })
        .finally(() => (ctrReturned = true));
      const create = (await agent.waitForHandoff((h) => h.verb === 'create' && h.id === id)).handoff;
      // Take our time, as an agent attaching probes would: a container that is not held runs its first
      // instruction within milliseconds of runc create.
      await sleep(1500);
      const atAck = {
        marker: existsSync(marker),
        ctrReturned,
        init: readFileSync(`/proc/${create.pid}/comm`, 'utf8').trim(),
      };
      await agent.ack(id);
      const result = await run;
      expect(atAck).toEqual({ marker: false, ctrReturned: false, init: 'runc:[2:INIT]' });
      expect(result.code).toBe(0);
      await waitFor('the marker', () => existsSync(marker));
      expect(await taskPid(f, id)).toBe(create.pid);
      expect(wrapperLog(f)).toBe('');
    },
    TEST_TIMEOUT,
  );

  it(
    'starts the container anyway when the agent does not acknowledge in time',
    async () => {
      const f = fixture({ ackTimeoutMs: 1_000 });
      await new TestAgent(f.spool).heartbeat();
      const started = Date.now();
      expect(await runScript(f, 'unacked')).toEqual(SCRIPT_RESULT);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      const log = wrapperLog(f).trim().split('\n');
      expect(log).toEqual([
        expect.stringMatching(
          / verb=create id=unacked agent did not acknowledge within 1000 ms; starting the container anyway$/,
        ),
      ]);
    },
    TEST_TIMEOUT,
  );
});

describe('acknowledgement left over', () => {
  it(
    "does not let an earlier container's acknowledgement release a new container with the same id",
    async () => {
      const f = fixture({ ackTimeoutMs: 1_000 });
      const agent = await new TestAgent(f.spool).heartbeat();
      await agent.ack('reused'); // as if an earlier `reused` had been acknowledged and never cleaned up
      expect(await runScript(f, 'reused')).toEqual(SCRIPT_RESULT);
      expect(wrapperLog(f)).toMatch(/ verb=create id=reused agent did not acknowledge within 1000 ms/);
    },
    TEST_TIMEOUT,
  );
});

describe('many containers at once', () => {
  /** Runs fn over items, at most `limit` at a time. */
  async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  }

  it(
    '50 containers started in parallel: 50 create hand-offs, then one per runc delete, none lost',
    async () => {
      const f = fixture();
      const ids = Array.from({ length: 50 }, (_, i) => `c${String(i).padStart(2, '0')}`);
      const failures: string[] = [];
      await inParallel(ids, 10, async (id) => {
        const r = await containerd.run(f.namespace, {
          id,
          rootfs,
          detach: true,
          runcBinary: f.runtime,
          args: ['sleep', '300'],
        });
        if (r.code !== 0) failures.push(`${id}: ${r.stderr}`);
      });
      expect(failures).toEqual([]);
      const created = readSpool(f.spool);
      expect(created.map((e) => e.handoff.verb)).toEqual(ids.map(() => 'create'));
      expect(created.map((e) => e.handoff.id).sort()).toEqual(ids);
      for (const e of created) expect(isAlive(e.handoff.pid!)).toBe(true);

      await inParallel(ids, 10, async (id) => {
        const task = await containerd.ctr(f.namespace, ['tasks', 'delete', '--force', id]);
        const container = await containerd.ctr(f.namespace, ['containers', 'delete', id]);
        if (task.code !== 0 || container.code !== 0)
          failures.push(`${id}: ${task.stderr}${container.stderr}`);
      });
      expect(failures).toEqual([]);
      // containerd runs `runc delete` twice per container (the task's delete, then the shim's own cleanup
      // `runc delete --force`): every one of them is handed off.
      const all = readSpool(f.spool);
      const deletes = all.filter((e) => e.handoff.verb === 'delete');
      expect([...new Set(deletes.map((e) => e.handoff.id))].sort()).toEqual(ids);
      expect(all.filter((e) => e.handoff.verb === 'create')).toEqual(created);
      expectOneHandoffPerInvocation(f, all);
      expect(wrapperLog(f)).toBe('');
    },
    3 * TEST_TIMEOUT,
  );
});
