/**
 * The informer's loop against an in-memory server (list with paging, watches with events, injected
 * failures), on a fake clock: which events reach the handlers, when it lists again, and how long it waits.
 */
import { KubeError } from '../../common/kube/errors.js';
import { FakeClock, settle } from '../../test-support/fake-clock.js';
import { Informer, type InformerHandler } from './informer.js';
import type { ListPage, ListerWatcher, WatchEvent, WatchEventType, WatchStream } from './list-watch.js';
import { WatchAbortedError } from './list-watch.js';

interface Thing {
  metadata: { name: string; namespace?: string; resourceVersion: string };
  value?: string;
}

interface FakeWatch {
  resourceVersion: string;
  timeoutSeconds: number;
  onEvent: (event: WatchEvent<Thing>) => void;
  end: (error?: Error) => void;
  open: boolean;
}

/** An API server for one resource: objects, a resourceVersion counter, watches, and failures on demand. */
class FakeServer implements ListerWatcher<Thing> {
  readonly description = 'things';
  private readonly objects = new Map<string, Thing>();
  private rv = 100;
  readonly listCalls: { limit: number; continueToken?: string }[] = [];
  readonly watches: FakeWatch[] = [];
  readonly listFailures: Error[] = [];

  put(name: string, value: string, namespace?: string): Thing {
    const key = namespace ? `${namespace}/${name}` : name;
    const existed = this.objects.has(key);
    const object = { metadata: { name, namespace, resourceVersion: String(++this.rv) }, value };
    this.objects.set(key, object);
    this.broadcast(existed ? 'MODIFIED' : 'ADDED', object);
    return object;
  }

  remove(name: string, namespace?: string): void {
    const key = namespace ? `${namespace}/${name}` : name;
    const object = this.objects.get(key)!;
    this.objects.delete(key);
    const deleted = { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.rv) } };
    this.broadcast('DELETED', deleted);
  }

  /** Changes without telling the watches: what happens while a watch is down. */
  putQuietly(name: string, value: string): void {
    this.objects.set(name, { metadata: { name, resourceVersion: String(++this.rv) }, value });
  }

  removeQuietly(name: string): void {
    this.objects.delete(name);
    this.rv++;
  }

  broadcast(type: WatchEventType, object: Thing): void {
    for (const w of this.watches) if (w.open) w.onEvent({ type, object });
  }

  get current(): FakeWatch | undefined {
    return this.watches.filter((w) => w.open).at(-1);
  }

  list(options: { limit: number; continueToken?: string }): Promise<ListPage<Thing>> {
    this.listCalls.push(options);
    const failure = this.listFailures.shift();
    if (failure) return Promise.reject(failure);
    const all = [...this.objects.values()];
    const start = Number(options.continueToken ?? 0);
    const end = start + options.limit;
    return Promise.resolve({
      items: all.slice(start, end),
      resourceVersion: String(this.rv),
      continueToken: end < all.length ? String(end) : undefined,
    });
  }

  watch(
    options: { resourceVersion: string; timeoutSeconds: number },
    onEvent: (event: WatchEvent<Thing>) => void,
  ): WatchStream {
    let end: (error?: Error) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      end = (error) => {
        if (!watch.open) return;
        watch.open = false;
        if (error) reject(error);
        else resolve();
      };
    });
    done.catch(() => {});
    const watch: FakeWatch = { ...options, onEvent, end: (e) => end(e), open: true };
    this.watches.push(watch);
    return { done, abort: () => end(new WatchAbortedError('aborted')) };
  }
}

const BACKOFF = { initialMs: 100, maxMs: 1_000, factor: 2, jitter: 0.5 };

function setup() {
  const server = new FakeServer();
  const clock = new FakeClock();
  const informer = new Informer(server, {
    clock,
    random: () => 0,
    backoff: BACKOFF,
    pageSize: 2,
    watchTimeoutSeconds: 60,
  });
  const events: string[] = [];
  const handler: InformerHandler<Thing> = {
    add: (o) => events.push(`add ${o.metadata.name}=${o.value}`),
    update: (old, o) => events.push(`update ${o.metadata.name} ${old.value}->${o.value}`),
    delete: (o) => events.push(`delete ${o.metadata.name}`),
  };
  informer.on(handler);
  return { server, clock, informer, events };
}

