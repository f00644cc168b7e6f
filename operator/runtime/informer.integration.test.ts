/**
 * Informers against the real kube-apiserver of the integration tier: core Pods and our cluster-scoped
 * ContainerAuditPolicy deliver adds, updates and deletes; an informer whose connections are cut (through a
 * TCP proxy we control: the watch breaks and lists are refused for a while) recovers on its own and
 * delivers what changed while it was away; watches that the server ends, or that client-node gives up on
 * after 30 s of silence, resume without relisting.
 */
import { randomBytes } from 'node:crypto';
import { type Server, type Socket, connect, createServer } from 'node:net';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { GROUP, POLICY_KIND, POLICY_PLURAL, VERSION } from '../../api/v1alpha1/index.js';
import { CONTAINER_AUDIT_POLICIES, PODS } from '../../common/kube/resources.js';
import type { ObjectWithMeta } from '../../common/kube/objects.js';
import { installCrds, testKubeConfig } from '../../e2e/support/cluster.js';
import { Informer, createInformer } from './informer.js';
import { type ListerWatcher, kubeListerWatcher } from './list-watch.js';
import { MetricsRegistry } from './metrics.js';

const FAST_BACKOFF = { initialMs: 100, maxMs: 1_000, factor: 2, jitter: 0.5 };

/** Polls until `predicate` holds; fails with `what` after a generous deadline. */
async function eventually(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  deadlineMs = 30_000,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Records what the handlers are told, as short strings. */
function recorder<T extends ObjectWithMeta>(informer: Informer<T>, label: (o: T) => string = () => '') {
  const events: string[] = [];
  informer.on({
    add: (o) => events.push(`add ${o.metadata?.name}${label(o)}`),
    update: (_old, o) => events.push(`update ${o.metadata?.name}${label(o)}`),
    delete: (o) => events.push(`delete ${o.metadata?.name}`),
  });
  return events;
}

function pod(name: string) {
  return {
    metadata: { name, labels: { app: 'informer-test' } },
    spec: { containers: [{ name: 'c', image: 'x' }] },
  };
}

/**
 * A TCP proxy to the API server that a test can cut: `cut` closes every connection through it and refuses
 * new ones (a network partition, as the informer sees it), `resume` accepts again on the same port.
 */
class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  resume(): Promise<void> {
    return this.start();
  }
}

