/**
 * What the runc wrapper costs: runc alone against runc through container-auditor-runc, on plain OCI bundles
 * with a private `--root` (no containerd), interleaved in one run because the machine is noisy.
 *
 *   (a) `runc state <id>` on a running container (a verb the wrapper execs straight into runc);
 *   (b) `create`, `start` and `delete --force` of a container running `sleep 1000`, timed one by one and as a
 *       cycle (the wrapper runs runc as a child for create and delete and writes a hand-off after each);
 *   (c) `create` when an agent is alive: a fresh heartbeat and a peer process that writes `ack/<id>` as soon
 *       as the create hand-off appears (fs.watch, i.e. inotify), against the wrapper with no agent;
 *   (d) the same wrapper with /bin/true in place of runc: its own work, without runc's variation around it.
 *
 * Besides wall time (process.hrtime around spawnSync) it reports the CPU time the commands used.
 *
 * Root only. Prints a table on stdout, progress on stderr; exits non-zero on errors, never on thresholds.
 * Every container and the scratch directory are removed at the end, on Ctrl-C too.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/runc-wrapper.js [--iterations 200] [--cycles 40]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  utimesSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { basename, delimiter, join, resolve } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { RUNC_WRAPPER } from '../e2e/support/paths.js';
import { buildRootfs, writeBundle } from '../e2e/support/rootfs.js';
import {
  Interrupted,
  atCleanup,
  checkpoint,
  firstLine,
  fixed,
  numberOption,
  parseOptionValues,
  procStat,
  progress,
  progressCount,
  quantile,
  runBench,
  sortNum,
  table,
  ticksToMs,
} from './support.js';

const USAGE = `usage: node dist/bench/runc-wrapper.js [options]   (as root)

  --iterations N      runc state calls per side, and rounds of (d) (default 200)
  --cycles N          create+start+delete cycles per side, and creates per variant in (c) (default 40)
  --warmup N          untimed rounds before each measurement (default 5 for state, 2 for cycles)
  --wrapper PATH      the wrapper binary (default runc-wrapper/container-auditor-runc in this repository)
  --runc PATH         the real runc (default: runc on PATH)
  --tmpdir DIR        where the scratch directory goes (default /dev/shm, a tmpfs like a node's /run)
  -h, --help`;

interface Options {
  iterations: number;
  cycles: number;
  warmupState: number;
  warmupCycles: number;
  wrapper: string;
  runc: string;
  tmpdir: string;
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, command);
    try {
      if (dir && statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function parseOptions(argv: string[]): Options | undefined {
  const names = ['iterations', 'cycles', 'warmup', 'wrapper', 'runc', 'tmpdir'] as const;
  const values = parseOptionValues(argv, names, USAGE);
  if (!values) return undefined;
  const runc = values.runc ?? onPath('runc');
  if (!runc) throw new Error('runc is not on PATH (install Debian runc or pass --runc)');
  const wrapper = values.wrapper ?? RUNC_WRAPPER;
  if (!existsSync(wrapper)) throw new Error(`${wrapper} is missing: build it with make -C runc-wrapper`);
  return {
    iterations: numberOption('iterations', values.iterations, 200),
    cycles: numberOption('cycles', values.cycles, 40),
    warmupState: numberOption('warmup', values.warmup, 5, { zero: true }),
    warmupCycles: numberOption('warmup', values.warmup, 2, { zero: true }),
    wrapper: realpathSync(resolve(wrapper)),
    runc: realpathSync(resolve(runc)),
    tmpdir: values.tmpdir ?? (existsSync('/dev/shm') ? '/dev/shm' : '/tmp'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Scratch state, and its cleanup (normal end, error, Ctrl-C).

interface Scratch {
  dir: string;
  runc: string;
  roots: Set<string>;
  peer?: ChildProcess;
}

/** Synchronous, so that it runs whole even when the process is exiting. */
function cleanup(s: Scratch): void {
  if (s.peer && s.peer.exitCode === null && s.peer.signalCode === null) s.peer.kill('SIGTERM');
  for (const root of s.roots) {
    const list = spawnSync(s.runc, ['--root', root, 'list', '-q'], { encoding: 'utf8' });
    for (const id of (list.stdout ?? '').split('\n').filter(Boolean)) {
      const del = spawnSync(s.runc, ['--root', root, 'delete', '--force', id], { encoding: 'utf8' });
      if (del.status !== 0) process.stderr.write(`cleanup: runc delete --force ${id}: ${del.stderr}\n`);
    }
  }
  try {
    rmSync(s.dir, { recursive: true, force: true });
  } catch (err) {
    process.stderr.write(`cleanup: cannot remove ${s.dir}: ${String(err)}\n`);
  }
}

