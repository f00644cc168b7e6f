/**
 * What the operator costs the API server, and how soon a command shows: a private control plane
 * (e2e/cluster/cluster.sh: etcd + kube-apiserver on free loopback ports, in its own directory), the operator
 * as users run it (`container-auditor operator`, HTTPS, one replica), and in this process the real agent side
 * of the wire (PlanClient, ClusterPlan and the record builder with the policy's rules, the durable RecordQueue
 * through queueSink, the Reporter) with a real projected token. bpftrace is not involved: commands enter the
 * agent where its output would, round robin over several shell sessions on a few pods, at a fixed rate.
 *
 * Per phase (a rate):
 *   - API writes per 1,000 commands, AuditRecords and Events apart, counted by the API server itself
 *     (`apiserver_request_total` by resource, verb and code, scraped before and after) and, to compare, by
 *     the operator (`container_auditor_record_writes`, `container_auditor_event_writes` on its /metrics);
 *   - latency from the moment a record is appended to the agent's queue to the moment it is visible in the
 *     API server: a watch on AuditRecords notes when each seq first appears;
 *   - the operator's memory: its VmRSS every second from the phase's first command to its end (median and
 *     max), and its VmHWM at the end (reset at the start where /proc/<pid>/clear_refs lets us: a peak of
 *     the phase).
 *
 * The variants are every (operator x flush window) pair, each with its own operator, in one run: the operator
 * is the working tree's on each Node.js runtime given (`--node`), or another revision's build and the working
 * tree's on one runtime (`--baseline`). Flush windows (`--flush-ms`) outer, the operators in alternating order
 * (A B, B A, ...), the whole `--rounds` times. The ratios compare with the first operator at the same rate: at
 * the same window and round when comparing builds, else at the first window. Only the operator varies; the
 * agent side and the load run in this process, on its node, the working tree's code (the wire between agent
 * and operator is versioned: an operator serves agents one revision apart while a rollout is under way).
 *
 * After the last command of a phase the bench waits until every command is visible, then until every report
 * is answered (the agent's queue acknowledged: a report that timed out is sent again, and would otherwise
 * spill into the next phase), then for the Event folding window (10 s), so that a phase's summaries count in
 * that phase. Prints tables on stdout, progress
 * on stderr; exits non-zero on errors, never on thresholds. The control plane, the operator and the scratch
 * directory go at the end, on Ctrl-C too. No root needed.
 *
 *   make build && node dist/bench/operator-writes.js [--rates 10,500] [--commands 1000,5000]
 *     [--node /usr/bin/node,.cache/node/bin/node]
 *   make build && node dist/bench/operator-writes.js --baseline [REV]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  NodeV1Api,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node';
import type { NodePlan } from '../api/agentapi/v1.js';
import { GROUP, VERSION, type AuditRecord } from '../api/v1alpha1/index.js';
import { silentLogger } from '../common/logging.js';
import type { CapturedLine } from '../agent/capture/readline/parse.js';
import { ClusterPlan } from '../agent/cluster/cluster-plan.js';
import { OperatorClient } from '../agent/cluster/operator-client.js';
import { PlanClient } from '../agent/cluster/plan-client.js';
import { RecordQueue, queueSink } from '../agent/cluster/queue.js';
import { Reporter } from '../agent/cluster/reporter.js';
import type { ContainerRecord } from '../agent/containers/registry.js';
import { commandRecord } from '../agent/records/build.js';
import { createAuditPolicy, installCrds } from '../e2e/support/cluster.js';
import { runCommand } from '../e2e/support/command.js';
import { KUBECTL } from '../e2e/support/paths.js';
import { type Counts, delta, parseMetrics } from '../e2e/support/prometheus.js';
import { type PrivateCluster, startPrivateCluster } from '../e2e/support/private-cluster.js';
import {
  alternating,
  atCleanup,
  checkpoint,
  fixed as f,
  median,
  nowMs,
  numberOption,
  parseOptionValues,
  procStat,
  progress,
  progressCount,
  quantile,
  readProc,
  runBench,
  sortNum,
  table,
  ticksToMs,
} from './support.js';
import { agentOnNode, selfSignedCert } from '../e2e/support/credentials.js';
import { DEFAULT_BASELINE } from './baseline-build.js';
import {
  type CliVariant,
  type Runtime,
  checkComparison,
  cliCommand,
  cliVariants,
  parseRuntimes,
} from './cli-variants.js';

const USAGE = `usage: node dist/bench/operator-writes.js [options]   (after make build)

  --rates LIST      commands per second of each phase, over all sessions (default 10,500)
  --commands LIST   commands of each phase, one number or one per rate (default 1000,5000)
  --sessions N      shell sessions typed into, round robin (default 8)
  --pods N          audited pods the sessions are spread over (default 4)
  --flush-ms LIST   the operator's AuditRecord flush windows (--flush-ms) to compare, side by side in this
                    run: every rate's phase under each, with its own operator (default 500,200: the old
                    default and the current one; with --baseline, 200)
  --node LIST       node binaries to run the operator on, comma-separated, side by side in this run: every
                    flush window's phases under each (default: the node running the bench); the agent side
                    and the load stay in this process, on its node
  --baseline [REV]  run the operator of revision REV (default: ${DEFAULT_BASELINE}) and the working tree's side by
                    side in this run, on one runtime, and end with the ratios now / baseline; REV is built
                    once into .cache/bench-baseline/, its operator run from its package.json "bin"
  --rounds N        run the operators N times, every other round in reverse order (A B, B A, ...): the
                    side-by-side table shows the median over rounds (default 2 with --baseline, else 1)
  -h, --help

The baseline of every ratio is the first operator (the first runtime, or the baseline revision) at the same
rate: with --baseline at the same flush window and round, else with the first flush window.`;

const SYSTEM = 'container-auditor';
const SHOP = 'bench';
const NODE = 'bench-node';
const POLICY = 'bench';
const RUNTIME_CLASS = 'container-auditor';
/** The operator's Event folding window (operator/ingest/events-writer.ts DEFAULT_FOLD_WINDOW_MS). */
const FOLD_WINDOW_MS = 10_000;
/** The operator copies its counters into /metrics this often (operator/operator.ts). */
const METRICS_SYNC_MS = 2_000;

