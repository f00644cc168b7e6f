/**
 * The probe server with real informers behind /readyz: not ready (503, saying which informer and why) until
 * they have synced, ready after; /healthz and /metrics answer; close() returns even with a client holding a
 * keep-alive connection.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { CoreV1Api } from '@kubernetes/client-node';
import { PODS, type ResourceType } from '../../common/kube/resources.js';
import type { RawObject } from '../../common/kube/objects.js';
import { testKubeConfig } from '../../e2e/support/cluster.js';
import { ProbeServer } from '../../common/http/probe-server.js';
import { type Informer, createInformer } from './informer.js';
import { METRICS_CONTENT_TYPE, MetricsRegistry } from './metrics.js';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const namespace = `probes-${randomBytes(3).toString('hex')}`;
const FAST_BACKOFF = { initialMs: 100, maxMs: 500, factor: 2, jitter: 0.5 };
const agent = new Agent({ keepAlive: true });

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

function get(port: number, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'],
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

async function eventually(
  what: string,
  predicate: () => Promise<boolean>,
  deadlineMs = 30_000,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A resource no API server serves: its informer can never sync. */
const MISSING: ResourceType<RawObject> = {
  group: 'nothing.example.com',
  version: 'v1',
  plural: 'absents',
  kind: 'Absent',
  namespaced: false,
};

const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

afterAll(async () => {
  agent.destroy();
  await core.deleteNamespace({ name: namespace });
});

async function serve(registry: MetricsRegistry, ...informers: Pick<Informer<RawObject>, 'notReadyReason'>[]) {
  const server = new ProbeServer({
    registry,
    readinessChecks: informers.map((i) => () => i.notReadyReason()),
    port: 0,
    host: '127.0.0.1',
  });
  const port = await server.listen();
  stops.push(() => server.close());
  return { server, port };
}

describe('ProbeServer', () => {
  it('is alive at once, ready once the informers have synced, and serves metrics', async () => {
    const registry = new MetricsRegistry();
    const pods = createInformer(kc, PODS, { namespace, metrics: registry, backoff: FAST_BACKOFF });
    stops.push(() => pods.stop());
    const { port } = await serve(registry, pods);

    expect(await get(port, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    const before = await get(port, '/readyz');
    expect(before.status).toBe(503);
    expect(before.body).toBe(`informer pods (namespace=${namespace}) has not synced\n`);

    pods.start();
    await pods.synced;
    expect(await get(port, '/readyz')).toMatchObject({ status: 200, body: 'ok\n' });

    const metrics = await get(port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.contentType).toBe(METRICS_CONTENT_TYPE);
    expect(metrics.body).toContain('# TYPE container_auditor_informer_synced gauge\n');
    expect(metrics.body).toContain(
      `container_auditor_informer_synced{resource="pods (namespace=${namespace})"} 1\n`,
    );

    expect((await get(port, '/nothing')).status).toBe(404);
    expect((await get(port, '/healthz', 'POST')).status).toBe(405);
    expect(await get(port, '/healthz', 'HEAD')).toMatchObject({ status: 200, body: '' });
  });

  it('says why it is not ready when an informer cannot list', async () => {
    const registry = new MetricsRegistry();
    const missing = createInformer(kc, MISSING, { backoff: FAST_BACKOFF });
    stops.push(() => missing.stop());
    missing.start();
    const { port } = await serve(registry, missing);
    await eventually('the reason names the failure', async () =>
      (await get(port, '/readyz')).body.includes('404'),
    );
    const answer = await get(port, '/readyz');
    expect(answer.status).toBe(503);
    expect(answer.body).toMatch(
      /^informer absents\.nothing\.example\.com has not synced: not-found \(404\): 404 page not found$/m,
    );
  });

  it('closes with a client still holding a keep-alive connection', async () => {
    const { server, port } = await serve(new MetricsRegistry());
    expect((await get(port, '/healthz')).status).toBe(200); // leaves an idle keep-alive connection
    await server.close();
    await expect(get(port, '/healthz')).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);
  });
});