/** Lets a signal's handler run between the (synchronous) runc calls, and stops if one came. */
async function pause(): Promise<void> {
  await yieldToEventLoop();
  checkpoint();
}

// ---------------------------------------------------------------------------------------------------------
// Timed runc calls.

interface Side {
  name: string;
  binary: string;
  env: NodeJS.ProcessEnv;
}

let callCount = 0;

/** One timed command, in milliseconds: wall time, and the CPU time (user + system) of what it ran. */
interface Sample {
  wall: number;
  cpu: number;
}

const sum = (...xs: Sample[]): Sample => ({
  wall: xs.reduce((a, x) => a + x.wall, 0),
  cpu: xs.reduce((a, x) => a + x.cpu, 0),
});

/**
 * CPU time of this process's reaped children (cutime + cstime of /proc/self/stat), in ms. Its resolution is
 * one clock tick (10 ms), so one reading says little, but rounding errors average out over many calls: the
 * mean per call is good to a fraction of a millisecond. Unlike wall time it ignores waiting for a CPU.
 */
function childrenCpuMs(): number {
  const { fields } = procStat('self')!;
  return ticksToMs(Number(fields[13]) + Number(fields[14]));
}

/**
 * Runs `binary args` and times it. stdout goes to /dev/null and stderr to a file (not a pipe: a created
 * container inherits runc's stdio, and spawnSync would wait for a pipe it holds open).
 */