interface Options {
  rates: number[];
  commands: number[];
  sessions: number;
  pods: number;
  /** Flush windows, ms; the first is the baseline. */
  flushWindows: number[];
  /** Node.js runtimes the operator runs on; the first is the baseline. */
  runtimes: Runtime[];
  /** The revision whose operator runs beside the working tree's. */
  baseline: string | undefined;
  rounds: number;
}

function parseOptions(argv: string[]): Options | undefined {
  const values = parseOptionValues(
    argv,
    ['rates', 'commands', 'sessions', 'pods', 'flush-ms', 'node', 'baseline', 'rounds'] as const,
    USAGE,
    { valueOptional: { baseline: DEFAULT_BASELINE } },
  );
  if (!values) return undefined;
  const list = (name: string, value: string) => value.split(',').map((v) => numberOption(name, v, 0));
  const rates = list('rates', values.rates ?? '10,500');
  const commands = list('commands', values.commands ?? '1000,5000');
  if (commands.length !== 1 && commands.length !== rates.length)
    throw new Error('--commands takes one number, or one per rate');
  const pods = numberOption('pods', values.pods, 4);
  const sessions = numberOption('sessions', values.sessions, 8);
  if (sessions < pods) throw new Error('--sessions must be at least --pods (every pod gets a session)');
  const runtimes = parseRuntimes(values.node);
  checkComparison(runtimes, values.baseline);
  return {
    rates,
    commands: rates.map((_, i) => commands[commands.length === 1 ? 0 : i]!),
    sessions,
    pods,
    // Builds compare at the window the operator runs with by default; runtimes at the old default and that.
    flushWindows: (values['flush-ms'] ?? (values.baseline !== undefined ? '200' : '500,200'))
      .split(',')
      .map((v) => numberOption('flush-ms', v, 0, { zero: true })),
    runtimes,
    baseline: values.baseline,
    rounds: numberOption('rounds', values.rounds, values.baseline !== undefined ? 2 : 1),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The run's resources, for cleanup.

interface Scratch {
  dir: string;
  cluster?: PrivateCluster;
  operator?: ChildProcess | undefined;
  operatorLog: string;
  watch?: AbortController;
  stopAgent?: (() => Promise<void>) | undefined;
  closeQueue?: () => Promise<void>;
}

let scratch: Scratch | undefined;

async function cleanup(s: Scratch): Promise<void> {
  s.watch?.abort();
  await s.stopAgent?.().catch(() => undefined);
  await s.closeQueue?.().catch(() => undefined);
  const op = s.operator;
  if (op && op.exitCode === null && op.signalCode === null) {
    const exited = new Promise((resolve) => op.once('exit', resolve));
    op.kill('SIGTERM');
    const timer = setTimeout(() => op.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  try {
    s.cluster?.stop();
  } catch (error) {
    progress(`cleanup: ${(error as Error).message}`);
  }
  rmSync(s.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------
// Counting writes: the API server's own counter, and the operator's.

interface Snapshot {
  apiserver: Counts;
  operator: Counts;
}

// ---------------------------------------------------------------------------------------------------------

interface Phase {
  variant: CliVariant;
  /** Which pass over the variants, from 0 (--rounds). */
  round: number;
  flushMs: number;
  rate: number;
  commands: number;
  seconds: number;
  /** Append -> visible, ms, per command. */
  latencies: number[];
  missing: number;
  before: Snapshot;
  after: Snapshot;
  reports: number;
  /** Report attempts without an answer (a timeout, an error: sent again), and records the operator already had. */
  failedReports: number;
  duplicates: number;
  /** CPU of each program from the first command until every command was visible, % of one core. */
  cpu: Record<string, number>;
  memory: PhaseMemory;
}

/** The operator's memory over a phase, KiB. */
interface PhaseMemory {
  /** VmRSS, every MEMORY_SAMPLE_MS from the first command to the phase's end (after its settle). */
  rss: number[];
  /** VmHWM at the phase's end: its peak RSS, in the phase when `peakReset`, else since the operator started. */
  peak: number;
  peakReset: boolean;
}

const MEMORY_SAMPLE_MS = 1_000;

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), NaN for a process that is gone. */
function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readProc(pid, 'status') ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * Samples a process's VmRSS every MEMORY_SAMPLE_MS until stop(), which reads its VmHWM. VmHWM is reset to the
 * current RSS first (`5` to /proc/<pid>/clear_refs, Linux 4.0+; the process's owner or root may), so that the
 * peak is the phase's own; where that is refused it is the peak since the process started.
 */
function sampleMemory(pid: number): { stop: () => PhaseMemory } {
  let peakReset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    peakReset = false;
  }
  const rss: number[] = [];
  const sample = () => {
    const kib = statusKiB(pid, 'VmRSS');
    if (Number.isFinite(kib)) rss.push(kib);
  };
  sample();
  const timer = setInterval(sample, MEMORY_SAMPLE_MS);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { rss, peak: statusKiB(pid, 'VmHWM'), peakReset };
    },
  };
}

/** CPU time (user + system) of a process so far, ms; 0 for one that is gone. */
function cpuMs(pid: number | 'self'): number {
  const fields = procStat(pid)?.fields;
  return fields ? ticksToMs(Number(fields[11]) + Number(fields[12])) : 0;
}

async function bench(opts: Options): Promise<void> {
  const started = nowMs();
  const variants = cliVariants(opts.runtimes, opts.baseline);
  const dir = mkdtempSync(join(tmpdir(), 'ca-operator-bench-'));
  const s: Scratch = { dir, operatorLog: '' };
  scratch = s;
  atCleanup(() => cleanup(s));

  // The control plane.
  progress('starting a private control plane');
  const cluster = await startPrivateCluster('bench-operator');
  s.cluster = cluster;
  checkpoint();
  const kubeconfig = cluster.kubeconfig;
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const kubectl = async (args: string[]): Promise<string> => {
    const r = await runCommand(KUBECTL, ['--kubeconfig', kubeconfig, ...args]);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await installCrds(kubectl);

  // The world: a node, its agent's pod and token, audited pods, a policy selecting them.
  progress(`creating ${opts.pods} audited pods on node ${NODE}, a policy, the agent's token`);
  await kc.makeApiClient(NodeV1Api).createRuntimeClass({
    body: { metadata: { name: RUNTIME_CLASS }, handler: RUNTIME_CLASS },
  });
  await core.createNode({ body: { metadata: { name: NODE } } });
  for (const name of [SYSTEM, SHOP]) await core.createNamespace({ body: { metadata: { name } } });
  const { token } = await agentOnNode(core, { namespace: SYSTEM, node: NODE, image: 'agent:1' });
  const pods: V1Pod[] = [];
  for (let i = 0; i < opts.pods; i++)
    pods.push(
      await core.createNamespacedPod({
        namespace: SHOP,
        body: {
          metadata: { name: `shell-${i}`, labels: { app: 'shell' } },
          spec: {
            nodeName: NODE,
            runtimeClassName: RUNTIME_CLASS,
            containers: [{ name: 'app', image: 'registry.example/shell:1' }],
          },
        },
      }),
    );
  await createAuditPolicy(custom, POLICY, {
    selector: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': SHOP } } },
    alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
  });
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const { certFile, keyFile } = selfSignedCert(dir);

  // The operator, through its CLI as the variant measured runs it, and in this process the agent side of the
  // wire talking to it: one of each per (variant, flush window, round), the previous pair stopped first (the queue and its
  // seqs carry on).
  const queue = await RecordQueue.open({ dir: join(dir, 'queue'), logger: silentLogger() });
  const sink = queueSink(NODE, queue);
  const startOperator = async (variant: CliVariant, flushMs: number) => {
    progress(`starting the operator: ${variant.label} (${variant.runtime.path}), --flush-ms ${flushMs}`);
    s.operatorLog = '';
    const command = cliCommand(variant, [
      'operator',
      ...['--kubeconfig', kubeconfig, '--tls-cert', certFile, '--tls-key', keyFile],
      ...['--host', '127.0.0.1', '--port', '0', '--probe-port', '0'],
      ...['--agent-service-account', `${SYSTEM}/agent`, '--lease-namespace', SYSTEM],
      ...['--flush-ms', String(flushMs)],
    ]);
    const op = spawn(command.command, command.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    s.operator = op;
    op.stderr.setEncoding('utf8').on('data', (d: string) => {
      s.operatorLog = (s.operatorLog + d).slice(-256 * 1024);
    });
    const { port, probePort } = await operatorPorts(op);
    const scrapeOperator = async (): Promise<Counts> =>
      parseMetrics(await httpGet(probePort, '/metrics'), [
        'container_auditor_record_writes',
        'container_auditor_event_writes',
        'container_auditor_leader',
        'container_auditor_reports',
      ]);
    // A new operator takes the Lease once the previous one has let it go (on its way out) or it has expired.
    await until('the operator to lead', 60_000, async () => {
      const m = await scrapeOperator().catch(() => new Map<string, number>());
      return [...m].some(([k, v]) => k.startsWith('container_auditor_leader') && v === 1);
    });

    const logger = silentLogger();
    const client = new OperatorClient({
      url: `https://127.0.0.1:${port}`,
      tokenFile,
      ca: readFileSync(certFile),
    });
    const plan = new ClusterPlan();
    const planClient = new PlanClient({ client, node: NODE, stateDir: join(dir, 'state'), logger });
    planClient.on('plan', (p: NodePlan) => plan.update(p));
    const reporter = new Reporter({
      queue,
      client,
      node: NODE,
      boot: sink.boot,
      state: () => ({
        ...(plan.version !== undefined ? { planVersion: plan.version } : {}),
        auditedContainers: plan.listed,
        probesAttached: 1,
        errors: [],
        queueDropped: queue.stats.dropped,
      }),
      logger,
    });
    s.stopAgent = async () => {
      await planClient.stop();
      await reporter.stop(0);
      client.close();
    };
    planClient.start();
    reporter.start();
    await until('the plan naming every pod', 30_000, () => plan.listed === opts.pods);
    return { op, scrapeOperator, plan, reporter };
  };
  const stopOperator = async (): Promise<void> => {
    await s.stopAgent?.();
    s.stopAgent = undefined;
    const op = s.operator;
    if (op && op.exitCode === null && op.signalCode === null) {
      const exited = new Promise((resolve) => op.once('exit', resolve));
      op.kill('SIGTERM');
      await exited;
    }
    s.operator = undefined;
  };
  s.closeQueue = () => queue.close();

  const containers: ContainerRecord[] = pods.map((pod, i) => ({
    id: randomBytes(32).toString('hex'),
    bundle: '/nonexistent',
    rootfs: '/nonexistent',
    identity: {
      kind: 'container',
      podNamespace: SHOP,
      podName: pod.metadata!.name!,
      podUid: pod.metadata!.uid!,
      containerName: 'app',
      image: 'registry.example/shell:1',
    },
    initPid: 1,
    mntns: 4026531000 + i,
    pidns: 4026532000 + i,
    createdAt: new Date(),
    bashCandidates: ['/bin/bash'],
    execs: [],
  }));

  // When each seq is first seen in an AuditRecord (the watch), and when it was appended.
  const appended = new Map<number, number>();
  const visible = new Map<number, number>();
  const watch = new Watch(kc);
  const startWatch = async (): Promise<void> => {
    s.watch = await watch.watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${SHOP}/auditrecords`,
      {},
      (_type: string, object: AuditRecord) => {
        const at = nowMs();
        for (const c of object.status?.commands ?? []) if (!visible.has(c.seq)) visible.set(c.seq, at);
      },
      () => {
        // The API server ends watches now and then, and client-node gives one up after 30 s without data:
        // watch again (a re-list as ADDED, first sightings kept).
        if (!s.watch?.signal.aborted) void startWatch();
      },
    );
  };
  await startWatch();

  const snapshot = async (scrapeOperator: () => Promise<Counts>): Promise<Snapshot> => {
    // The operator's counters reach /metrics within METRICS_SYNC_MS.
    await sleep(METRICS_SYNC_MS + 500);
    const apiserver = parseMetrics(await kubectl(['get', '--raw', '/metrics']), ['apiserver_request_total']);
    return { apiserver, operator: await scrapeOperator() };
  };

  const pidOf = (name: string) => Number(readFileSync(join(cluster.dir, `${name}.pid`), 'utf8'));
  const phases: Phase[] = [];
  let phaseNumber = 0;
  // Windows outer, the operators alternating (A B, B A, ...): neither always meets an emptier cluster (what
  // earlier variants wrote stays, and an operator's memory grows with it) or a quieter machine.
  const slots = Array.from({ length: opts.rounds }, (_, round) =>
    opts.flushWindows.map((flushMs) => ({ round, flushMs })),
  ).flat();
  const runs = alternating(variants, slots.length).map((variant, k) => ({
    ...slots[Math.floor(k / variants.length)]!,
    variant,
  }));
  for (const { round, flushMs, variant } of runs) {
    await stopOperator();
    const { op, scrapeOperator, plan, reporter } = await startOperator(variant, flushMs);
    const programs: Record<string, number | 'self'> = {
      operator: op.pid!,
      'kube-apiserver': pidOf('kube-apiserver'),
      etcd: pidOf('etcd'),
      'agent side (this process)': 'self',
    };
    for (const [index, rate] of opts.rates.entries()) {
      const total = opts.commands[index]!;
      const phase = ++phaseNumber;
      checkpoint();
      progress(
        `phase ${phase}: ${variant.label}${opts.rounds > 1 ? `, round ${round + 1}` : ''}, flush window ${flushMs} ms, ${total} commands at ${rate}/s over ${opts.sessions} sessions on ${opts.pods} pods`,
      );
      const before = await snapshot(scrapeOperator);
      const reporterBefore = { ...reporter.stats };
      const seqs: number[] = [];
      const cpuBefore = Object.fromEntries(Object.entries(programs).map(([name, pid]) => [name, cpuMs(pid)]));
      const memory = sampleMemory(op.pid!);
      const t0 = nowMs();
      let sent = 0;
      while (sent < total) {
        checkpoint();
        const due = Math.min(total, Math.floor(((nowMs() - t0) * rate) / 1000) + 1);
        for (; sent < due; sent++) {
          const session = sent % opts.sessions;
          const container = containers[session % opts.pods]!;
          const audit = plan.auditOf(container);
          if (!audit.audited)
            throw new Error(`the plan does not audit ${container.identity.podName}: ${audit.reason}`);
          const pid = 10_000 * phase + session;
          const line: CapturedLine = {
            pid,
            tid: pid,
            ns: 0n,
            uid: 1000,
            cgroup: 1n,
            mntns: container.mntns,
            bytes: Buffer.from(`echo phase-${phase} command-${sent} | tr a-z A-Z > /tmp/out-${session}`),
            truncated: false,
          };
          const record = sink.write(commandRecord(line, container, audit.audit, new Date(), 100 + session));
          appended.set(record.seq, nowMs());
          seqs.push(record.seq);
          if (sent % Math.max(1, Math.ceil(total / 10)) === 0) progressCount('  sent', sent, total);
        }
        const next = t0 + ((sent + 1) * 1000) / rate;
        await sleep(Math.max(1, Math.min(10, next - nowMs())));
      }
      progressCount('  sent', total, total);
      const seconds = (nowMs() - t0) / 1000;
      await until('every command to be visible', 180_000, () => seqs.every((q) => visible.has(q))).catch(
        (error: unknown) => progress(String(error)),
      );
      const busyMs = nowMs() - t0;
      const cpu = Object.fromEntries(
        Object.entries(programs).map(([name, pid]) => [
          name,
          (100 * (cpuMs(pid) - cpuBefore[name]!)) / busyMs,
        ]),
      );
      // Every report answered too (a report that timed out is sent again): nothing of this phase is left for
      // the next one, or for the next operator.
      await until('the agent queue to be acknowledged', 180_000, () => queue.pendingBytes === 0).catch(
        (error: unknown) => progress(String(error)),
      );
      // Let this phase's folded-Event summaries (written at the end of their window, which the last report
      // answered may have opened) count in it.
      await sleep(FOLD_WINDOW_MS + 1_000);
      const after = await snapshot(scrapeOperator);
      const phaseMemory = memory.stop();
      const latencies = sortNum(
        seqs.filter((q) => visible.has(q)).map((q) => visible.get(q)! - appended.get(q)!),
      );
      phases.push({
        variant,
        round,
        flushMs,
        rate,
        commands: total,
        seconds,
        latencies,
        missing: seqs.length - latencies.length,
        before,
        after,
        reports: reporter.stats.reports - reporterBefore.reports,
        failedReports: reporter.stats.failures - reporterBefore.failures,
        duplicates: reporter.stats.duplicates - reporterBefore.duplicates,
        cpu,
        memory: phaseMemory,
      });
    }
  }
  s.watch?.abort();
  await stopOperator();
  print(opts, variants, phases, started);
}

function print(opts: Options, variants: CliVariant[], phases: Phase[], started: number): void {
  const per1000 = (n: number, commands: number) => f((1000 * n) / commands, 0);
  const api = (p: Phase, resource: string, verbs: string[], subresource?: string) =>
    delta(
      p.before.apiserver,
      p.after.apiserver,
      (_n, l) =>
        l.resource === resource &&
        verbs.includes(l.verb ?? '') &&
        (subresource === undefined || l.subresource === subresource),
    );
  const conflicts = (p: Phase, resource: string) =>
    delta(p.before.apiserver, p.after.apiserver, (_n, l) => l.resource === resource && l.code === '409');
  const opCount = (p: Phase, metric: string, outcomes: string[]) =>
    delta(p.before.operator, p.after.operator, (n, l) => n === metric && outcomes.includes(l.outcome ?? ''));
  const writes = ['POST', 'PUT', 'PATCH', 'APPLY', 'DELETE'];
  const recordWrites = (p: Phase) => (1000 * api(p, 'auditrecords', writes)) / p.commands;
  const eventWrites = (p: Phase) => (1000 * api(p, 'events', writes)) / p.commands;
  const [base] = variants;
  const [baseWindow] = opts.flushWindows;
  /**
   * What a phase's ratios compare with: the phase of the same rate and round under the first variant, at the
   * same flush window when builds are compared, else at the first window.
   */
  const baselineOf = (p: Phase) =>
    phases.find(
      (q) =>
        q.variant === base &&
        q.round === p.round &&
        q.rate === p.rate &&
        q.flushMs === (opts.baseline !== undefined ? p.flushMs : baseWindow),
    ) ?? p;
  const p50 = (p: Phase) => quantile(p.latencies, 0.5);
  const p99 = (p: Phase) => quantile(p.latencies, 0.99);
  const mib = (kib: number) => f(kib / 1024, 1);
  const rssMedian = (p: Phase) => median(p.memory.rss);

  // Which variant a row is when there is more than one, and which round.
  const several = variants.length > 1;
  const keyHeader = [
    ...(several ? [opts.baseline !== undefined ? 'build' : 'node'] : []),
    ...(opts.rounds > 1 ? ['round'] : []),
    'flush ms',
    'rate /s',
  ];
  const key = (p: Phase) => [
    ...(several ? [p.variant.name] : []),
    ...(opts.rounds > 1 ? [String(p.round + 1)] : []),
    String(p.flushMs),
    String(p.rate),
  ];
  const described = (v: CliVariant) => `${several ? `${v.name}: ` : ''}${v.label} (${v.runtime.path})`;

  const out: string[] = [
    `# operator-writes: ${opts.sessions} shell sessions on ${opts.pods} pods, one operator replica at a time: ${variants.map(described).join(', ')}; flush windows ${opts.flushWindows.join(', ')} ms; ${opts.rounds} round(s)`,
    `# baseline of every ratio: the same rate${opts.rounds > 1 ? ' and round' : ''} with the operator ${base ? base.label : '-'}, flush window ${opts.baseline !== undefined ? 'the same' : `${baseWindow ?? '-'} ms`}; the agent side on node ${process.version}, the working tree's`,
    ...variants.flatMap(({ name, build }) => (build.subject ? [`# ${name}: ${build.subject}`] : [])),
    '',
    'API writes, counted by the API server (apiserver_request_total, every response code):',
    '',
    table(
      [
        ...keyHeader,
        'commands',
        'AuditRecord creates',
        'status updates',
        'AuditRecord writes / 1,000',
        'x baseline',
        'Event creates',
        'Event patches',
        'Event writes / 1,000',
        '409s',
        'policy status writes',
        'reports',
        'failed reports',
        'duplicates',
      ],
      phases.map((p) => {
        const arCreates = api(p, 'auditrecords', ['POST']);
        const arUpdates = api(p, 'auditrecords', ['PUT', 'PATCH', 'APPLY']);
        const evCreates = api(p, 'events', ['POST']);
        const evPatches = api(p, 'events', ['PUT', 'PATCH', 'APPLY']);
        return [
          ...key(p),
          String(p.commands),
          String(arCreates),
          String(arUpdates),
          per1000(arCreates + arUpdates, p.commands),
          f(recordWrites(p) / recordWrites(baselineOf(p)), 2),
          String(evCreates),
          String(evPatches),
          per1000(evCreates + evPatches, p.commands),
          String(conflicts(p, 'auditrecords') + conflicts(p, 'events')),
          String(api(p, 'containerauditpolicies', writes)),
          String(p.reports),
          String(p.failedReports),
          String(p.duplicates),
        ];
      }),
    ),
    '',
    'The same, counted by the operator (container_auditor_record_writes, container_auditor_event_writes):',
    '',
    table(
      [
        ...keyHeader,
        'record creates',
        'status writes',
        'conflicts',
        'Events created',
        'aggregated',
        'folded',
        'fold summaries',
      ],
      phases.map((p) => [
        ...key(p),
        String(opCount(p, 'container_auditor_record_writes', ['creates'])),
        String(opCount(p, 'container_auditor_record_writes', ['statusWrites'])),
        String(opCount(p, 'container_auditor_record_writes', ['conflicts'])),
        String(opCount(p, 'container_auditor_event_writes', ['created'])),
        String(opCount(p, 'container_auditor_event_writes', ['aggregated'])),
        String(opCount(p, 'container_auditor_event_writes', ['folded'])),
        String(opCount(p, 'container_auditor_event_writes', ['summaries'])),
      ]),
    ),
    '',
    'Latency, appended to the agent queue -> visible in the API server (first seen by a watch on AuditRecords), ms:',
    '',
    table(
      [...keyHeader, 'commands', 'took s', 'p50', 'p90', 'p99', 'p99 x baseline', 'max', 'not seen'],
      phases.map((p) => [
        ...key(p),
        String(p.commands),
        f(p.seconds, 1),
        f(p50(p), 0),
        f(quantile(p.latencies, 0.9), 0),
        f(p99(p), 0),
        f(p99(p) / p99(baselineOf(p)), 2),
        f(p.latencies.at(-1) ?? NaN, 0),
        String(p.missing),
      ]),
    ),
    '',
    'CPU from the first command of a phase until every command was visible, % of one core:',
    '',
    table(
      [...keyHeader, ...Object.keys(phases[0]?.cpu ?? {})],
      phases.map((p) => [...key(p), ...Object.values(p.cpu).map((c) => f(c, 0))]),
    ),
    '',
    `The operator's memory, MiB: VmRSS every ${MEMORY_SAMPLE_MS / 1000} s from the first command of a phase to its end (the settle included), and VmHWM at the end${
      phases.every((p) => p.memory.peakReset)
        ? " (reset at the start: the phase's peak)"
        : ' (* : not reset, the peak since the operator started)'
    }; x baseline is of the RSS median:`,
    '',
    table(
      [...keyHeader, 'samples', 'RSS median', 'RSS max', 'peak (VmHWM)', 'x baseline'],
      phases.map((p) => [
        ...key(p),
        String(p.memory.rss.length),
        mib(rssMedian(p)),
        mib(Math.max(...p.memory.rss)),
        `${mib(p.memory.peak)}${p.memory.peakReset ? '' : ' *'}`,
        f(rssMedian(p) / rssMedian(baselineOf(p)), 2),
      ]),
    ),
  ];

  if (several && base) out.push('', sideBySide(opts, variants, phases, { recordWrites, eventWrites }));
  out.push('', `bench took ${f((nowMs() - started) / 1000, 0)} s`);
  console.log(out.join('\n'));
}

/**
 * The operators side by side at each flush window and rate: latency, memory, CPU and writes, each the median
 * over rounds, and their ratios to the first (the baseline).
 */
function sideBySide(
  opts: Options,
  variants: CliVariant[],
  phases: Phase[],
  per1000: { recordWrites: (p: Phase) => number; eventWrites: (p: Phase) => number },
): string {
  const metrics: [string, (p: Phase) => number, number][] = [
    ['latency p50 ms', (p) => quantile(p.latencies, 0.5), 0],
    ['latency p90 ms', (p) => quantile(p.latencies, 0.9), 0],
    ['latency p99 ms', (p) => quantile(p.latencies, 0.99), 0],
    ['operator RSS median MiB', (p) => median(p.memory.rss) / 1024, 1],
    ['operator peak (VmHWM) MiB', (p) => p.memory.peak / 1024, 1],
    ['operator CPU % of one core', (p) => p.cpu.operator ?? NaN, 0],
    ['AuditRecord writes / 1,000 commands', per1000.recordWrites, 0],
    ['Event writes / 1,000 commands', per1000.eventWrites, 0],
  ];
  const [base, ...others] = variants;
  const rows: string[][] = [];
  for (const flushMs of opts.flushWindows)
    for (const rate of opts.rates) {
      const over = (v: CliVariant, value: (p: Phase) => number) =>
        median(phases.filter((p) => p.variant === v && p.flushMs === flushMs && p.rate === rate).map(value));
      for (const [label, value, digits] of metrics)
        rows.push([
          `${flushMs} ms, ${rate}/s: ${label}`,
          ...variants.map((v) => f(over(v, value), digits)),
          ...others.map((v) => f(over(v, value) / over(base!, value), 2)),
        ]);
    }
  return [
    `Side by side: the operator as ${variants.map((v) => `${v.name}: ${v.label}`).join('; ')}; each cell the ` +
      `median over ${opts.rounds} round(s) at the same flush window and rate; ratios ` +
      `${others.map((v) => `${v.name} / ${base!.name}`).join(', ')} (above 1: slower, more memory, more CPU, ` +
      'more writes):',
    '',
    table(
      [
        'flush window, rate: metric',
        ...variants.map((v) => v.name),
        ...others.map((v) => `${v.name} / ${base!.name}`),
      ],
      rows,
    ),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

async function until(what: string, timeoutMs: number, test: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = nowMs() + timeoutMs;
  while (!(await test())) {
    checkpoint();
    if (nowMs() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    }).on('error', reject);
  });
}

interface Ports {
  port: number;
  probePort: number;
}

/** The object in a log entry that holds numeric `port` and `probePort`, wherever a revision's logger puts it. */
function portsIn(entry: unknown): Ports | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const { port, probePort } = entry as Partial<Record<string, unknown>>;
  if (typeof port === 'number' && typeof probePort === 'number') return { port, probePort };
  for (const value of Object.values(entry)) {
    const found = portsIn(value);
    if (found) return found;
  }
  return undefined;
}

/**
 * The ports the operator listens on, from the line it logs once started (the baseline's operator too, whose
 * log fields may be named otherwise).
 */
async function operatorPorts(op: ChildProcess): Promise<Ports> {
  let found: Ports | undefined;
  await until('the operator to start', 60_000, () => {
    if (op.exitCode !== null || op.signalCode !== null)
      throw new Error(`the operator exited:\n${scratch?.operatorLog ?? ''}`);
    for (const line of scratch?.operatorLog.split('\n') ?? []) {
      if (!line.includes('"Operator started"')) continue;
      found = portsIn(JSON.parse(line));
    }
    return found !== undefined;
  });
  return found!;
}

await runBench({
  name: 'operator-writes bench',
  parse: parseOptions,
  run: bench,
  explain: () =>
    scratch?.operatorLog ? `operator stderr (tail):\n${scratch.operatorLog.slice(-3000)}` : undefined,
});