/** The test KubeConfig, pointed at another server address (the proxy). */
function viaServer(kc: KubeConfig, server: string): KubeConfig {
  const current = kc.getCurrentCluster()!;
  kc.loadFromOptions({
    clusters: kc.clusters.map((c) => (c.name === current.name ? { ...c, server } : c)),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return kc;
}

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const suffix = randomBytes(3).toString('hex');
const namespace = `informer-${suffix}`;
const informers: Informer<ObjectWithMeta>[] = [];

function track<T extends ObjectWithMeta>(informer: Informer<T>): Informer<T> {
  informers.push(informer);
  return informer;
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await installCrds();
});

afterEach(async () => {
  await Promise.all(informers.splice(0).map((i) => i.stop()));
});

afterAll(async () => {
  await core.deleteNamespace({ name: namespace });
});

describe('Informer against the API server', () => {
  it('delivers pods as the server sends them: adds (listed and watched), updates and deletes', async () => {
    await core.createNamespacedPod({ namespace, body: pod('before') });
    const informer = track(createInformer(kc, PODS, { namespace, backoff: FAST_BACKOFF }));
    const events = recorder(informer, (p) => ` ${p.metadata?.labels?.stage ?? '-'}`);
    informer.start();
    await informer.synced;
    expect(events).toEqual(['add before -']);

    // Listed items get apiVersion and kind like watched ones, and timestamps stay strings (Wire<V1Pod>).
    const listed = informer.getByName('before', namespace)!;
    expect(listed).toMatchObject({ apiVersion: 'v1', kind: 'Pod' });
    expect(typeof listed.metadata?.creationTimestamp).toBe('string');

    await core.createNamespacedPod({ namespace, body: pod('web') });
    await eventually('the new pod is added', () => events.includes('add web -'));
    expect(typeof informer.getByName('web', namespace)?.metadata?.creationTimestamp).toBe('string');

    // A merge patch: client-node sends JSON Patch unless told otherwise.
    await core.patchNamespacedPod(
      { namespace, name: 'web', body: { metadata: { labels: { stage: 'two' } } } },
      mergePatch,
    );
    await eventually('the update is delivered', () => events.includes('update web two'));

    await core.deleteNamespacedPod({ namespace, name: 'web' });
    await eventually('the delete is delivered', () => events.includes('delete web'));
    expect(informer.keys()).toEqual([`${namespace}/before`]);
  });

  it('delivers a cluster-scoped custom resource, selected by label, unvalidated', async () => {
    const label = `informer-${suffix}`;
    const informer = track(
      createInformer(kc, CONTAINER_AUDIT_POLICIES, { labelSelector: `test=${label}`, backoff: FAST_BACKOFF }),
    );
    const events = recorder(informer, (p) => ` ${JSON.stringify((p.spec as { suspend?: boolean }).suspend)}`);
    informer.start();
    await informer.synced;
    const name = `policy-${suffix}`;
    const body = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: POLICY_KIND,
      metadata: { name, labels: { test: label } },
      spec: {},
    };
    await custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, body });
    await eventually('the policy is added', () => events.includes(`add ${name} false`));
    await custom.patchClusterCustomObject(
      { group: GROUP, version: VERSION, plural: POLICY_PLURAL, name, body: { spec: { suspend: true } } },
      mergePatch,
    );
    await eventually('the update is delivered', () => events.includes(`update ${name} true`));
    await custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, name });
    await eventually('the delete is delivered', () => events.includes(`delete ${name}`));
    expect(informer.get(name)).toBeUndefined();
  });

  it('recovers from cut connections and refused lists, and delivers what changed while it was away', async () => {
    const server = new URL(kc.getCurrentCluster()!.server);
    const proxy = new CuttableProxy(server.hostname, Number(server.port));
    await proxy.start();
    const proxied = viaServer(testKubeConfig(), `https://127.0.0.1:${proxy.port}`);
    const metrics = new MetricsRegistry();
    const informer = track(
      createInformer(proxied, PODS, {
        namespace,
        labelSelector: 'app=informer-test',
        backoff: FAST_BACKOFF,
        metrics,
      }),
    );
    await core.createNamespacedPod({ namespace, body: pod('stays') });
    await core.createNamespacedPod({ namespace, body: pod('changes') });
    await core.createNamespacedPod({ namespace, body: pod('goes') });
    const events = recorder(informer, (p) => ` ${p.metadata?.labels?.stage ?? '-'}`);
    informer.start();
    await informer.synced;
    await core.createNamespacedPod({ namespace, body: pod('watched') });
    await eventually('the watch works', () => events.includes('add watched -'));
    events.length = 0;

    await proxy.cut();
    await core.patchNamespacedPod(
      { namespace, name: 'changes', body: { metadata: { labels: { stage: 'away' } } } },
      mergePatch,
    );
    await core.deleteNamespacedPod({ namespace, name: 'goes' });
    await core.createNamespacedPod({ namespace, body: pod('arrives') });
    // Long enough for a few refused attempts: the informer must keep trying, not stop as ListWatch does.
    await eventually('the informer has failed a few times', async () => {
      const restarts = /container_auditor_informer_restarts_total\{[^}]*\} (\d+)/.exec(
        await metrics.metrics(),
      );
      return Number(restarts?.[1] ?? 0) >= 3;
    });
    expect(events).toEqual([]);
    expect(informer.hasSynced()).toBe(true); // the cache stays readable meanwhile

    await proxy.resume();
    await eventually('the changes made while away are delivered', () => events.length >= 3);
    expect(events.sort()).toEqual(['add arrives -', 'delete goes', 'update changes away']);
    expect(informer.keys().sort()).toEqual(
      ['arrives', 'before', 'changes', 'stays', 'watched'].map((n) => `${namespace}/${n}`),
    );

    // And it watches again.
    await core.createNamespacedPod({ namespace, body: pod('after') });
    await eventually('the watch works again', () => events.includes('add after -'));
    await informer.stop();
    await proxy.cut();
  });

  /** The pods of `labelSelector` in the test's namespace, through a ListerWatcher that counts its lists. */
  function countingLists(labelSelector: string) {
    const real = kubeListerWatcher(kc, PODS, { namespace, labelSelector });
    let count = 0;
    const counting: ListerWatcher<ObjectWithMeta> = {
      ...real,
      list: (options) => {
        count++;
        return real.list(options);
      },
    };
    return { counting, lists: () => count };
  }

  it('resumes from its resourceVersion, without listing again, when the server ends each watch', async () => {
    const { counting, lists } = countingLists('batch=timeouts');
    const informer = track(new Informer(counting, { watchTimeoutSeconds: 1, backoff: FAST_BACKOFF }));
    const events = recorder(informer);
    informer.start();
    await informer.synced;
    const names = ['t1', 't2', 't3', 't4', 't5'];
    for (const name of names) {
      await core.createNamespacedPod({
        namespace,
        body: { ...pod(name), metadata: { name, labels: { batch: 'timeouts' } } },
      });
      // Spread over several 1 s watches.
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    await eventually('every pod is added', () => events.length === names.length);
    expect(events).toEqual(names.map((n) => `add ${n}`));
    expect(lists()).toBe(1);
  });

  it('keeps watching through a silence longer than client-node’s 30 s watch timeout, without a relist', async () => {
    const { counting, lists } = countingLists('batch=quiet');
    const metrics = new MetricsRegistry();
    const informer = track(
      new Informer(counting, { watchTimeoutSeconds: 300, backoff: FAST_BACKOFF, metrics }),
    );
    const events = recorder(informer);
    informer.start();
    await informer.synced;
    // Nothing matches the selector: the API server sends nothing, and client-node gives the watch up at 30 s.
    await new Promise((resolve) => setTimeout(resolve, 35_000));
    await core.createNamespacedPod({
      namespace,
      body: { ...pod('q1'), metadata: { name: 'q1', labels: { batch: 'quiet' } } },
    });
    await eventually('the pod is added', () => events.includes('add q1'));
    expect(lists()).toBe(1);
    const restarts = /container_auditor_informer_restarts_total\{[^}]*\} (\d+)/.exec(await metrics.metrics());
    expect(Number(restarts?.[1] ?? 0)).toBe(0);
  });
});
