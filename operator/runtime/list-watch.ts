/**
 * Listing and watching one resource on the API server: the I/O under an informer, behind the small
 * `ListerWatcher` interface so that the informer's loop can be tested without a server.
 *
 * Lists are raw GETs (common/kube/rest.ts), paged, so that listed objects have the same JSON shape as watched
 * ones (client-node's typed lists would turn timestamps into `Date`s; its `Watch` delivers strings). Items
 * of a list lack `apiVersion` and `kind` on the wire; they are filled in here. Watches use client-node's
 * `Watch` with `allowWatchBookmarks` and a `timeoutSeconds` after which the server ends them normally. A
 * watch `ERROR` event (a `Status`, e.g. 410 Expired) ends the stream with that error as a `KubeError`.
 *
 * client-node 2.x's `Watch` also gives up on a watch that received nothing for 30 s (its `requestTimeoutMs`,
 * not configurable) with a `TimeoutError`. The API server sends nothing on a watch of a quiet resource, not
 * even a bookmark, for longer than that, so this is routine: the stream ends normally and the informer
 * watches again from the last resourceVersion, as client-node's own `ListWatch` does. A dead connection
 * ends the same way; the next watch then fails to connect (a failure: backoff and relist) or, where the
 * network swallows it, times out again after 30 s: never a tight loop.
 */
import { type KubeConfig, Watch } from '@kubernetes/client-node';
import { z } from 'zod';
import { classifyError, statusError } from '../../common/kube/errors.js';
import { getJson } from '../../common/kube/rest.js';
import {
  type ResourceType,
  apiVersionOf,
  collectionPath,
  resourceName,
} from '../../common/kube/resources.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent<T> {
  type: WatchEventType;
  object: T;
}

export interface ListPage<T> {
  items: T[];
  resourceVersion: string;
  /** Set when there are more pages. */
  continueToken?: string;
}

export interface WatchStream {
  /** Resolves when the server ends the watch normally; rejects when it fails or is aborted. */
  readonly done: Promise<void>;
  abort(): void;
}

export interface ListerWatcher<T> {
  /** Names the resource (and its namespace or selectors) in logs and metrics. */
  readonly description: string;
  list(options: { limit: number; continueToken?: string }): Promise<ListPage<T>>;
  watch(
    options: { resourceVersion: string; timeoutSeconds: number },
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchStream;
}

export interface ListWatchOptions {
  /** Only this namespace (namespaced resources); all namespaces when unset. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

const ListEnvelope = z.object({
  metadata: z.looseObject({ resourceVersion: z.string(), continue: z.string().optional() }),
  items: z.array(z.looseObject({})).nullable(),
});

const WATCH_EVENT_TYPES: ReadonlySet<string> = new Set(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK']);

export class WatchAbortedError extends Error {
  override readonly name = 'WatchAbortedError';
}

/**
 * client-node's `Watch` gave up on a watch that received nothing for its request timeout (30 s). A
 * `DOMException`: by name, since it is no `instanceof Error` of another realm (a test's VM context).
 */
function isQuietTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'TimeoutError';
}

export function kubeListerWatcher<T>(
  kc: KubeConfig,
  resource: ResourceType<T>,
  options: ListWatchOptions = {},
): ListerWatcher<T> {
  const path = collectionPath(resource, options.namespace);
  const apiVersion = apiVersionOf(resource);
  const selectors = { labelSelector: options.labelSelector, fieldSelector: options.fieldSelector };
  const watcher = new Watch(kc);
  const scope = [
    options.namespace && resource.namespaced ? `namespace=${options.namespace}` : '',
    options.labelSelector ? `labels=${options.labelSelector}` : '',
    options.fieldSelector ? `fields=${options.fieldSelector}` : '',
  ].filter(Boolean);
  const description = resourceName(resource) + (scope.length ? ` (${scope.join(', ')})` : '');

  return {
    description,

    async list({ limit, continueToken }) {
      const body = await getJson(kc, path, { ...selectors, limit, continue: continueToken });
      const parsed = ListEnvelope.safeParse(body);
      if (!parsed.success)
        throw new Error(`list ${description}: not a list (${parsed.error.issues[0]?.message})`);
      const items = (parsed.data.items ?? []).map(
        (item) => ({ apiVersion, kind: resource.kind, ...item }) as unknown as T,
      );
      const { resourceVersion, continue: next } = parsed.data.metadata;
      return { items, resourceVersion, continueToken: next || undefined };
    },

    watch({ resourceVersion, timeoutSeconds }, onEvent) {
      let settled = false;
      let controller: AbortController | undefined;
      let settle: (error?: unknown) => void = () => {};
      const done = new Promise<void>((resolve, reject) => {
        settle = (error) => {
          if (settled) return;
          settled = true;
          controller?.abort();
          if (error) reject(error instanceof Error ? error : classifyError(error));
          else resolve();
        };
      });
      // Nobody may be listening when an aborted stream rejects; the informer awaits `done` when it cares.
      done.catch(() => {});
      const params = { ...selectors, resourceVersion, timeoutSeconds, allowWatchBookmarks: true };
      watcher
        .watch(
          path,
          params,
          (type: string, object: unknown) => {
            if (settled) return;
            if (type === 'ERROR') {
              settle(statusError(object));
            } else if (WATCH_EVENT_TYPES.has(type) && typeof object === 'object' && object !== null) {
              onEvent({ type: type as WatchEventType, object: object as T });
            }
          },
          // null when the server ends the watch (timeoutSeconds); an Error when it fails; a TimeoutError
          // when nothing came for 30 s (see above), an end like the server's.
          (error: unknown) => settle(isQuietTimeout(error) ? undefined : (error ?? undefined)),
        )
        .then(
          (c) => {
            controller = c;
            if (settled) c.abort();
          },
          (error: unknown) => settle(error),
        );
      return { done, abort: () => settle(new WatchAbortedError(`watch ${description} aborted`)) };
    },
  };
}
