/**
 * End-to-end latency on the demo (e2e/demo/demo.sh): from a command typed into `bash -i` in the audited pod
 * to the moment its AuditRecord command is visible in the API server, and the API writes it took.
 *
 * The demo runs in a private directory under /tmp (DEMO_DIR), so it never meets a user's `make demo`: a real
 * one-node Kubernetes (its own, in that directory, unless DEMO_NODE_DIR names a node that is up: one runs on a
 * machine at a time), the chart installed by helm (the operator's two replicas and the agent as pods of the
 * images built from images/), the sample policy, Pod shop/web. Lines `: lat-<i>` are typed into one `bash -i`
 * through `kubectl exec -it` under script(1), each once bash shows its prompt, at a steady rate. A
 * `kubectl get auditrecords -n shop -w` notes the first time each line is seen in an AuditRecord; the latency
 * of a line is that moment minus the moment it was written to the terminal.
 *
 * On the real node the figures mean more than they did when the demo ran the operator and the agent as local
 * processes beside a containerd driven by crictl: a typed line now also travels kubectl exec's stream (the API
 * server, the kubelet, containerd's streaming server) before bash reads it, the agent reaches the operator
 * through its Service (kube-proxy), and both run in pods with the chart's resources. The "demo up" time
 * includes bringing the node up and `helm install --wait`. Figures from before that change are not comparable.
 *
 * API writes come from the operator replicas' /metrics (their probe port, read through the API server's pod
 * proxy; this node's bridge network enforces no NetworkPolicy), summed over the replicas:
 * `container_auditor_record_writes` (creates + statusWrites + conflicts) and `container_auditor_event_writes`
 * (created + aggregated + summaries), read before and after, scaled to 1,000 commands. The gauges are synced
 * every 2 s, hence the waits around the readings.
 *
 * Root only. demo.sh builds what is missing (make build, helm, the images). Prints one table on stdout,
 * progress on stderr. `demo.sh down` on the private directory at the end, on Ctrl-C too.
 *
 *   make build && node dist/bench/demo-latency.js [--commands 200] [--rate 5]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_FLUSH_MS } from '../operator/ingest/records-writer.js';
import { KUBECTL } from '../e2e/support/paths.js';
import { DEMO_SCRIPT, demoKubeconfig, privateDemoEnv } from '../e2e/support/private-demo.js';
import { Terminal } from '../e2e/support/terminal.js';
import {
  atCleanup,
  checkpoint,
  fixed as f,
  nowMs,
  numberOption,
  parseOptionValues,
  progress,
  progressCount,
  quantile,
  runBench,
  sortNum,
  table,
} from './support.js';

const USAGE = `usage: node dist/bench/demo-latency.js [options]   (as root, after make build)

  --commands N   lines typed into the audited shell (default 200)
  --rate N       lines per second (default 5); each is typed once bash shows its prompt
  --timeout N    seconds to wait for the last line in the API server (default 30)`;

const NS = 'shop';
/** The demo's release and its namespace (demo.sh). */
const SYSTEM_NS = 'container-auditor';
const OPERATOR = 'container-auditor-operator';
/** bash's prompt as root with no rc file (`bash-5.2# `). */
const BASH_PROMPT = /bash-[\d.]+# /;
const RUN = randomBytes(3).toString('hex');
/** How often the operator copies its counters into the /metrics gauges (operator.ts), with a margin. */
const METRICS_SYNC_MS = 2_500;

interface Options {
  commands: number;
  rate: number;
  timeoutMs: number;
}

function parseOptions(argv: string[]): Options | undefined {
  const values = parseOptionValues(argv, ['commands', 'rate', 'timeout'] as const, USAGE);
  if (values === undefined) return undefined;
  return {
    commands: numberOption('commands', values.commands, 200),
    rate: numberOption('rate', values.rate, 5, { integer: false }),
    timeoutMs: numberOption('timeout', values.timeout, 30) * 1000,
  };
}

interface Scratch {
  dir: string;
  env: NodeJS.ProcessEnv;
  watch?: ChildProcess;
  terminal?: Terminal;
}

let scratch: Scratch | undefined;

/** Synchronous, so that it runs whole from process.on('exit') too. */
function cleanup(s: Scratch): void {
  s.terminal?.kill();
  s.watch?.kill('SIGKILL');
  if (existsSync(s.dir)) {
    progress(`demo.sh down (${s.dir})`);
    const down = spawnSync('bash', [DEMO_SCRIPT, 'down'], { env: s.env, encoding: 'utf8', timeout: 120_000 });
    if (down.status !== 0) progress(`demo.sh down exited ${down.status}:\n${down.stdout}${down.stderr}`);
  }
}

