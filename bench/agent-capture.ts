/**
 * What capture costs and how much it keeps up with: the standalone agent (`container-auditor agent
 * --standalone`, with its bpftrace) on a private containerd whose runtime is the runc wrapper, two containers
 * of one overlayfs image (built and imported locally) holding bash, and shells typed into through real
 * pseudo-terminals, so every line is one return of readline. Records are read from the agent's stdout.
 *
 *   (1) memory: resident set of the agent and its bpftrace with 1 audited shell, then with 100 (50 per
 *       container), each a `bash -i` on a pty of its own, waiting in readline after its first line was
 *       recorded; and once more with the 100 after (2) and (3), to show what commands leave behind;
 *   (2) latency: commands typed at a moderate rate; per command, the time the bench read its record from the
 *       agent's stdout minus the record's `time` (when readline returned), and minus when it was typed;
 *   (3) throughput: commands typed at stepped rates into several shells at once; per step what was sent,
 *       recorded, lost, and what the agent reported lost (`loss` records), with the CPU it took.
 *
 * Every shell is `bash -i` on a pty of util-linux script(1) in a container. The idle shells of (1) get their
 * first line through a pipe that then stays open; the typing shells of (2) and (3) are `ctr tasks exec`s
 * whose stdin the bench writes to (ctr, the shim's FIFO, script, the pty, readline), their echo dropped in
 * the container. (Through `ctr tasks exec --tty` under a host script(1), as the node tests type, the echo
 * travels back through the shim, ctr and two more ptys, and that costs more CPU than the agent does.)
 *
 * Side by side in one run (each with the whole workload, its own agent and fresh containers of the same
 * image, in alternating order): the agent of another revision's build and the working tree's (`--baseline`),
 * or the working tree's agent on several Node.js runtimes (`--node`); a last table gives the ratios.
 *
 * Root only. Prints tables on stdout, progress on stderr; exits non-zero on errors, never on thresholds.
 * Containers, the image, containerd, the agent, mounts and the scratch directory go at the end, on Ctrl-C too.
 *
 *   make build && node dist/bench/agent-capture.js [--shells 100] [--rates 500,1000,2000,4000,8000]
 *   make build && node dist/bench/agent-capture.js --baseline [REV] [--quick]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentRecord, CoverageRecord, LossRecord } from '../api/records/v1.js';
import { AgentProcess, AgentProcessError } from '../e2e/support/agent-process.js';
import {
  Containerd,
  childrenOf,
  criAnnotations,
  isAlive,
  unmountUnder,
  writeWrapperRuntimeScript,
} from '../e2e/support/containerd.js';
import { buildImageArchive, importImage, removeImage } from '../e2e/support/image.js';
import { RUNC_WRAPPER } from '../e2e/support/paths.js';
import { buildRootfs, sharedLibraries } from '../e2e/support/rootfs.js';
import { installFile } from '../e2e/support/shells.js';
import { DEFAULT_BASELINE } from './baseline-build.js';
import {
  type CliVariant,
  type Runtime,
  checkComparison,
  cliCommand,
  cliVariants,
  parseRuntimes,
  workingTree,
} from './cli-variants.js';
import {
  alternating,
  atCleanup,
  checkpoint,
  firstLine,
  fixed as f,
  median,
  nowMs,
  numberOption,
  parseOptionValues,
  procStat,
  progress,
  quantile,
  readProc,
  runBench,
  sortNum,
  table,
  ticksToMs,
} from './support.js';

const USAGE = `usage: node dist/bench/agent-capture.js [options]   (as root, after make build)

  --shells N            idle audited shells for the memory comparison, over 2 containers (default 100)
  --samples N           memory samples per row, 1 s apart; the median is shown (default 5)
  --drivers N           shells typed into for latency and throughput (default 8, half per container)
  --latency-commands N  commands for the latency measurement (default 1200)
  --latency-rate N      their rate, lines/s over all drivers (default 200)
  --rates LIST          throughput steps, lines/s over all drivers (default 500,1000,2000,4000,8000)
  --step-seconds S      how long each step types (default 3)
  --stall-seconds S     a last step that stops the agent (SIGSTOP) this long while typing, to see where loss
                        begins and that it is reported; 0 skips it (default 6)
  --stall-rate N        that step's rate, lines/s (default 1000)
  --quick               a shorter workload, for a first look or a check that it runs (about a quarter of the
                        time): --shells 10 --samples 3 --latency-commands 400 --rates 500,2000
                        --step-seconds 2 --stall-seconds 0; options given as well win
  --tmpdir DIR          where the scratch directory goes (default the system's, usually /tmp)
  --baseline [REV]      run the agent of revision REV (default: ${DEFAULT_BASELINE}) and the working tree's side by side
                        in this run, on one runtime, and end with the ratios now / baseline; REV is built once
                        into .cache/bench-baseline/, and its agent run from its package.json "bin"
  --node LIST           node binaries to run the agent on, side by side in this run (comma-separated; the
                        first is the baseline of the ratios; default the node running the bench); with
                        --baseline, one at most
  --rounds N            with --baseline or --node: run them N times, every other round in reverse order (A B,
                        B A, ...), so neither always goes first; the side-by-side table shows the median over
                        rounds (default 2 with --baseline, else 1)
  -h, --help

Each side-by-side run gets the whole workload, with its own agent and fresh containers of the same image.`;

const NS = 'ca-agent-bench';
const IMAGE_REF = 'localhost/ca-agent-bench/bash:1';
/** The two containers of a run; with --node, the run's index is appended (bench-1-r0, bench-2-r0, ...). */
const CONTAINER_NAMES = ['bench-1', 'bench-2'] as const;
/** In the image: starts COUNT idle shells tagged TAG-FIRST.. and waits for them (see SHELLS_SCRIPT). */
const SHELLS_AT = '/bench/idle-shells.sh';
/** One idle shell: its first line through a pipe that stays open, so bash then waits in readline. */
const IDLE_SHELL = `(echo ": hello-$tag-$i"; exec sleep 86400) | script -q -c 'bash --norc --noprofile -i' /dev/null`;
const SHELLS_SCRIPT = `#!/bin/sh
# Written by bench/agent-capture.ts: $3 idle interactive shells, numbered from $2, under util-linux script(1).
tag=$1 i=$2 end=$(($2 + $3))
export HOME=/root TERM=dumb INPUTRC=/dev/null
while [ "$i" -lt "$end" ]; do
  ${IDLE_SHELL} >/dev/null 2>&1 &
  i=$((i + 1))
done
wait
`;