function timed(side: Side, args: string[], errFile: string): Sample {
  const errFd = openSync(errFile, 'w');
  const c0 = childrenCpuMs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(side.binary, args, { stdio: ['ignore', 'ignore', errFd], env: side.env });
  const t1 = process.hrtime.bigint();
  const c1 = childrenCpuMs();
  closeSync(errFd);
  callCount++;
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM' || r.signal === 'SIGHUP') throw new Interrupted();
  if (r.error) throw new Error(`${side.name}: ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    const stderr = readFileSync(errFile, 'utf8').trim();
    throw new Error(
      `${side.name}: ${basename(side.binary)} ${args.join(' ')} exited ${r.status ?? r.signal}: ${stderr}`,
    );
  }
  return { wall: Number(t1 - t0) / 1e6, cpu: c1 - c0 };
}

// ---------------------------------------------------------------------------------------------------------
// The rows of the tables.

interface Row {
  operation: string;
  base: Sample[];
  test: Sample[];
}

const newRow = (operation: string): Row => ({ operation, base: [], test: [] });

function summarise(row: Row): string[] {
  const base = sortNum(row.base.map((x) => x.wall));
  const test = sortNum(row.test.map((x) => x.wall));
  // Paired differences: each wrapper run against the runc-alone run next to it.
  const added = sortNum(row.test.map((t, k) => t.wall - row.base[k]!.wall));
  const cpuAdded = (sum(...row.test).cpu - sum(...row.base).cpu) / Math.max(1, row.test.length);
  const f = (x: number, digits = 2): string => fixed(x, digits);
  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${f(x)}`;
  // Distribution-free 95% confidence interval of the median difference (order statistics, binomial).
  const n = added.length;
  const lo = Math.max(1, Math.floor((n - 1.96 * Math.sqrt(n)) / 2));
  const mb = quantile(base, 0.5);
  const mt = quantile(test, 0.5);
  return [
    row.operation,
    String(base.length),
    f(mb),
    f(mt),
    signed(quantile(added, 0.5)),
    `${signed(added[lo - 1]!)} .. ${signed(added[n - lo]!)}`,
    f(mt / mb, 3),
    `${f(quantile(base, 0.9))} / ${f(quantile(test, 0.9))}`,
    signed(cpuAdded),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// The peer that plays the agent in (c): heartbeat, and ack/<id> as soon as a create hand-off appears.

function runPeer(spool: string): void {
  const heartbeat = join(spool, 'agent.alive');
  const ackDir = join(spool, 'ack');
  const beat = (): void => {
    const now = new Date();
    try {
      utimesSync(heartbeat, now, now);
    } catch {
      writeFileSync(heartbeat, '', { mode: 0o600 });
    }
  };
  const consume = (name: string): void => {
    if (name.startsWith('.') || !name.endsWith('.json')) return;
    const path = join(spool, name);
    let doc: { verb?: unknown; id?: unknown };
    try {
      doc = JSON.parse(readFileSync(path, 'utf8')) as { verb?: unknown; id?: unknown };
    } catch {
      return; // already consumed (a second event for the same file)
    }
    if (typeof doc.id === 'string' && doc.id && !doc.id.includes('/')) {
      if (doc.verb === 'create') writeFileSync(join(ackDir, doc.id), '', { mode: 0o600 });
      else if (doc.verb === 'delete') rmSync(join(ackDir, doc.id), { force: true });
    }
    rmSync(path, { force: true }); // the agent consumes hand-offs
  };
  beat();
  setInterval(beat, 1000);
  watch(spool, (_event, name) => {
    if (name) consume(name);
  });
  for (const name of readdirSync(spool)) consume(name);
  process.stdin.on('end', () => process.exit(0)); // the benchmark went away
  process.stdin.resume();
  process.stdout.write('ready\n');
}

async function startPeer(spool: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [import.meta.filename, '--peer', spool], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolveReady, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error('the peer did not start within 10 s')), 10_000);
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`the peer exited (${code}) before it was ready`)));
    child.stdout.once('data', () => {
      clearTimeout(timer);
      resolveReady();
    });
  });
  return child;
}

// ---------------------------------------------------------------------------------------------------------

function writeConfig(path: string, settings: Record<string, string>): void {
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`);
  writeFileSync(path, `# written by bench/runc-wrapper.ts\n${lines.join('\n')}\n`);
}

function makeSpool(dir: string, withAck: boolean): void {
  mkdirSync(dir, { mode: 0o700 });
  if (withAck) mkdirSync(join(dir, 'ack'), { mode: 0o700 });
}

function fsType(path: string): string {
  return firstLine('stat', ['-f', '-c', '%T', path]);
}