/** `demo.sh up`, its `==>` steps as progress lines; rejects with the tail of its output on failure. */
function demoUp(env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [DEMO_SCRIPT, 'up'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const keep = (line: string): void => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      keep(line);
      if (line.startsWith('==> ')) progress(`demo: ${line.slice(4)}`);
    });
    createInterface({ input: child.stderr }).on('line', keep);
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`demo.sh up exited ${code}:\n${tail.join('\n')}`)),
    );
  });
}

function kubectlOk(kubeconfig: string, args: string[]): string {
  const r = spawnSync(KUBECTL, ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Every operator replica's /metrics, through the API server's pod proxy (to its `probes` port's number). */
function operatorMetrics(kubeconfig: string): string[] {
  const pods = kubectlOk(kubeconfig, [
    'get',
    'pods',
    '-n',
    SYSTEM_NS,
    '-l',
    'app.kubernetes.io/component=operator',
    '-o',
    'jsonpath={range .items[*]}{.metadata.name}:{.spec.containers[0].ports[?(@.name=="probes")].containerPort}{"\\n"}{end}',
  ]);
  return pods
    .split('\n')
    .filter(Boolean)
    .map((pod) =>
      kubectlOk(kubeconfig, ['get', '--raw', `/api/v1/namespaces/${SYSTEM_NS}/pods/${pod}/proxy/metrics`]),
    );
}

/** The operators' gauges of one metric, by outcome, summed over the replicas (only the leader writes). */
function metric(texts: string[], name: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{outcome="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const text of texts) for (const m of text.matchAll(re)) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

function writes(kubeconfig: string): { records: Record<string, number>; events: Record<string, number> } {
  const texts = operatorMetrics(kubeconfig);
  return {
    records: metric(texts, 'container_auditor_record_writes'),
    events: metric(texts, 'container_auditor_event_writes'),
  };
}

const delta = (after: Record<string, number>, before: Record<string, number>, keys: string[]): number =>
  keys.reduce((sum, k) => sum + (after[k] ?? 0) - (before[k] ?? 0), 0);

/** The operator's --flush-ms from its Deployment's arguments (the chart's operator.flushMilliseconds). */
function flushWindow(kubeconfig: string): string {
  try {
    const args = JSON.parse(
      kubectlOk(kubeconfig, [
        'get',
        'deployment',
        '-n',
        SYSTEM_NS,
        OPERATOR,
        '-o',
        'jsonpath={.spec.template.spec.containers[0].args}',
      ]),
    ) as string[];
    const flag = args.find((a) => a.startsWith('--flush-ms='));
    if (flag)
      return `${flag.slice('--flush-ms='.length)} ms (--flush-ms, the chart's operator.flushMilliseconds)`;
  } catch {
    // gone: say the default
  }
  return `${DEFAULT_FLUSH_MS} ms (default: no --flush-ms)`;
}

async function bench(options: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (a Kubernetes node, bpftrace)');
  const started = nowMs();
  const dir = mkdtempSync(join(tmpdir(), 'ca-demo-bench-'));
  const commandsFile = join(dir, 'warmup.txt');
  const warmup = `: warmup-${RUN}`;
  writeFileSync(commandsFile, `${warmup}\n`);
  const env = privateDemoEnv({ dir, commandsFile, build: true });
  const kubeconfig = demoKubeconfig(env);
  const s: Scratch = { dir, env };
  scratch = s;
  atCleanup(() => cleanup(s));

  progress(
    `starting the demo in ${dir} (${env.DEMO_NODE_DIR ? `on the node in ${env.DEMO_NODE_DIR}` : 'its own node'})`,
  );
  await demoUp(env);
  rmSync(commandsFile, { force: true });
  checkpoint();
  const upSeconds = (nowMs() - started) / 1000;

  // The watch: every AuditRecord of the namespace as it changes, as kubectl prints it: pretty JSON objects one
  // after another, each ending with a line that is only `}`.
  const seen = new Map<string, number>();
  let watchReady = false;
  s.watch = spawn(
    KUBECTL,
    ['--kubeconfig', kubeconfig, 'get', 'auditrecords', '-n', NS, '-w', '-o', 'json'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let object: string[] = [];
  createInterface({ input: s.watch.stdout! }).on('line', (line) => {
    object.push(line);
    if (line !== '}') return;
    const at = nowMs();
    const record = JSON.parse(object.join('\n')) as { status?: { commands?: { command: string }[] } };
    object = [];
    for (const { command } of record.status?.commands ?? []) {
      if (command === warmup) watchReady = true;
      if (!seen.has(command)) seen.set(command, at);
    }
  });
  let watchErr = '';
  s.watch.stderr!.on('data', (d: Buffer) => (watchErr += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!watchReady) {
    checkpoint();
    if (s.watch.exitCode !== null || Date.now() > deadline)
      throw new Error(`the AuditRecord watch did not show the demo's line: ${watchErr}`);
    await sleep(50);
  }

  await sleep(METRICS_SYNC_MS);
  const before = writes(kubeconfig);

  s.terminal = Terminal.open(
    [KUBECTL, '--kubeconfig', kubeconfig, 'exec', '-it', '-n', NS, 'web', '-c', 'app', '--', 'bash', '-i'],
    env,
  );
  const terminal = s.terminal;
  const lines = Array.from({ length: options.commands }, (_, i) => `: lat-${RUN}-${i}`);
  const typedAt = new Map<string, number>();
  const interval = 1000 / options.rate;
  progress(`typing ${lines.length} lines at ${options.rate}/s into bash -i in ${NS}/web (kubectl exec -it)`);
  const typingStart = nowMs();
  for (const [i, line] of lines.entries()) {
    checkpoint();
    await terminal.waitForOutput(BASH_PROMPT, 20_000, i + 1);
    const due = typingStart + i * interval;
    if (due > nowMs()) await sleep(due - nowMs());
    typedAt.set(line, nowMs());
    terminal.type(`${line}\n`);
    progressCount('typed', i + 1, lines.length);
  }
  const typingSeconds = (nowMs() - typingStart) / 1000;

  const waitUntil = Date.now() + options.timeoutMs;
  while (lines.some((l) => !seen.has(l)) && Date.now() < waitUntil) {
    checkpoint();
    if (s.watch.exitCode !== null) throw new Error(`the AuditRecord watch exited: ${watchErr}`);
    await sleep(50);
  }
  const missing = lines.filter((l) => !seen.has(l)).length;
  await sleep(METRICS_SYNC_MS);
  const after = writes(kubeconfig);
  terminal.type('exit\n');
  await terminal.waitForExit(10_000).catch(() => terminal.kill());

  const latencies = sortNum(lines.filter((l) => seen.has(l)).map((l) => seen.get(l)! - typedAt.get(l)!));
  const recordWrites = delta(after.records, before.records, ['creates', 'statusWrites', 'conflicts']);
  const eventWrites = delta(after.events, before.events, ['created', 'aggregated', 'summaries']);
  const per1000 = (n: number): string => f((n * 1000) / lines.length, 0);
  const rows: string[][] = [
    ['commands typed / seen in the API server', `${lines.length} / ${latencies.length}`],
    ['typing rate (lines/s, achieved)', f(lines.length / typingSeconds, 2)],
    ['latency p50 (ms)', f(quantile(latencies, 0.5), 0)],
    ['latency p90 (ms)', f(quantile(latencies, 0.9), 0)],
    ['latency p99 (ms)', f(quantile(latencies, 0.99), 0)],
    ['latency max (ms)', f(latencies.at(-1) ?? NaN, 0)],
    [
      'AuditRecord writes (creates + status writes + conflicts)',
      `${recordWrites} (${per1000(recordWrites)} per 1,000 commands)`,
    ],
    [
      'Event writes (created + aggregated + summaries)',
      `${eventWrites} (${per1000(eventWrites)} per 1,000 commands)`,
    ],
    ["operator's flush window", flushWindow(kubeconfig)],
  ];
  console.log(
    `\ndemo-latency: typed into bash -i (kubectl exec -it) -> AuditRecord command seen by kubectl -w; ` +
      `demo up took ${f(upSeconds, 0)} s\n`,
  );
  console.log(table(['measure', 'value'], rows));
  const outcomes = (a: Record<string, number>, b: Record<string, number>): string =>
    Object.keys(a)
      .map((k) => `${k} +${(a[k] ?? 0) - (b[k] ?? 0)}`)
      .join(', ');
  console.log(
    `\nrecord_writes: ${outcomes(after.records, before.records)}\nevent_writes: ${outcomes(after.events, before.events)}`,
  );
  if (missing > 0) throw new Error(`${missing} of ${lines.length} lines were not seen within the timeout`);
}

await runBench({
  name: 'demo-latency bench',
  parse: parseOptions,
  run: bench,
  explain: () => (scratch ? `demo logs: ${join(scratch.dir, 'logs')} (removed by cleanup)` : undefined),
});