describe('Informer', () => {
  it('lists (in pages), syncs, then follows the watch from the listed resourceVersion', async () => {
    const { server, informer, events } = setup();
    server.put('a', '1');
    server.put('b', '1', 'ns1');
    server.put('c', '1', 'ns2');
    expect(informer.notReadyReason()).toBe('informer things has not synced');
    informer.start();
    await informer.synced;
    expect(informer.hasSynced()).toBe(true);
    expect(informer.notReadyReason()).toBeUndefined();
    expect(server.listCalls).toEqual([{ limit: 2 }, { limit: 2, continueToken: '2' }]);
    expect(events).toEqual(['add a=1', 'add b=1', 'add c=1']);
    await settle();
    expect(server.current?.resourceVersion).toBe('103');

    server.put('a', '2');
    server.put('d', '1');
    server.remove('c', 'ns2');
    server.broadcast('MODIFIED', informer.get('a')!); // same resourceVersion: nothing changed
    expect(events.slice(3)).toEqual(['update a 1->2', 'add d=1', 'delete c']);
    expect(informer.keys().sort()).toEqual(['a', 'd', 'ns1/b']);
    expect(informer.getByName('b', 'ns1')?.value).toBe('1');
    expect(informer.list('ns1').map((o) => o.metadata.name)).toEqual(['b']);
    expect(informer.size).toBe(3);
    await informer.stop();
  });

  it('after a watch failure, waits its backoff, lists again and delivers what changed meanwhile', async () => {
    const { server, clock, informer, events } = setup();
    server.put('keep', '1');
    server.put('change', '1');
    server.put('gone', '1');
    informer.start();
    await informer.synced;
    await settle();
    events.length = 0;

    server.current!.end(new KubeError('transient', undefined, undefined, 'ECONNRESET'));
    server.putQuietly('change', '2');
    server.removeQuietly('gone');
    server.putQuietly('new', '1');
    await settle();
    expect(server.listCalls).toHaveLength(2); // the first sync's two pages; no relist yet

    await clock.advance(99);
    expect(server.listCalls).toHaveLength(2);
    await clock.advance(1);
    expect(server.listCalls).toHaveLength(4);
    expect(events).toEqual(['update change 1->2', 'add new=1', 'delete gone']);
    expect(informer.hasSynced()).toBe(true);
    expect(server.current?.open).toBe(true);
    await informer.stop();
  });

  it('lists again at once when the resourceVersion has expired (410)', async () => {
    const { server, informer } = setup();
    server.put('a', '1');
    informer.start();
    await informer.synced;
    await settle();
    server.current!.end(new KubeError('gone', 410, 'Expired', 'too old resource version'));
    await settle();
    expect(server.listCalls).toHaveLength(2);
    expect(server.current?.open).toBe(true);
    await informer.stop();
  });

  it('backs off when the resourceVersion expires twice in a row', async () => {
    const { server, clock, informer } = setup();
    informer.start();
    await informer.synced;
    await settle();
    const gone = () => new KubeError('gone', 410, 'Expired', 'too old resource version');
    server.current!.end(gone());
    await settle();
    expect(server.listCalls).toHaveLength(2);
    server.current!.end(gone());
    await settle();
    expect(server.listCalls).toHaveLength(2);
    await clock.advance(100);
    expect(server.listCalls).toHaveLength(3);
    await informer.stop();
  });

  it('watches again from the last resourceVersion seen when the server ends a watch, without listing', async () => {
    const { server, informer } = setup();
    informer.start();
    await informer.synced;
    await settle();
    server.put('a', '1');
    server.broadcast('BOOKMARK', { metadata: { name: '', resourceVersion: '150' } });
    server.current!.end();
    await settle();
    expect(server.listCalls).toHaveLength(1);
    expect(server.watches.map((w) => w.resourceVersion)).toEqual(['100', '150']);
    expect(informer.keys()).toEqual(['a']); // a bookmark is not an object
    await informer.stop();
  });

  it('retries a failing first list with growing delays, saying why it is not ready', async () => {
    const { server, clock, informer } = setup();
    const forbidden = new KubeError('forbidden', 403, 'Forbidden', 'cannot list things');
    server.listFailures.push(forbidden, forbidden, forbidden);
    informer.start();
    await settle();
    expect(informer.notReadyReason()).toBe(
      'informer things has not synced: forbidden (403 Forbidden): cannot list things',
    );
    const times: number[] = [];
    const start = clock.now();
    for (let i = 0; i < 3; i++) {
      const before = server.listCalls.length;
      while (server.listCalls.length === before) await clock.advance(10);
      times.push(clock.now() - start);
    }
    expect(times).toEqual([100, 300, 700]);
    expect(informer.hasSynced()).toBe(true);
    await informer.stop();
  });

  it('gives up on a watch that stays silent past its timeout and lists again', async () => {
    const { server, clock, informer } = setup();
    informer.start();
    await informer.synced;
    await settle();
    const silent = server.current!;
    await clock.advance((60 + 30) * 1000 - 1);
    expect(silent.open).toBe(true);
    await clock.advance(1);
    expect(silent.open).toBe(false);
    await clock.advance(100);
    expect(server.listCalls).toHaveLength(2);
    expect(server.current?.open).toBe(true);
    await informer.stop();
  });

  it('keeps going, and keeps calling the other handlers, when a handler throws', async () => {
    const { server, informer, events } = setup();
    informer.on({
      add: () => {
        throw new Error('handler bug');
      },
    });
    informer.start();
    await informer.synced;
    await settle();
    server.put('a', '1');
    server.put('b', '1');
    expect(events).toEqual(['add a=1', 'add b=1']);
    await informer.stop();
  });

  it('gives a handler added late the cached objects as adds first', async () => {
    const { server, informer } = setup();
    server.put('a', '1');
    informer.start();
    await informer.synced;
    const late: string[] = [];
    const off = informer.on({ add: (o) => late.push(o.metadata.name) });
    expect(late).toEqual(['a']);
    off();
    await settle();
    server.put('b', '1');
    expect(late).toEqual(['a']);
    await informer.stop();
  });

  it('stop ends the watch; stopping before the first sync rejects `synced`', async () => {
    const { server, informer } = setup();
    server.listFailures.push(new Error('down'));
    informer.start();
    await settle();
    await informer.stop();
    await expect(informer.synced).rejects.toThrow(/stopped before it synced/);

    const second = setup();
    second.informer.start();
    await second.informer.synced;
    await settle();
    const watch = second.server.current!;
    await second.informer.stop();
    expect(watch.open).toBe(false);
    second.server.broadcast('ADDED', { metadata: { name: 'late', resourceVersion: '999' } });
    expect(second.informer.keys()).toEqual([]);
  });
});
