/**
 * An informer: a local cache of one resource, kept in step with the API server by list-then-watch, that
 * calls handlers on every change. Ours, not client-node's `ListWatch`, because that one (1.4 and 2.x alike)
 * stops for good on any error but 410 and its own watch timeout (a list that fails once, a connection reset,
 * a 403 while RBAC propagates), and its typed lists turn timestamps into `Date`s that its watch delivers as
 * strings (docs/adr/0005).
 *
 * The loop: list (paged) and replace the cache, calling add/update/delete for the differences, then watch
 * from the list's resourceVersion. When the server ends the watch (timeoutSeconds), watch again from the
 * last resourceVersion seen (bookmarks included). When the resourceVersion is too old (410 Gone), list again
 * at once. On any other failure (of the list or the watch, or a watch silent for longer than its own
 * timeout: a half-open connection), wait with jittered exponential backoff, then list again: a relist
 * delivers whatever changed meanwhile, deletions included. The cache stays readable throughout. (The
 * production `ListerWatcher` ends a watch silent for 30 s before that, normally: see list-watch.ts; the
 * check here is for any other.)
 *
 * Objects are delivered as the server sends them (see common/kube/objects.ts `Wire`), unvalidated: a
 * consumer of our CRDs parses them with the api/ schemas. Handlers run synchronously in event order and
 * must not mutate the objects they are given: the cache holds the same objects.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { describeError, isGone } from '../../common/kube/errors.js';
import { type ObjectWithMeta, keyOf, objectKey } from '../../common/kube/objects.js';
import type { ResourceType } from '../../common/kube/resources.js';
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { type BackoffPolicy, backoffDelay } from '../../common/backoff.js';
import { type Clock, type Timer, realClock, sleep } from '../../common/clock.js';
import {
  type ListWatchOptions,
  type ListerWatcher,
  type WatchEvent,
  type WatchStream,
  kubeListerWatcher,
} from './list-watch.js';
import type { Counter, Gauge, MetricsRegistry } from './metrics.js';

export interface InformerHandler<T> {
  add?(object: T): void;
  update?(old: T, object: T): void;
  /** The object's last state: from the DELETED event, or the cache's when a relist finds it gone. */
  delete?(object: T): void;
}

export interface InformerOptions {
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  /** Between failed attempts; defaults to 0.5 s doubling to 30 s, plus up to 50 % jitter. */
  backoff?: BackoffPolicy;
  /** Objects per list page (default 500). */
  pageSize?: number;
  /** How long the server keeps each watch open; default drawn from [300, 600) s per watch. */
  watchTimeoutSeconds?: number;
  metrics?: MetricsRegistry;
}

export const DEFAULT_INFORMER_BACKOFF: BackoffPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.5,
};

/** A watch silent this long past its own timeout is taken for a dead connection. */
const STALL_GRACE_SECONDS = 30;

export class Informer<T extends ObjectWithMeta> {
  /** Resolves once the first list is in the cache; rejects if the informer is stopped before that. */
  readonly synced: Promise<void>;
  readonly description: string;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: BackoffPolicy;
  private readonly pageSize: number;
  private store = new Map<string, T>();
  private readonly handlers = new Set<InformerHandler<T>>();
  private resourceVersion = '';
  private isSynced = false;
  private lastError: string | undefined;
  private running: Promise<void> | undefined;
  private readonly stopping = new AbortController();
  private stream: WatchStream | undefined;
  private resolveSynced: () => void = () => {};
  private rejectSynced: (error: Error) => void = () => {};
  private readonly syncedGauge?: Gauge;
  private readonly objectsGauge?: Gauge;
  private readonly restartsCounter?: Counter;

