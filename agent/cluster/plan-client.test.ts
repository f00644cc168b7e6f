import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodePlan } from '../../api/agentapi/v1.js';
import { silentLogger } from '../../common/logging.js';
import { OperatorClient } from './operator-client.js';
import { PLAN_FILE, PlanClient } from './plan-client.js';
import { FakeOperator } from '../../test-support/fake-operator.js';

let dir: string;
let tokenFile: string;
let operator: FakeOperator;
let clients: PlanClient[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'plan-client-test-'));
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'token-1\n');
  operator = await FakeOperator.start({ token: 'token-1', waitMs: 300 });
  clients = [];
});
afterEach(async () => {
  for (const c of clients) await c.stop();
  await operator.down().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

function plan(version: string, node = 'node-a'): NodePlan {
  return {
    node,
    version,
    generatedAt: '2026-01-01T00:00:00Z',
    policies: {
      p: {
        capture: { interactiveShells: true, execs: false, maxCommandBytes: 4096 },
        redact: { builtins: true, patterns: [] },
        alerts: [],
        outputs: { events: true, auditRecords: true },
      },
    },
    containers: [{ podNamespace: 'ns', podName: 'pod', podUid: 'uid', containerName: 'c', policy: 'p' }],
  };
}

function client(): PlanClient {
  const c = new PlanClient({
    client: new OperatorClient({ url: operator.url, tokenFile }),
    node: 'node-a',
    stateDir: join(dir, 'state'),
    logger: silentLogger(),
    backoff: { initialMs: 10, maxMs: 50 },
    minPollIntervalMs: 50,
  });
  clients.push(c);
  return c;
}

/** The next plan `c` emits. */
function nextPlan(c: PlanClient): Promise<NodePlan> {
  return new Promise((resolve) => c.once('plan', resolve));
}

async function until(test: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the plan client', () => {
  it('long-polls with the version it has, and emits each new plan once', async () => {
    operator.setPlan(plan('v1'));
    const c = client();
    const first = nextPlan(c);
    c.start();
    await expect(first).resolves.toMatchObject({ version: 'v1' });
    expect(operator.requests[0]).toMatchObject({
      method: 'GET',
      path: '/v1/plan',
      query: { node: 'node-a' },
      authorization: 'Bearer token-1',
    });
    // The next polls carry v1 and wait; an unchanged plan is not emitted again.
    const emitted: string[] = [];
    c.on('plan', (p) => emitted.push(p.version));
    await until(() => operator.requests.filter((r) => r.query.version === 'v1').length >= 2);
    expect(emitted).toEqual([]);
    const second = nextPlan(c);
    operator.setPlan(plan('v2'));
    await expect(second).resolves.toMatchObject({ version: 'v2' });
    expect(c.current?.version).toBe('v2');
    expect(c.stats).toMatchObject({ plans: 2, invalid: 0 });
  });

  it('keeps the plan on disk, for an agent that restarts while the operator is away', async () => {
    operator.setPlan(plan('v1'));
    const c = client();
    const first = nextPlan(c);
    c.start();
    await first;
    await c.stop();
    await operator.down();
    const saved = JSON.parse(await readFile(join(dir, 'state', PLAN_FILE), 'utf8')) as NodePlan;
    expect(saved.version).toBe('v1');

    const restarted = client();
    await expect(restarted.loadPersisted()).resolves.toMatchObject({ version: 'v1' });
    restarted.start();
    await until(() => restarted.stats.failures >= 2);
    expect(restarted.current?.version).toBe('v1');
    expect(restarted.errors.list().at(-1)!.message).toMatch(/cannot reach the operator/);
  });

  it('refuses a kept plan that is not valid or is another node’s', async () => {
    const c = client();
    await expect(c.loadPersisted()).resolves.toBeUndefined(); // none yet
    await mkdir(join(dir, 'state'));
    await writeFile(join(dir, 'state', PLAN_FILE), JSON.stringify(plan('v1', 'node-b')));
    await expect(c.loadPersisted()).resolves.toBeUndefined();
    await writeFile(join(dir, 'state', PLAN_FILE), '{"node": "node-a"');
    await expect(c.loadPersisted()).resolves.toBeUndefined();
    expect(c.current).toBeUndefined();
  });

  it('keeps the last plan while the operator is down, and takes the next when it is back', async () => {
    operator.setPlan(plan('v1'));
    const c = client();
    const first = nextPlan(c);
    c.start();
    await first;
    await operator.down();
    await until(() => c.stats.failures >= 3);
    expect(c.current?.version).toBe('v1');
    operator.setPlan(plan('v2'));
    const back = nextPlan(c);
    await operator.up();
    await expect(back).resolves.toMatchObject({ version: 'v2' });
  });

  it('ignores a plan that is not valid, or not for this node, and keeps the last one', async () => {
    operator.setPlan(plan('v1'));
    const c = client();
    const first = nextPlan(c);
    c.start();
    await first;
    const emitted: string[] = [];
    c.on('plan', (p) => emitted.push(p.version));
    // Not a valid plan: an unknown field (the schema is strict), then another node's plan.
    operator.setPlan({ ...plan('v2'), extra: true } as NodePlan);
    await until(() => c.stats.invalid >= 1);
    operator.setPlan(plan('v3', 'node-b'), 'node-a');
    await until(() => c.stats.invalid >= 2);
    operator.setPlan({ ...plan('v3'), containers: [{ podUid: 7 }] } as unknown as NodePlan);
    await until(() => c.stats.invalid >= 3);
    expect(c.current?.version).toBe('v1');
    expect(emitted).toEqual([]);
    expect(c.errors.list().at(-1)!.message).toMatch(/not valid; keeping version v1/);
    operator.setPlan(plan('v4'));
    await until(() => emitted.length === 1);
    expect(emitted).toEqual(['v4']);
  });

  it('reads the token for every request, and retries while it is refused', async () => {
    let accepted = 'token-1';
    await operator.down();
    operator = await FakeOperator.start({ token: () => accepted, waitMs: 100 });
    operator.setPlan(plan('v1'));
    accepted = 'token-2'; // rotated on the server's side first
    const c = client();
    const first = nextPlan(c);
    c.start();
    await until(() => operator.requests.filter((r) => r.status === 401).length >= 2);
    expect(c.current).toBeUndefined();
    await writeFile(tokenFile, 'token-2\n'); // the kubelet writes the new token
    await expect(first).resolves.toMatchObject({ version: 'v1' });
    expect(operator.requests.at(-1)!.authorization).toBe('Bearer token-2');
  });

  it('backs off on an operator that is not ready (503)', async () => {
    operator.override = () => 503;
    const c = client();
    c.start();
    await until(() => c.stats.failures >= 3);
    const times = operator.requests.length;
    expect(times).toBeLessThan(20); // not a hot loop
    operator.override = undefined;
    operator.setPlan(plan('v1'));
    await until(() => c.current?.version === 'v1');
  });

  it('is ready once the operator answers with a plan in this run: not on a kept plan, not on a 503', async () => {
    operator.setPlan(plan('v1'));
    const first = client();
    const got = nextPlan(first);
    first.start();
    await got;
    await first.stop();

    // The next run starts with the kept v1, and the operator does not lead yet.
    operator.override = () => 503;
    const c = client();
    await c.loadPersisted();
    expect(c.notReadyReason).toBe('no plan from the operator yet');
    c.start();
    await until(() => c.stats.failures >= 2);
    expect(c.notReadyReason).toMatch(/^no plan from the operator yet \(last: the operator answered 503/);
    // It answers with the plan the agent already has ("same"): that is an answer.
    operator.override = undefined;
    await until(() => c.notReadyReason === undefined);
    expect(c.stats.plans).toBe(0);
    // An outage later does not make it unready: it goes on auditing with the plan it has.
    await operator.down();
    await until(() => c.stats.failures >= 3);
    expect(c.notReadyReason).toBeUndefined();
  });
});