const POLICY = `apiVersion: containeraudit.io/v1alpha1
kind: ContainerAuditPolicy
metadata: {name: bench}
spec:
  selector:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: bench}}
    containers: [shell]
  capture: {maxCommandBytes: 512}
`;

interface Options {
  shells: number;
  samples: number;
  drivers: number;
  latencyCommands: number;
  latencyRate: number;
  rates: number[];
  stepSeconds: number;
  stallSeconds: number;
  stallRate: number;
  tmpdir: string;
  /** The agent's Node.js runtimes; the first is the baseline. */
  runtimes: Runtime[];
  /** The revision whose agent runs beside the working tree's. */
  baseline: string | undefined;
  rounds: number;
}

function parseOptions(argv: string[]): Options | undefined {
  const names = [
    'shells',
    'samples',
    'drivers',
    'latency-commands',
    'latency-rate',
    'rates',
    'step-seconds',
    'stall-seconds',
    'stall-rate',
    'tmpdir',
    'node',
    'baseline',
    'rounds',
  ] as const;
  const values = parseOptionValues(argv, names, USAGE, {
    flags: ['quick'],
    valueOptional: { baseline: DEFAULT_BASELINE },
  });
  if (!values) return undefined;
  const quick = values.quick === true;
  const shells = numberOption('shells', values.shells, quick ? 10 : 100);
  if (shells < 2) throw new Error('--shells must be at least 2 (one shell is the baseline)');
  const drivers = numberOption('drivers', values.drivers, 8);
  const runtimes = parseRuntimes(values.node);
  checkComparison(runtimes, values.baseline);
  return {
    shells,
    samples: numberOption('samples', values.samples, quick ? 3 : 5),
    drivers,
    latencyCommands: numberOption('latency-commands', values['latency-commands'], quick ? 400 : 1200),
    latencyRate: numberOption('latency-rate', values['latency-rate'], 200),
    rates: (values.rates ?? (quick ? '500,2000' : '500,1000,2000,4000,8000'))
      .split(',')
      .map((r) => numberOption('rates', r, 0)),
    stepSeconds: numberOption('step-seconds', values['step-seconds'], quick ? 2 : 3, { integer: false }),
    stallSeconds: numberOption('stall-seconds', values['stall-seconds'], quick ? 0 : 6, {
      integer: false,
      zero: true,
    }),
    stallRate: numberOption('stall-rate', values['stall-rate'], 1000),
    tmpdir: values.tmpdir ?? tmpdir(),
    runtimes,
    baseline: values.baseline,
    rounds: numberOption('rounds', values.rounds, values.baseline !== undefined ? 2 : 1),
  };
}

// ---------------------------------------------------------------------------------------------------------
// What the agent writes: its records, stamped with when the bench read them (AgentProcess).

interface Arrival {
  /** The record's time (readline's return, for a command), in ms since the epoch: whole milliseconds. */
  recordMs: number;
  /** When the bench read the record's line from the agent's stdout. */
  arrivalMs: number;
  pid: number;
}

/**
 * The commands of one phase: lines `: <tag>-<n> ...`, n from 0, each typed once. Knows when each was typed
 * and when (and how many times) its record came.
 */
class Tracker {
  readonly typedMs: number[] = [];
  readonly received = new Map<number, Arrival>();
  duplicates = 0;
  /** When the last record of this phase was read. */
  lastArrivalMs = 0;

  constructor(readonly tag: string) {}

  line(n: number, filler = ''): string {
    return `: ${this.tag}-${n}${filler}\n`;
  }

  onRecord(n: number, arrival: Arrival): void {
    if (this.received.has(n)) this.duplicates++;
    else this.received.set(n, arrival);
    this.lastArrivalMs = arrival.arrivalMs;
  }
}

/**
 * Follows the command records as AgentProcess reads them (its onRecord): those of each phase, by their tag
 * (Tracker), and the first lines of shells (`: hello-...`), by their text.
 */
class Commands {
  private readonly trackers = new Map<string, Tracker>();
  /** Command records of shells' first lines (`: hello-...`), by that text. */
  readonly hellos = new Map<string, Arrival>();

  track(tag: string): Tracker {
    const tracker = new Tracker(tag);
    this.trackers.set(tag, tracker);
    return tracker;
  }

  readonly onRecord = (record: AgentRecord, arrivalMs: number): void => {
    if (record.kind !== 'command') return;
    const arrival: Arrival = { recordMs: Date.parse(record.time), arrivalMs, pid: record.pid };
    if (record.command.startsWith(': hello-')) {
      this.hellos.set(record.command, arrival);
      return;
    }
    const m = /^: ([a-z0-9]+)-(\d+)(?: |$)/.exec(record.command);
    if (m) this.trackers.get(m[1]!)?.onRecord(Number(m[2]), arrival);
  };
}

/** The agent's `loss` records read between two times. */
function lossesBetween(agent: AgentProcess, fromMs: number, toMs: number): LossRecord[] {
  return agent.records.filter((r, k): r is LossRecord => {
    const at = agent.arrivals[k]!;
    return r.kind === 'loss' && at >= fromMs && at <= toMs;
  });
}

// ---------------------------------------------------------------------------------------------------------
// /proc readings.

function comm(pid: number): string {
  return (readProc(pid, 'comm') ?? '').trim();
}

/** When a process started (field 22 of its stat), to tell it from a later process with the same pid. */
function startTime(pid: number): string | undefined {
  return procStat(pid)?.fields[19];
}

/** VmRSS in KiB (0 for a process that is gone or a zombie). */
function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readProc(pid, 'status') ?? '');
  return m ? Number(m[1]) : 0;
}