  constructor(
    private readonly source: ListerWatcher<T>,
    private readonly options: InformerOptions = {},
  ) {
    this.description = source.description;
    this.logger = options.logger ?? silentLogger();
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.backoff = options.backoff ?? DEFAULT_INFORMER_BACKOFF;
    this.pageSize = options.pageSize ?? 500;
    this.synced = new Promise<void>((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    // Awaiting `synced` is optional; an informer stopped early must not crash the process with it.
    this.synced.catch(() => {});
    const m = options.metrics;
    const labels = ['resource'];
    this.syncedGauge = m?.gauge(
      'container_auditor_informer_synced',
      'Whether the informer has synced.',
      labels,
    );
    this.objectsGauge = m?.gauge(
      'container_auditor_informer_objects',
      'Objects in the informer cache.',
      labels,
    );
    this.restartsCounter = m?.counter(
      'container_auditor_informer_restarts_total',
      'Lists and watches that failed and were started again.',
      labels,
    );
    this.syncedGauge?.labels({ resource: this.description }).set(0);
  }

  /**
   * Adds a handler; returns its removal. A handler added after objects are cached is first given each of
   * them as an add, so that it starts from the same picture as the others.
   */
  on(handler: InformerHandler<T>): () => void {
    this.handlers.add(handler);
    for (const object of this.store.values()) this.safely('add', () => handler.add?.(object));
    return () => this.handlers.delete(handler);
  }

  start(): void {
    if (this.running || this.stopping.signal.aborted) return;
    this.running = this.run();
  }

  /** Ends the watch and the loop; the cache stays readable. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.stream?.abort();
    if (!this.isSynced) this.rejectSynced(new Error(`informer ${this.description} stopped before it synced`));
    await this.running;
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  /** Undefined once synced; otherwise why not yet (for /readyz). */
  notReadyReason(): string | undefined {
    if (this.isSynced) return undefined;
    return `informer ${this.description} has not synced${this.lastError ? `: ${this.lastError}` : ''}`;
  }

  /** By `namespace/name` (or `name` when cluster-scoped). */
  get(key: string): T | undefined {
    return this.store.get(key);
  }

  getByName(name: string, namespace?: string): T | undefined {
    return this.store.get(keyOf(name, namespace));
  }

  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  get size(): number {
    return this.store.size;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let mustList = true;
    let lastWasGone = false;
    while (!this.stopping.signal.aborted) {
      let watchStarted: number | undefined;
      try {
        if (mustList) {
          await this.relist();
          mustList = false;
        }
        if (this.stopping.signal.aborted) break;
        watchStarted = this.clock.now();
        await this.watchOnce();
        // Ended by the server at its timeout: a healthy watch. Continue from where it stopped.
        failures = 0;
        lastWasGone = false;
      } catch (error) {
        if (this.stopping.signal.aborted) break;
        mustList = true;
        this.restartsCounter?.labels({ resource: this.description }).inc();
        // A watch that ran for a good while before it broke is a new incident, not one more failure in a row.
        if (watchStarted !== undefined && this.clock.now() - watchStarted >= this.backoff.maxMs) {
          failures = 0;
          lastWasGone = false;
        }
        // An expired resourceVersion is routine (compaction): list again at once. Twice in a row is not.
        const gone = isGone(error);
        const immediate = gone && !lastWasGone;
        lastWasGone = gone;
        if (immediate) {
          this.logger.info('Informer resourceVersion expired, listing again', {
            [LogField.resource]: this.description,
          });
          continue;
        }
        const delay = backoffDelay(this.backoff, failures++, this.random);
        this.lastError = describeError(error);
        this.logger.warn('Informer list or watch failed, listing again after a backoff', {
          [LogField.resource]: this.description,
          [LogField.delayMs]: delay,
          [LogField.error]: this.lastError,
        });
        await sleep(this.clock, delay, this.stopping.signal);
      }
    }
  }

  private async relist(): Promise<void> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion: string;
    do {
      const page = await this.source.list({ limit: this.pageSize, continueToken });
      if (this.stopping.signal.aborted) return;
      items.push(...page.items);
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken;
    } while (continueToken);
    this.replace(items);
    this.resourceVersion = resourceVersion;
    this.lastError = undefined;
    if (!this.isSynced) {
      this.isSynced = true;
      this.syncedGauge?.labels({ resource: this.description }).set(1);
      this.logger.info('Informer synced', {
        [LogField.resource]: this.description,
        [LogField.count]: this.store.size,
      });
      this.resolveSynced();
    }
  }

  /** Makes the cache the listed objects, calling the handlers for what differs from before. */
  private replace(items: readonly T[]): void {
    const previous = this.store;
    const next = new Map<string, T>();
    this.store = next;
    for (const object of items) {
      const key = objectKey(object);
      next.set(key, object);
      const old = previous.get(key);
      if (!old) this.emit('add', (h) => h.add?.(object));
      else if (old.metadata?.resourceVersion !== object.metadata?.resourceVersion) {
        this.emit('update', (h) => h.update?.(old, object));
      }
    }
    for (const [key, old] of previous) {
      if (!next.has(key)) this.emit('delete', (h) => h.delete?.(old));
    }
    this.objectsGauge?.labels({ resource: this.description }).set(this.store.size);
  }

  private async watchOnce(): Promise<void> {
    const timeoutSeconds = this.options.watchTimeoutSeconds ?? Math.floor(300 + this.random() * 300);
    const stallMs = (timeoutSeconds + STALL_GRACE_SECONDS) * 1000;
    let stalled = false;
    let active = true;
    let lastActivity = this.clock.now();
    let stallTimer: Timer | undefined;
    // One timer per watch, not per event: when it fires, it looks at the time of the last event.
    const check = () => {
      const silentFor = this.clock.now() - lastActivity;
      if (silentFor < stallMs) {
        stallTimer = this.clock.setTimer(check, stallMs - silentFor);
        return;
      }
      stalled = true;
      this.stream?.abort();
    };
    const stream = this.source.watch({ resourceVersion: this.resourceVersion, timeoutSeconds }, (event) => {
      // Events of a stream given up on (stalled, stopped) must not reach the cache after its replacement.
      if (!active) return;
      lastActivity = this.clock.now();
      this.apply(event);
    });
    this.stream = stream;
    stallTimer = this.clock.setTimer(check, stallMs);
    try {
      await stream.done;
    } catch (error) {
      if (stalled) throw new Error(`watch silent for ${stallMs / 1000} s`, { cause: error });
      throw error;
    } finally {
      active = false;
      stallTimer.cancel();
      this.stream = undefined;
    }
  }

  private apply(event: WatchEvent<T>): void {
    const object = event.object;
    const key = objectKey(object);
    if (event.type === 'ADDED' || event.type === 'MODIFIED') {
      const old = this.store.get(key);
      this.store.set(key, object);
      if (!old) this.emit('add', (h) => h.add?.(object));
      else if (old.metadata?.resourceVersion !== object.metadata?.resourceVersion) {
        this.emit('update', (h) => h.update?.(old, object));
      }
    } else if (event.type === 'DELETED') {
      if (this.store.delete(key)) this.emit('delete', (h) => h.delete?.(object));
    }
    const resourceVersion = object.metadata?.resourceVersion;
    if (resourceVersion) this.resourceVersion = resourceVersion;
    this.objectsGauge?.labels({ resource: this.description }).set(this.store.size);
  }

  private emit(what: string, call: (handler: InformerHandler<T>) => void): void {
    for (const handler of [...this.handlers]) this.safely(what, () => call(handler));
  }

  /** A failing handler is logged; it must not break the informer or the other handlers. */
  private safely(what: string, run: () => void): void {
    try {
      run();
    } catch (error) {
      this.logger.error('Informer handler failed', {
        [LogField.resource]: this.description,
        [LogField.verb]: what,
        [LogField.error]: describeError(error),
      });
    }
  }
}

/** An informer of `resource` on the API server, not yet started. */
export function createInformer<T extends ObjectWithMeta>(
  kc: KubeConfig,
  resource: ResourceType<T>,
  options: InformerOptions & ListWatchOptions = {},
): Informer<T> {
  return new Informer(kubeListerWatcher(kc, resource, options), options);
}
