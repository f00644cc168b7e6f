/**
 * End-to-end latency on the real demo stack (e2e/demo/demo.sh): from a command typed into `bash -i` in the
 * audited pod to the moment its AuditRecord command is visible in the API server, and the API writes it took.
 *
 * The demo runs in a private directory under /tmp on free ports (as e2e/demo/demo.node.test.ts starts it),
 * so it never meets a user's `make demo`: a control plane, containerd with the runc wrapper, the operator and
 * the agent as processes, the sample policy, Pod shop/web. Lines `: lat-<i>` are typed into one `bash -i`
 * through `crictl exec -it` under script(1), each once bash shows its prompt, at a steady rate. A
 * `kubectl get auditrecords -n shop -w` notes the first time each line is seen in an AuditRecord; the latency
 * of a line is that moment minus the moment it was written to the terminal.
 *
 * API writes come from the operator's /metrics (its probe port): `container_auditor_record_writes`
 * (creates + statusWrites + conflicts) and `container_auditor_event_writes` (created + aggregated +
 * summaries), read before and after, scaled to 1,000 commands. The gauges are synced every 2 s, hence the
 * waits around the readings.
 *
 * Root only, after `make build` (and e2e/cluster/build.sh: demo.sh runs with DEMO_BUILD=0). Prints one table on
 * stdout, progress on stderr. `demo.sh down` on the private directory at the end, on Ctrl-C too.
 *
 *   make build && node dist/bench/demo-latency.js [--commands 200] [--rate 5]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_FLUSH_MS } from '../operator/ingest/records-writer.js';
import { KUBECTL } from '../e2e/support/paths.js';
import { DEMO_SCRIPT, privateDemoEnv } from '../e2e/support/private-demo.js';
import { Terminal } from '../e2e/support/terminal.js';
import { BASH_PROMPT, CRICTL } from '../e2e/stack/stack.js';
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

/** The operator's gauges of one metric, by outcome. */
async function metric(probePort: string, name: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${probePort}/metrics`)).text();
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{outcome="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out[m[1]!] = Number(m[2]);
  return out;
}

async function writes(
  probePort: string,
): Promise<{ records: Record<string, number>; events: Record<string, number> }> {
  return {
    records: await metric(probePort, 'container_auditor_record_writes'),
    events: await metric(probePort, 'container_auditor_event_writes'),
  };
}

const delta = (after: Record<string, number>, before: Record<string, number>, keys: string[]): number =>
  keys.reduce((sum, k) => sum + (after[k] ?? 0) - (before[k] ?? 0), 0);

/** The operator's --flush-ms from its command line, or the default it runs with. */
function flushWindow(dir: string): string {
  try {
    const pid = readFileSync(join(dir, 'run', 'operator.pid'), 'utf8').trim();
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('--flush-ms');
    if (i >= 0 && argv[i + 1]) return `${argv[i + 1]} ms (--flush-ms)`;
  } catch {
    // gone: say the default
  }
  return `${DEFAULT_FLUSH_MS} ms (default; demo.sh passes no --flush-ms)`;
}

async function bench(options: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (containerd, runc, bpftrace)');
  for (const bin of [KUBECTL, CRICTL])
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run make build and bash e2e/cluster/build.sh`);
  const started = nowMs();
  const dir = mkdtempSync(join(tmpdir(), 'ca-demo-bench-'));
  const commandsFile = join(dir, 'warmup.txt');
  const warmup = `: warmup-${RUN}`;
  writeFileSync(commandsFile, `${warmup}\n`);
  const env = await privateDemoEnv({ dir, node: `demo-bench-${RUN}`, commandsFile });
  const s: Scratch = { dir, env };
  scratch = s;
  atCleanup(() => cleanup(s));

  progress(
    `starting the demo in ${dir} (apiserver :${env.DEMO_APISERVER_PORT}, probes :${env.DEMO_PROBE_PORT})`,
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
    ['--kubeconfig', join(dir, 'cluster', 'kubeconfig'), 'get', 'auditrecords', '-n', NS, '-w', '-o', 'json'],
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

  const probe = env.DEMO_PROBE_PORT!;
  await sleep(METRICS_SYNC_MS);
  const before = await writes(probe);

  const containerId = /^CONTAINER_ID=(.+)$/m.exec(readFileSync(join(dir, 'demo.env'), 'utf8'))?.[1];
  if (!containerId) throw new Error('no CONTAINER_ID in demo.env');
  s.terminal = Terminal.open(
    [CRICTL, '--config', join(dir, 'stack', 'crictl.yaml'), 'exec', '-it', containerId, 'bash', '-i'],
    env,
  );
  const terminal = s.terminal;
  const lines = Array.from({ length: options.commands }, (_, i) => `: lat-${RUN}-${i}`);
  const typedAt = new Map<string, number>();
  const interval = 1000 / options.rate;
  progress(
    `typing ${lines.length} lines at ${options.rate}/s into bash -i in ${NS}/web (container ${containerId.slice(0, 12)})`,
  );
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
  const after = await writes(probe);
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
    ["operator's flush window", flushWindow(dir)],
  ];
  console.log(
    `\ndemo-latency: typed into bash -i (crictl exec -it) -> AuditRecord command seen by kubectl -w; ` +
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