function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (const child of childrenOf(pid)) out.push(child, ...descendantsOf(child));
  return out;
}

/** Busy and total jiffies of the whole machine (/proc/stat's first line). */
function machineJiffies(): { busy: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/**
 * CPU (ms) used so far by every process on the machine, by pid and start time (a pid can be reused), with
 * what it is: its comm (kernel workers as one), or agent, bench.
 */
function cpuByProcess(agentPid: number): Map<string, { name: string; ms: number }> {
  const by = new Map<string, { name: string; ms: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = procStat(pid);
    if (!stat) continue;
    const { fields } = stat;
    let name = stat.comm;
    if (pid === agentPid) name = 'agent';
    else if (pid === process.pid) name = 'bench';
    else if (name === 'bpftrace' && Number(fields[1]) !== agentPid) name = "bpftrace (not our agent's)";
    // Node.js 22 and later name their main thread, and so the process's comm, MainThread.
    else if (name === 'node' || name === 'MainThread') name = 'node (not ours)';
    else if (name.startsWith('containerd-shim')) name = 'shim';
    else if (name.startsWith('kworker')) name = 'kworker';
    const ms = ticksToMs(Number(fields[11]) + Number(fields[12]));
    by.set(`${pid}/${fields[19]}`, { name, ms });
  }
  return by;
}

interface CpuMark {
  atMs: number;
  processes: Map<string, { name: string; ms: number }>;
  machine: { busy: number; total: number };
}

function cpuMark(agentPid: number): CpuMark {
  return { atMs: nowMs(), processes: cpuByProcess(agentPid), machine: machineJiffies() };
}

/**
 * CPU used between two marks, in % of one core: by the agent, by its bpftrace, by every kind of process
 * (the busiest first); and by the whole machine, in % of all its cores.
 */
function cpuBetween(
  a: CpuMark,
  b: CpuMark,
): { agent: number; agentMs: number; bpftrace: number; machine: number; top: string } {
  const wall = b.atMs - a.atMs;
  const byName = new Map<string, number>();
  for (const [key, { name, ms }] of b.processes) {
    // A process that started in between used all its CPU in between.
    byName.set(name, (byName.get(name) ?? 0) + ms - (a.processes.get(key)?.ms ?? 0));
  }
  const pct = (ms: number): number => (100 * ms) / wall;
  const used = [...byName].filter(([, ms]) => pct(ms) >= 1).sort((x, y) => y[1] - x[1]);
  return {
    top: used.map(([name, ms]) => `${name} ${f(pct(ms), 0)}%`).join(', '),
    agent: pct(byName.get('agent') ?? 0),
    agentMs: byName.get('agent') ?? 0,
    bpftrace: pct(byName.get('bpftrace') ?? 0),
    machine: (100 * (b.machine.busy - a.machine.busy)) / Math.max(1, b.machine.total - a.machine.total),
  };
}

interface MemorySample {
  agentKiB: number;
  bpftraceKiB: number;
  otherKiB: number;
  bpftraceCount: number;
}

function sampleMemory(agentPid: number): MemorySample {
  const sample: MemorySample = { agentKiB: rssKiB(agentPid), bpftraceKiB: 0, otherKiB: 0, bpftraceCount: 0 };
  for (const pid of descendantsOf(agentPid)) {
    if (comm(pid) === 'bpftrace') {
      sample.bpftraceKiB += rssKiB(pid);
      sample.bpftraceCount++;
    } else sample.otherKiB += rssKiB(pid);
  }
  return sample;
}

const mib = (kib: number): string => f(kib / 1024);

// ---------------------------------------------------------------------------------------------------------
// Scratch state, and its cleanup (normal end, error, Ctrl-C).

interface Scratch {
  dir: string;
  containerd?: Containerd;
  agent?: AgentProcess;
  drivers: Driver[];
  image?: string;
  /** The agent is SIGSTOPped (the stall step): it gets a SIGCONT before anything else. */
  agentStopped?: boolean;
  /** bpftrace processes seen under the agent, pid to start time: killed if the agent left them behind. */
  bpftrace: Map<number, string>;
}

/** For an error's explanation: the agent's stderr. */
let scratch: Scratch | undefined;

type CleanupStep = (what: string, work: () => Promise<unknown> | void) => Promise<void>;

async function cleanup(s: Scratch): Promise<void> {
  const step: CleanupStep = async (what, work) => {
    try {
      await work();
    } catch (err) {
      process.stderr.write(`cleanup: ${what}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  };
  await endRun(s, step);
  const containerd = s.containerd;
  if (containerd) {
    const image = s.image;
    if (image) await step(`remove ${image}`, () => removeImage(containerd, NS, image));
    await step('stop containerd', () => containerd.stop());
  }
  await step(`remove ${s.dir}`, () => {
    unmountUnder(s.dir);
    rmSync(s.dir, { recursive: true, force: true });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Shells.

/** Starts `count` idle shells in a container (one detached exec), numbered from `first`. */
async function startIdleShells(
  containerd: Containerd,
  id: string,
  first: number,
  count: number,
): Promise<void> {
  const result = await containerd.exec(NS, {
    id,
    execId: `idle-${id}-${first}`,
    detach: true,
    args: ['/bin/sh', SHELLS_AT, id, String(first), String(count)],
  });
  if (result.code !== 0) throw new Error(`ctr tasks exec in ${id}: ${result.stderr}`);
}

/** What the idle shells are doing now: alive bash on a pty, and where they wait in the kernel. */
function describeShells(pids: number[]): { alive: number; onPty: number; waits: string } {
  let alive = 0;
  let onPty = 0;
  const waits = new Map<string, number>();
  for (const pid of pids) {
    if (!isAlive(pid) || comm(pid) !== 'bash') continue;
    alive++;
    try {
      if (readlinkSync(`/proc/${pid}/fd/0`).startsWith('/dev/pts/')) onPty++;
    } catch {
      // gone meanwhile
    }
    const wchan = (readProc(pid, 'wchan') ?? '?').trim() || '?';
    waits.set(wchan, (waits.get(wchan) ?? 0) + 1);
  }
  return {
    alive,
    onPty,
    waits: [...waits].map(([w, n]) => `${n} in ${w}`).join(', '),
  };
}

/** How a driver's shell runs in the container: bash -i on a pty of script(1); what it shows is dropped. */
const DRIVER_SHELL =
  "HOME=/root TERM=dumb INPUTRC=/dev/null exec script -q -c 'bash --norc --noprofile -i' /dev/null >/dev/null 2>&1";

/**
 * A shell the bench types into: `ctr tasks exec` (no --tty) of script(1), which runs `bash -i` on a pty in
 * the container. The bench writes keystrokes to ctr's stdin; the shim passes them through a FIFO to script,
 * which writes them to the pty's master, where bash's readline reads them. The echo and prompts stay in the
 * container (script's output goes to /dev/null), so the bench's CPU goes to typing, not to watching.
 */
class Driver {
  /** The shell's host pid, from its first record. */
  pid = 0;
  /** Most bytes waiting in the bench (not yet taken by ctr) since the last reset. */
  maxBacklog = 0;
  private stderr = '';
  private readonly closed: Promise<void>;

  private constructor(
    readonly container: string,
    private readonly child: ChildProcess,
  ) {
    child.stdin!.on('error', () => {}); // ctr went away: its keyboard goes nowhere
    child
      .stderr!.setEncoding('utf8')
      .on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4096)));
    this.closed = new Promise((resolve) => child.on('close', () => resolve()));
  }

  static open(containerd: Containerd, container: string, execId: string): Driver {
    const exec = containerd.execArgs({ id: container, execId, args: ['/bin/sh', '-c', DRIVER_SHELL] });
    const [command, ...args] = containerd.ctrCommand(NS, exec);
    return new Driver(container, spawn(command!, args, { stdio: ['pipe', 'ignore', 'pipe'] }));
  }

  get gone(): string | undefined {
    const c = this.child;
    return c.exitCode !== null || c.signalCode !== null ? `ctr exited: ${this.stderr.trim()}` : undefined;
  }

  type(text: string): void {
    this.child.stdin!.write(text);
    this.maxBacklog = Math.max(this.maxBacklog, this.child.stdin!.writableLength);
  }

  /** End of input: script passes it on as an EOF, bash exits; then ctr. Killed if that takes too long. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.kill(), timeoutMs);
    await this.closed;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.gone) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------------------
// The measurements.

interface MemoryRow {
  label: string;
  shells: number;
  samples: MemorySample[];
  state: string;
}

async function measureMemory(
  label: string,
  shells: number,
  pids: number[],
  opts: Options,
  s: Scratch,
  agent: AgentProcess,
): Promise<MemoryRow> {
  const samples: MemorySample[] = [];
  for (let k = 0; k < opts.samples; k++) {
    checkpoint();
    if (k > 0) await sleep(1000);
    for (const pid of descendantsOf(agent.pid))
      if (comm(pid) === 'bpftrace') s.bpftrace.set(pid, startTime(pid) ?? '');
    samples.push(sampleMemory(agent.pid));
  }
  const state = describeShells(pids);
  if (state.alive !== shells || state.onPty !== shells)
    throw new Error(
      `${label}: expected ${shells} bash on a pty, found ${state.alive} alive, ${state.onPty} on a pty`,
    );
  progress(`memory, ${label}: ${samples.map((x) => mib(x.agentKiB + x.bpftraceKiB)).join(' ')} MiB`);
  return { label, shells, samples, state: `${state.alive} bash alive on a pty (${state.waits})` };
}

/** Types `total` lines at `rate` lines/s, round robin over the drivers; returns when the last is typed. */
async function typeAtRate(
  drivers: Driver[],
  tracker: Tracker,
  rate: number,
  total: number,
  filler: string,
): Promise<{ seconds: number; maxGapMs: number }> {
  const t0 = nowMs();
  let sent = 0;
  let last = t0;
  let maxGapMs = 0;
  while (sent < total) {
    checkpoint();
    const now = nowMs();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000) + 1);
    if (due > sent) {
      const chunks = drivers.map(() => [] as string[]);
      for (let n = sent; n < due; n++) {
        chunks[n % drivers.length]!.push(tracker.line(n, filler));
        tracker.typedMs[n] = now;
      }
      chunks.forEach((lines, k) => lines.length && drivers[k]!.type(lines.join('')));
      sent = due;
    }
    await sleep(2);
  }
  return { seconds: (nowMs() - t0) / 1000, maxGapMs };
}

/** Waits until every line of the tracker was recorded, or none came for `quietMs`. */
async function drain(tracker: Tracker, total: number, quietMs: number, agent: AgentProcess): Promise<void> {
  const started = nowMs();
  for (;;) {
    checkpoint();
    if (tracker.received.size >= total) return;
    if (nowMs() - Math.max(started, tracker.lastArrivalMs) > quietMs) return;
    if (agent.exited) throw new Error('the agent exited');
    await sleep(50);
  }
}

function latencies(tracker: Tracker): { readline: number[]; typed: number[] } {
  const readline: number[] = [];
  const typed: number[] = [];
  for (const [n, a] of tracker.received) {
    readline.push(a.arrivalMs - a.recordMs);
    const t = tracker.typedMs[n];
    if (t !== undefined) typed.push(a.arrivalMs - t);
  }
  return { readline: sortNum(readline), typed: sortNum(typed) };
}

interface StepRow {
  label: string;
  sent: number;
  generatorRate: number;
  maxGapMs: number;
  received: number;
  duplicates: number;
  readlineRate: number;
  lossRecords: LossRecord[];
  readlineP50: number;
  readlineP99: number;
  typedP99: number;
  drainS: number;
  cpu: { agent: number; agentMs: number; bpftrace: number; machine: number; top: string };
  /** Most bytes any driver had waiting in the bench. */
  backlog: number;
}

interface Step {
  label: string;
  tag: string;
  rate: number;
  seconds: number;
  /** Stop the agent (SIGSTOP) this long into the step, for `forS` seconds: a stalled reader of bpftrace. */
  stall?: { atS: number; forS: number };
}

async function throughputStep(
  step: Step,
  tracker: Tracker,
  drivers: Driver[],
  s: Scratch,
  agent: AgentProcess,
): Promise<StepRow> {
  const total = Math.round(step.rate * step.seconds);
  const fromMs = nowMs();
  for (const d of drivers) d.maxBacklog = 0;
  const timers: NodeJS.Timeout[] = [];
  if (step.stall) {
    const { atS, forS } = step.stall;
    timers.push(
      setTimeout(() => {
        s.agentStopped = true;
        process.kill(agent.pid, 'SIGSTOP');
      }, atS * 1000),
      setTimeout(
        () => {
          process.kill(agent.pid, 'SIGCONT');
          s.agentStopped = false;
        },
        (atS + forS) * 1000,
      ),
    );
  }
  const before = cpuMark(agent.pid);
  let typed: { seconds: number; maxGapMs: number };
  try {
    typed = await typeAtRate(drivers, tracker, step.rate, total, ' ls -l /var/log/syslog');
  } finally {
    for (const t of timers) clearTimeout(t);
    if (s.agentStopped) {
      process.kill(agent.pid, 'SIGCONT');
      s.agentStopped = false;
    }
  }
  const typedEndMs = nowMs();
  await drain(tracker, total, 3000, agent);
  const after = cpuMark(agent.pid);
  const gone = drivers.find((d) => d.gone);
  if (gone) throw new Error(`a typing shell in ${gone.container} went away: ${gone.gone}`);
  const received = [...tracker.received.values()];
  const times = sortNum(received.map((a) => a.recordMs));
  const span = (times.at(-1)! - times[0]!) / 1000;
  const { readline, typed: fromTyping } = latencies(tracker);
  return {
    label: step.label,
    sent: total,
    generatorRate: total / typed.seconds,
    maxGapMs: typed.maxGapMs,
    received: tracker.received.size,
    duplicates: tracker.duplicates,
    readlineRate: received.length > 1 && span > 0 ? (received.length - 1) / span : NaN,
    lossRecords: lossesBetween(agent, fromMs, nowMs()),
    readlineP50: quantile(readline, 0.5),
    readlineP99: quantile(readline, 0.99),
    typedP99: quantile(fromTyping, 0.99),
    drainS: (Math.max(tracker.lastArrivalMs, typedEndMs) - typedEndMs) / 1000,
    cpu: cpuBetween(before, after),
    backlog: Math.max(...drivers.map((d) => d.maxBacklog)),
  };
}

// ---------------------------------------------------------------------------------------------------------

function requireTools(): void {
  if (process.getuid?.() !== 0) throw new Error('run this as root (containerd, runc and bpftrace need it)');
  for (const tool of ['containerd', 'ctr', 'containerd-shim-runc-v2', 'bpftrace', 'script']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not on PATH`);
  }
  if (!existsSync(RUNC_WRAPPER)) throw new Error(`${RUNC_WRAPPER} is missing: run make build`);
  workingTree(); // its CLI is there (package.json "bin"), or says to run make build
}

async function bench(opts: Options): Promise<void> {
  requireTools();
  // Anything else running skews all of this: say how busy the machine was before we started.
  const idle0 = machineJiffies();
  await sleep(1000);
  const idle1 = machineJiffies();
  const busyBefore = (100 * (idle1.busy - idle0.busy)) / Math.max(1, idle1.total - idle0.total);
  const dir = mkdtempSync(join(opts.tmpdir, 'ca-agent-bench-'));
  const s: Scratch = { dir, drivers: [], bpftrace: new Map() };
  scratch = s;
  atCleanup(() => cleanup(s));
  const spool = join(dir, 'spool');
  const state = join(dir, 'state');
  const policy = join(dir, 'policy.yaml');
  const runcScript = join(dir, 'runtime.sh');
  const rootfs = join(dir, 'rootfs');

  // The image: busybox, the host's bash with its libraries, util-linux script(1), the idle-shell starter.
  progress(`scratch directory ${dir}: building and importing an image with bash`);
  buildRootfs(rootfs, { bash: true });
  installFile(rootfs, '/usr/bin/script', '/usr/bin/script');
  for (const lib of sharedLibraries('/usr/bin/script')) installFile(rootfs, lib, lib);
  mkdirSync(join(rootfs, 'bench'));
  writeFileSync(join(rootfs, SHELLS_AT), SHELLS_SCRIPT, { mode: 0o755 });
  writeFileSync(policy, POLICY);
  mkdirSync(spool, { mode: 0o700 });
  writeWrapperRuntimeScript(runcScript, { handoffDir: spool, dir });
  s.containerd = await Containerd.start();
  const containerd = s.containerd;
  const archive = buildImageArchive(rootfs, join(dir, 'image.tar'), { ref: IMAGE_REF });
  s.image = await importImage(containerd, NS, archive);
  checkpoint();

  const variants = cliVariants(opts.runtimes, opts.baseline);
  const runs: RunResult[] = [];
  for (const [index, variant] of alternating(variants, opts.rounds).entries()) {
    if (index > 0) await endRun(s);
    const containers = variants.length === 1 ? CONTAINER_NAMES : CONTAINER_NAMES.map((c) => `${c}-r${index}`);
    const paths = { policy, spool, state: join(state, `r${index}`), runcScript };
    mkdirSync(paths.state, { recursive: true });
    runs.push(await runOnce(opts, s, variant, containers, paths, busyBefore));
  }
  if (variants.length > 1) console.log(sideBySide(opts, variants, runs));
}

/**
 * What a run started goes: its typing shells, its agent (and any bpftrace it left), its containers; the image
 * and containerd stay for the next run. Between runs a failed step fails the bench; cleanup passes a `step`
 * that reports it and goes on.
 */
async function endRun(s: Scratch, step: CleanupStep = async (_, work) => void (await work())): Promise<void> {
  for (const d of s.drivers) d.kill(); // what they ran in the containers goes with the containers
  s.drivers = [];
  const agent = s.agent;
  if (agent && s.agentStopped)
    await step('continue the agent', () => void process.kill(agent.pid, 'SIGCONT'));
  if (agent) await step('stop the agent', () => agent.stop());
  s.agent = undefined;
  for (const [pid, start] of s.bpftrace)
    if (isAlive(pid) && startTime(pid) === start) process.kill(pid, 'SIGKILL');
  s.bpftrace.clear();
  const containerd = s.containerd;
  if (containerd) await step('remove the containers', () => containerd.removeAll(NS));
}

interface RunResult {
  variant: CliVariant;
  memory: MemoryRow[];
  latency: { readline: number[]; typed: number[] };
  steps: StepRow[];
}

async function runOnce(
  opts: Options,
  s: Scratch,
  variant: CliVariant,
  containerIds: readonly string[],
  paths: { policy: string; spool: string; state: string; runcScript: string },
  busyBefore: number,
): Promise<RunResult> {
  const benchStart = nowMs();
  const containerd = s.containerd!;
  const { policy, spool, state } = paths;
  const { runtime, build } = variant;
  progress(`${variant.label} (${runtime.path}): starting the agent, then two containers of the image`);
  const commands = new Commands();
  s.agent = await AgentProcess.start({
    policy,
    spool,
    state,
    node: 'bench-node',
    onRecord: commands.onRecord,
    launch: (args) => cliCommand(variant, args),
  });
  const agent = s.agent;
  for (const id of containerIds) {
    const result = await containerd.runImage(NS, {
      id,
      image: IMAGE_REF,
      args: ['sleep', '86400'],
      detach: true,
      runcBinary: paths.runcScript,
      annotations: criAnnotations({ namespace: 'bench', pod: id, container: 'shell' }), // the policy's
    });
    if (result.code !== 0) throw new Error(`ctr run ${id}: ${result.stderr}`);
  }
  const isCovered = (r: CoverageRecord): boolean =>
    r.status === 'covered' && containerIds.includes(r.containerId);
  const covered = (): CoverageRecord[] =>
    agent.records.filter((r): r is CoverageRecord => r.kind === 'coverage' && isCovered(r));
  await agent.waitFor('both containers covered', () => covered().length >= 2, 30_000);
  const targets = [...new Set(covered().map((r) => r.target))];

  // (1) memory: one idle shell, then all of them.
  const [c1, c2] = containerIds as [string, string];
  const hello = (id: string, n: number): string => `: hello-${id}-${n}`;
  const inFirst = Math.ceil(opts.shells / 2);
  const inSecond = opts.shells - inFirst;
  const allHellos = [
    ...Array.from({ length: inFirst }, (_, n) => hello(c1, n)),
    ...Array.from({ length: inSecond }, (_, n) => hello(c2, n)),
  ];
  progress('(1) memory: one idle shell');
  await startIdleShells(containerd, c1, 0, 1);
  await agent.waitFor('the first idle shell to be recorded', () => commands.hellos.has(hello(c1, 0)), 30_000);
  await sleep(2000); // anything the new exec set off in the agent settles
  const onePid = [commands.hellos.get(hello(c1, 0))!.pid];
  const memory: MemoryRow[] = [await measureMemory('1 shell', 1, onePid, opts, s, agent)];

  progress(`(1) memory: ${opts.shells} idle shells`);
  const t0 = nowMs();
  await Promise.all([
    startIdleShells(containerd, c1, 1, inFirst - 1),
    startIdleShells(containerd, c2, 0, inSecond),
  ]);
  await agent.waitFor(
    `${opts.shells} idle shells to be recorded`,
    () => allHellos.every((h) => commands.hellos.has(h)),
    120_000,
  );
  const idleStartS = (nowMs() - t0) / 1000;
  await sleep(2000);
  const allPids = allHellos.map((h) => commands.hellos.get(h)!.pid);
  memory.push(await measureMemory(`${opts.shells} shells`, opts.shells, allPids, opts, s, agent));

  // The typing shells for (2) and (3), alternately in each container (Driver).
  progress(`opening ${opts.drivers} shells to type into`);
  const drivers: Driver[] = [];
  for (let k = 0; k < opts.drivers; k++) {
    const driver = Driver.open(containerd, containerIds[k % containerIds.length]!, `driver-${k}`);
    s.drivers.push(driver);
    drivers.push(driver);
    driver.type(`: hello-driver-${k}\n`);
  }
  for (const [k, driver] of drivers.entries()) {
    const marker = `: hello-driver-${k}`;
    await agent.waitFor(
      `driver ${k} to be recorded`,
      () => commands.hellos.has(marker) || !!driver.gone,
      30_000,
    );
    if (driver.gone) throw new Error(`driver ${k}: ${driver.gone}`);
    driver.pid = commands.hellos.get(marker)!.pid;
  }
  const driverState = describeShells(drivers.map((d) => d.pid));

  // (2) latency at a moderate rate.
  progress(`(2) latency: ${opts.latencyCommands} commands at ${opts.latencyRate}/s`);
  const lat = commands.track('lat');
  const latTyping = await typeAtRate(
    drivers,
    lat,
    opts.latencyRate,
    opts.latencyCommands,
    ' ls -l /var/log/syslog',
  );
  await drain(lat, opts.latencyCommands, 5000, agent);
  const latency = latencies(lat);

  // (3) throughput in steps.
  const steps: StepRow[] = [];
  const plan: Step[] = opts.rates.map((rate) => ({
    label: String(rate),
    tag: `t${rate}`,
    rate,
    seconds: opts.stepSeconds,
  }));
  if (opts.stallSeconds > 0)
    plan.push({
      label: `${opts.stallRate}, agent stopped ${opts.stallSeconds} s`,
      tag: 'stall',
      rate: opts.stallRate,
      seconds: opts.stallSeconds + 2,
      stall: { atS: 1, forS: opts.stallSeconds },
    });
  for (const step of plan) {
    progress(`(3) throughput: ${step.label} (${step.rate} lines/s for ${step.seconds} s)`);
    const row = await throughputStep(step, commands.track(step.tag), drivers, s, agent);
    steps.push(row);
    progress(
      `    sent ${row.sent}, recorded ${row.received}, lost ${row.sent - row.received}, ` +
        `drained ${f(row.drainS)} s after typing stopped`,
    );
    await sleep(1000);
  }

  await sleep(2000);
  memory.push(
    await measureMemory(`${opts.shells} shells, after (2) and (3)`, opts.shells, allPids, opts, s, agent),
  );

  await Promise.all(drivers.map((d) => d.close()));

  // ------------------------------------------------------------------------------------------------------
  const med = (row: MemoryRow, pick: (x: MemorySample) => number): number => median(row.samples.map(pick));
  const total = (x: MemorySample): number => x.agentKiB + x.bpftraceKiB + x.otherKiB;
  const memRows = memory.map((row) => [
    row.label,
    mib(med(row, (x) => x.agentKiB)),
    mib(med(row, (x) => x.bpftraceKiB)),
    String(med(row, (x) => x.bpftraceCount)),
    mib(med(row, (x) => x.otherKiB)),
    mib(med(row, total)),
    f(med(row, total) / med(memory[0]!, total), 3),
    row.samples.map((x) => mib(total(x))).join(' '),
  ]);

  const lossCell = (losses: LossRecord[]): string => {
    if (losses.length === 0) return '0';
    const byReason = new Map<string, number>();
    for (const l of losses) byReason.set(l.reason, (byReason.get(l.reason) ?? 0) + (l.count ?? 0));
    return `${losses.length}: ${[...byReason].map(([r, n]) => `${r} ${n}`).join(', ')}`;
  };
  const stepRows = steps.map((r) => [
    r.label,
    String(r.sent),
    `${f(r.generatorRate, 0)}${r.maxGapMs > 50 ? ` (gap ${f(r.maxGapMs, 0)} ms)` : ''}`,
    f(r.backlog / 1024),
    f(r.readlineRate, 0),
    String(r.received),
    String(r.sent - r.received),
    lossCell(r.lossRecords),
    String(r.duplicates),
    `${f(r.readlineP50)} / ${f(r.readlineP99)}`,
    f(r.typedP99, 0),
    f(r.drainS),
    `${f(r.cpu.agent, 0)}% / ${f(r.cpu.bpftrace, 0)}%`,
    `${f(r.cpu.machine, 0)}%`,
  ]);
  const allLosses = agent.records.filter((r): r is LossRecord => r.kind === 'loss');
  const idleCommand = `ctr tasks exec --detach --exec-id idle-<id>-<first> <id> /bin/sh ${SHELLS_AT} <id> <first> <count>`;
  const driverCommand = `ctr tasks exec --exec-id driver-<k> <container> /bin/sh -c "${DRIVER_SHELL}"`;
  const machine = [
    `nproc ${availableParallelism()}`,
    `kernel ${release()}`,
    firstLine('bpftrace', ['--version']),
    firstLine('containerd', ['--version']),
    `${variant.label} (the agent's; the bench's node ${process.version})`,
    `busy ${f(busyBefore, 0)}% in the second before the run${busyBefore > 10 ? ' (NOT IDLE: numbers are skewed)' : ''}`,
  ].join(', ');

  const out = [
    '',
    `machine: ${machine}`,
    `build: ${build.label}${build.subject ? ` (${build.subject})` : ''}`,
    `agent: ${runtime.path} ${build.bin} agent --standalone --policy <file> --handoff-dir <spool> --state-dir <dir> ` +
      '--output - --node bench-node',
    `containers: ${containerIds.join(', ')} from ${IMAGE_REF} (overlayfs snapshots), runtime: the runc wrapper; ` +
      `probe target(s): ${targets.join(', ')}`,
    '',
    `(1) Memory, resident (VmRSS, MiB), median of ${opts.samples} samples 1 s apart:`,
    '',
    table(
      [
        'idle audited shells',
        'agent',
        'bpftrace',
        'bpftrace procs',
        'other children',
        'total',
        'vs 1 shell',
        'samples (total)',
      ],
      memRows,
    ),
    '',
    `ratio ${opts.shells} shells / 1 shell (total): ${memRows[1]![6]} (target <= 1.2)`,
    ...memory.map((row) => `  ${row.label}: ${row.state}`),
    `each idle shell (${inFirst} in ${c1}, ${inSecond} in ${c2}, ${f(idleStartS)} s from exec to all recorded):`,
    `  ${IDLE_SHELL}`,
    `  started by: ${idleCommand}`,
    '',
    `typing shells for (2) and (3): ${opts.drivers}, ${Math.ceil(opts.drivers / 2)} in ${c1} and ` +
      `${Math.floor(opts.drivers / 2)} in ${c2}, each`,
    `  ${driverCommand}`,
    `  with the bench writing lines to ctr's stdin; before (2): ${driverState.alive} bash alive, ` +
      `${driverState.onPty} on a pty (${driverState.waits})`,
    '',
    `(2) Latency, readline's return -> record read from the agent's stdout, ${lat.received.size} of ` +
      `${opts.latencyCommands} commands typed at ${opts.latencyRate}/s (achieved ` +
      `${f(opts.latencyCommands / latTyping.seconds, 0)}/s) over ${opts.drivers} shells:`,
    '',
    table(
      ['measured from', 'n', 'p50 (ms)', 'p90 (ms)', 'p99 (ms)', 'max (ms)'],
      (
        [
          ['readline returned (record.time)', latency.readline],
          ["typed (written to ctr's stdin)", latency.typed],
        ] as const
      ).map(([label, v]) => [
        label,
        String(v.length),
        f(quantile(v, 0.5)),
        f(quantile(v, 0.9)),
        f(quantile(v, 0.99)),
        f(v.at(-1) ?? NaN),
      ]),
    ),
    '',
    'record.time has millisecond resolution (the agent maps bpftrace nsecs to wall time, then toISOString',
    'truncates), so readline->record reads up to 1 ms high; arrival is taken with sub-ms resolution when the',
    "chunk of the agent's stdout arrives in the bench. typed->record adds the way in (ctr, the shim's FIFO,",
    "script, the container's pty) and bash's own work on the line.",
    '',
    `(3) Throughput: ${opts.stepSeconds} s per step, round robin over the ${opts.drivers} typing shells, ` +
      "lines ': t<rate>-<n> ls -l /var/log/syslog' (38 bytes, one 64-byte chunk, one bpftrace event each):",
    '',
    table(
      [
        'target /s',
        'sent',
        'generator /s',
        'backlog KiB',
        'readline /s',
        'recorded',
        'lost',
        'loss records: events',
        'dup',
        'rl->rec p50/p99 ms',
        'typed->rec p99 ms',
        'drain s',
        'CPU agent / bpftrace',
        'machine busy',
      ],
      stepRows,
    ),
    '',
    'generator /s: lines written to the shells per second of typing; backlog: most bytes one shell had waiting',
    'in the bench (not yet taken by ctr); readline /s: recorded lines over the span of their record.time (how',
    'fast the shells actually returned from readline, when nothing was lost); lost: sent - recorded;',
    "loss records: the agent's `loss` records during the step, with the counts they carry; drain: how long",
    'after the last line was typed the last record came; CPU in % of one core, machine busy in % of all cores.',
    ...(opts.stallSeconds > 0
      ? [
          `The last row stops the agent (SIGSTOP) for ${opts.stallSeconds} s from 1 s into the step: bpftrace's`,
          "writes to the agent's pipe block, its perf ring buffers fill and the kernel drops events. There, lost",
          'against the counts in the loss records is the accounting check (every lost line counted once).',
        ]
      : []),
    '',
    'CPU by program during each step (typing and drain; % of one core; exited processes not counted):',
    ...steps.map((r) => `  ${r.label}: ${r.cpu.top}`),
    '',
    `records: ${agent.records.filter((r) => r.kind === 'command').length} command records read; loss records in the whole run: ${lossCell(allLosses)}; ` +
      `invalid lines on the agent's stdout: ${agent.invalid.length}; this run took ${f((nowMs() - benchStart) / 1000, 0)} s`,
  ];
  console.log(out.join('\n'));
  return { variant, memory, latency, steps };
}

/**
 * The runs side by side: the agent's memory, latency and throughput under each variant (a build or a runtime),
 * each the median over that variant's rounds, and their ratios to the first (the baseline).
 */
function sideBySide(opts: Options, variants: CliVariant[], all: RunResult[]): string {
  const medianOf = (row: MemoryRow | undefined, pick: (x: MemorySample) => number): number =>
    row ? median(row.samples.map(pick)) : NaN;
  const runs = variants.map((variant) => ({ variant, rounds: all.filter((r) => r.variant === variant) }));
  const base = runs[0]!;
  const metrics: [string, (r: RunResult) => number, (v: number) => string][] = [];
  for (const [i, row] of base.rounds[0]!.memory.entries()) {
    metrics.push([`agent RSS MiB, ${row.label}`, (r) => medianOf(r.memory[i], (x) => x.agentKiB) / 1024, f]);
    metrics.push([
      `bpftrace RSS MiB, ${row.label}`,
      (r) => medianOf(r.memory[i], (x) => x.bpftraceKiB) / 1024,
      f,
    ]);
  }
  for (const q of [0.5, 0.9, 0.99])
    metrics.push([`readline -> record p${q * 100} ms`, (r) => quantile(r.latency.readline, q), f]);
  for (const q of [0.5, 0.99])
    metrics.push([`typed -> record p${q * 100} ms`, (r) => quantile(r.latency.typed, q), f]);
  const whole = (v: number): string => f(v, 0);
  for (const [i, step] of base.rounds[0]!.steps.entries()) {
    const at = `at ${step.label}/s`;
    const of = (r: RunResult): StepRow | undefined => r.steps[i];
    metrics.push(
      [`${at}: readline /s`, (r) => of(r)?.readlineRate ?? NaN, whole],
      [`${at}: lost`, (r) => (of(r) ? of(r)!.sent - of(r)!.received : NaN), whole],
      [`${at}: readline -> record p99 ms`, (r) => of(r)?.readlineP99 ?? NaN, f],
      [`${at}: agent CPU % of one core`, (r) => of(r)?.cpu.agent ?? NaN, whole],
      [
        `${at}: agent CPU ms per 1,000 lines`,
        (r) => (of(r) ? (1000 * of(r)!.cpu.agentMs) / of(r)!.received : NaN),
        whole,
      ],
    );
  }
  const headers = ['', ...runs.map((r) => r.variant.name)];
  for (const r of runs.slice(1)) headers.push(`${r.variant.name} / ${base.variant.name}`);
  const over = (rounds: RunResult[], value: (r: RunResult) => number): number => median(rounds.map(value));
  return [
    '',
    `Side by side: the agent as ${runs.map((r) => `${r.variant.name}: ${r.variant.label}`).join('; ')}; ` +
      `each over the whole run above (${opts.shells} idle shells, ${opts.latencyCommands} commands at ` +
      `${opts.latencyRate}/s, throughput steps ${opts.rates.join(', ')}/s); ${opts.rounds} round(s) in the ` +
      `order ${all.map((r) => r.variant.name).join(', ')}, each cell the median over its rounds; ratios ` +
      `${runs.length > 2 ? 'to the first' : `${runs[1]!.variant.name} / ${base.variant.name}`} (for memory, ` +
      'latency, loss and CPU above 1 is worse; readline /s is how fast the shells went):',
    ...runs.flatMap(({ variant: { name, build } }) => (build.subject ? [`  ${name}: ${build.subject}`] : [])),
    '',
    table(
      headers,
      metrics.map(([label, value, show]) => [
        label,
        ...runs.map((r) => show(over(r.rounds, value))),
        ...runs.slice(1).map((r) => f(over(r.rounds, value) / over(base.rounds, value), 2)),
      ]),
    ),
  ].join('\n');
}

await runBench({
  name: 'agent-capture bench',
  parse: parseOptions,
  run: bench,
  // A wait on the agent says the tail of its stderr already.
  explain: (err) =>
    scratch?.agent && !(err instanceof AgentProcessError)
      ? `agent stderr (tail):\n${scratch.agent.stderr.slice(-2000)}`
      : undefined,
});
