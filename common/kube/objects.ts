/**
 * Objects as the API server sends them. client-node's model classes type timestamps as `Date`, but only its
 * typed API calls turn them into `Date`s: a watch event, a raw list, and even a typed read of a `MicroTime`
 * field (a Lease's `renewTime`) hold strings. `Wire<T>` is the honest type of such an object: `T` with
 * every `Date` as a `string`. The informers deliver `Wire<V1Pod>`, not `V1Pod`.
 */
import type { KubernetesObject } from '@kubernetes/client-node';

export type Wire<T> = T extends Date
  ? string
  : T extends readonly (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

/** An object of a kind we have no model for (our own CRDs): validate it (zod) before reading its fields. */
export type RawObject = Wire<KubernetesObject> & { [field: string]: unknown };

/** What keys, caches and change detection read of an object. */
export interface ObjectWithMeta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

/** `namespace/name`, or `name` for a cluster-scoped object: the work-queue key of client-go and kubectl. */
export function objectKey(object: ObjectWithMeta): string {
  const name = object.metadata?.name ?? '';
  const namespace = object.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

export function keyOf(name: string, namespace?: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** The inverse of `objectKey`. Names and namespaces never contain `/`. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