async function bench(opts: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run this as root (runc needs it for a private --root)');

  const dir = mkdtempSync(join(opts.tmpdir, 'ca-runc-bench-'));
  const s: Scratch = { dir, runc: opts.runc, roots: new Set() };
  atCleanup(() => cleanup(s));
  const root = join(dir, 'runc-root');
  s.roots.add(root);
  const rootfs = join(dir, 'rootfs');
  const bundle = join(dir, 'bundle');
  const errFile = join(dir, 'stderr');
  const quietSpool = join(dir, 'spool-no-agent');
  const agentSpool = join(dir, 'spool-agent');
  const wrapperLog = join(dir, 'wrapper.log');
  // A copy, as installed on a node: a rebuild of the original during the run must not get in the way.
  const wrapper = join(dir, 'container-auditor-runc');
  copyFileSync(opts.wrapper, wrapper);
  chmodSync(wrapper, 0o755);
  const probe = spawnSync(wrapper, ['--version'], { stdio: 'ignore' }); // no verb: straight into runc
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `cannot run the wrapper from ${opts.tmpdir} (${probe.error?.message ?? `exit ${probe.status}`}); ` +
        'a noexec mount? pick another place with --tmpdir',
    );
  }
  makeSpool(quietSpool, false);
  makeSpool(agentSpool, true);
  progress(`scratch directory ${dir}: building a busybox rootfs and a bundle`);
  buildRootfs(rootfs);
  writeBundle(bundle, rootfs, { args: ['sleep', '1000'] });

  // The wrapper is configured the way it is on a node: through its config file, not the environment.
  const quietConf = join(dir, 'no-agent.conf');
  const agentConf = join(dir, 'agent.conf');
  writeConfig(quietConf, { runc: opts.runc, handoff_dir: quietSpool, log_file: wrapperLog });
  writeConfig(agentConf, { runc: opts.runc, handoff_dir: agentSpool, log_file: wrapperLog });
  const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const alone: Side = { name: 'runc alone', binary: opts.runc, env: baseEnv };
  const quiet: Side = {
    name: 'wrapper, no agent',
    binary: wrapper,
    env: { ...baseEnv, CONTAINER_AUDITOR_RUNC_CONFIG: quietConf },
  };
  const withAgent: Side = {
    name: 'wrapper, agent acks',
    binary: wrapper,
    env: { ...baseEnv, CONTAINER_AUDITOR_RUNC_CONFIG: agentConf },
  };

  // Global options as containerd's runc shim passes them.
  const global = (side: Side): string[] => [
    '--root',
    root,
    '--log',
    join(dir, `${side === alone ? 'runc' : 'wrapper'}.runc-log.json`),
    '--log-format',
    'json',
  ];
  let seq = 0;
  const newId = (): string => `ca-bench-${process.pid}-${++seq}`;
  const pidFile = join(dir, 'container.pid');
  const create = (side: Side, id: string): Sample =>
    timed(side, [...global(side), 'create', '--bundle', bundle, '--pid-file', pidFile, id], errFile);
  const start = (side: Side, id: string): Sample => timed(side, [...global(side), 'start', id], errFile);
  const remove = (side: Side, id: string): Sample =>
    timed(side, [...global(side), 'delete', '--force', id], errFile);
  const state = (side: Side, id: string): Sample => timed(side, [...global(side), 'state', id], errFile);

  // (a) runc state on a running container
  const running = newId();
  create(alone, running);
  start(alone, running);
  const stateRow = newRow('state (running container)');
  const stateTotal = opts.warmupState + opts.iterations;
  for (let k = 0; k < stateTotal; k++) {
    // A B, then B A: neither side always goes first.
    const order = k % 2 === 0 ? [alone, quiet] : [quiet, alone];
    const t = new Map<Side, Sample>();
    for (const side of order) t.set(side, state(side, running));
    if (k >= opts.warmupState) {
      stateRow.base.push(t.get(alone)!);
      stateRow.test.push(t.get(quiet)!);
    }
    progressCount('(a) state', k + 1, stateTotal);
    await pause();
  }
  remove(alone, running);

  // (b) create + start + delete --force cycles
  const rows = {
    create: newRow('create'),
    start: newRow('start'),
    delete: newRow('delete --force'),
    cycle: newRow('create + start + delete --force'),
  };
  const cycleTotal = opts.warmupCycles + opts.cycles;
  for (let k = 0; k < cycleTotal; k++) {
    const order = k % 2 === 0 ? [alone, quiet] : [quiet, alone];
    for (const side of order) {
      const id = newId();
      const tc = create(side, id);
      const ts = start(side, id);
      const td = remove(side, id);
      if (k < opts.warmupCycles) continue;
      const which = side === alone ? 'base' : 'test';
      rows.create[which].push(tc);
      rows.start[which].push(ts);
      rows.delete[which].push(td);
      rows.cycle[which].push(sum(tc, ts, td));
    }
    progressCount('(b) cycles', k + 1, cycleTotal);
    await pause();
  }

  // (c) create when the agent is alive and acknowledges at once
  s.peer = await startPeer(agentSpool);
  const ackRows = {
    quiet: newRow('create, wrapper without agent (vs runc alone)'),
    agent: newRow('create, agent acks (vs runc alone)'),
    wait: newRow('create, agent acks (vs wrapper without agent)'),
  };
  const variants = [alone, quiet, withAgent];
  for (let k = 0; k < cycleTotal; k++) {
    const order = [...variants.slice(k % 3), ...variants.slice(0, k % 3)]; // rotate who goes first
    const t = new Map<Side, Sample>();
    for (const side of order) {
      const id = newId();
      t.set(side, create(side, id));
      remove(alone, id); // untimed; runc alone, so the agent spool only sees its create
    }
    if (k >= opts.warmupCycles) {
      const [a, q, w] = [t.get(alone)!, t.get(quiet)!, t.get(withAgent)!];
      ackRows.quiet.base.push(a);
      ackRows.quiet.test.push(q);
      ackRows.agent.base.push(a);
      ackRows.agent.test.push(w);
      ackRows.wait.base.push(q);
      ackRows.wait.test.push(w);
    }
    progressCount('(c) create with an agent', k + 1, cycleTotal);
    await pause();
  }

  // (d) The wrapper's own work, with runc replaced by /bin/true: what it adds without runc's noise around it.
  const trueBin = realpathSync(onPath('true') ?? '/bin/true');
  const trueSpool = join(dir, 'spool-true');
  const trueConf = join(dir, 'true.conf');
  makeSpool(trueSpool, false);
  writeConfig(trueConf, { runc: trueBin, handoff_dir: trueSpool, log_file: wrapperLog });
  const trueAlone: Side = { name: 'true alone', binary: trueBin, env: baseEnv };
  const trueWrapped: Side = {
    name: 'wrapper around true',
    binary: wrapper,
    env: { ...baseEnv, CONTAINER_AUDITOR_RUNC_CONFIG: trueConf },
  };
  // The same with the agent's spool, where the peer acknowledges each create.
  const trueAgentConf = join(dir, 'true-agent.conf');
  writeConfig(trueAgentConf, { runc: trueBin, handoff_dir: agentSpool, log_file: wrapperLog });
  const trueWithAgent: Side = {
    name: 'wrapper around true, agent acks',
    binary: wrapper,
    env: { ...baseEnv, CONTAINER_AUDITOR_RUNC_CONFIG: trueAgentConf },
  };
  const trueRows = {
    state: newRow('state (exec straight into runc)'),
    create: newRow('create (child + hand-off), no agent'),
    agent: newRow('create, agent acks (vs true alone)'),
    wait: newRow('create, agent acks (vs wrapper without agent)'),
  };
  const trueTotal = opts.warmupState + opts.iterations;
  const trueVariants = [trueAlone, trueWrapped, trueWithAgent];
  for (let k = 0; k < trueTotal; k++) {
    const order = [...trueVariants.slice(k % 3), ...trueVariants.slice(0, k % 3)];
    const t = new Map<Side, { state?: Sample; create: Sample }>();
    for (const side of order) {
      const id = newId();
      t.set(side, {
        state: side === trueWithAgent ? undefined : state(side, id),
        create: create(side, id),
      });
    }
    if (k >= opts.warmupState) {
      const [a, q, w] = [t.get(trueAlone)!, t.get(trueWrapped)!, t.get(trueWithAgent)!];
      trueRows.state.base.push(a.state!);
      trueRows.state.test.push(q.state!);
      trueRows.create.base.push(a.create);
      trueRows.create.test.push(q.create);
      trueRows.agent.base.push(a.create);
      trueRows.agent.test.push(w.create);
      trueRows.wait.base.push(q.create);
      trueRows.wait.test.push(w.create);
    }
    progressCount('(d) wrapper around /bin/true', k + 1, trueTotal);
    await pause();
  }
  rmSync(trueSpool, { recursive: true, force: true }); // thousands of hand-offs nobody reads

  // Sanity: the wrapper really handed off (a wrapper that gave up early would look cheap).
  const handoffs = readdirSync(quietSpool).filter((n) => /^\d{19}-\d+-\w+\.json$/.test(n));
  const count = (verb: string): number => handoffs.filter((n) => n.endsWith(`-${verb}.json`)).length;
  const sample = handoffs.find((n) => n.endsWith('-create.json'));
  const sampleDoc = sample ? (JSON.parse(readFileSync(join(quietSpool, sample), 'utf8')) as unknown) : null;
  const logLines = existsSync(wrapperLog) ? readFileSync(wrapperLog, 'utf8').split('\n').filter(Boolean) : [];
  const unacked = logLines.filter((l) => l.includes('did not acknowledge')).length;
  const acks = readdirSync(join(agentSpool, 'ack')).length;
  const agentCreates = cycleTotal + trueTotal;

  const header = [
    'operation',
    'n',
    'runc alone median (ms)',
    'with wrapper median (ms)',
    'added median (ms)',
    'added 95% CI (ms)',
    'ratio',
    'p90 alone / wrapper (ms)',
    'CPU added, mean (ms)',
  ];
  const machine = [
    `nproc ${availableParallelism()}`,
    `kernel ${release()}`,
    firstLine(opts.runc, ['--version']),
    `node ${process.version}`,
    `scratch on ${fsType(dir)}`,
  ].join(', ');
  const out = [
    '',
    `machine: ${machine}`,
    `wrapper: a copy of ${opts.wrapper} (${statSync(wrapper).size} bytes); runc: ${opts.runc}; ` +
      `${callCount} invocations timed`,
    '',
    'Without an agent (no heartbeat), interleaved with runc alone:',
    '',
    table(
      header,
      [stateRow, rows.create, rows.start, rows.delete, rows.cycle].map((r) => summarise(r)),
    ),
    '',
    'create when the agent is alive (fresh heartbeat; a peer writes ack/<id> on the create hand-off):',
    '',
    table(
      header.map((h) =>
        h.replace('runc alone median', 'baseline median').replace('with wrapper median', 'measured median'),
      ),
      [ackRows.quiet, ackRows.agent, ackRows.wait].map((r) => summarise(r)),
    ),
    '',
    `The wrapper's own work, with runc replaced by ${trueBin} (same arguments and spools):`,
    '',
    table(
      header.map((h) => h.replace('runc alone median', 'true alone median')),
      [trueRows.state, trueRows.create, trueRows.agent, trueRows.wait].map((r) => summarise(r)),
    ),
    '',
    'added = median of the paired differences (each wrapper run minus the runc-alone run beside it), with a',
    'distribution-free 95% confidence interval for it;',
    'ratio = wrapper median / runc-alone median. Times include spawning the command from Node.',
    'CPU added = mean user + system time of the wrapper side minus that of runc alone (children reaped,',
    'from /proc/self/stat): what the wrapper costs the node, whatever the wait for a CPU on a busy machine.',
    `hand-offs left in the no-agent spool: ${count('create')} create, ${count('delete')} delete` +
      `; acknowledgements: ${acks} for ${agentCreates} creates with the agent` +
      `; wrapper log: ${logLines.length} line(s), ${unacked} unacknowledged create(s)`,
    `a create hand-off: ${JSON.stringify(sampleDoc)}`,
  ];
  console.log(out.join('\n'));
  for (const l of logLines.slice(0, 5)) process.stderr.write(`wrapper log: ${l}\n`);
}

const argv = process.argv.slice(2);
// `--peer <spool>`: this process is the peer of (c) (startPeer), and keeps running.
if (argv[0] === '--peer' && argv[1]) runPeer(argv[1]);
else await runBench({ name: 'runc-wrapper bench', parse: parseOptions, run: bench });
