/**
 * The resources we list and watch, and their REST paths. A `ResourceType<T>` names a resource the way the API
 * server serves it (group, version, plural) and carries, as a type only, the shape of its objects, so that
 * `createInformer(kc, PODS)` is an informer of `Wire<V1Pod>` without a cast at each call.
 */
import type { V1Lease, V1Namespace, V1Node, V1Pod, V1RuntimeClass } from '@kubernetes/client-node';
import {
  GROUP,
  POLICY_KIND,
  POLICY_PLURAL,
  RECORD_KIND,
  RECORD_PLURAL,
  VERSION,
} from '../../api/v1alpha1/index.js';
import type { RawObject, Wire } from './objects.js';

declare const objectType: unique symbol;

export interface ResourceType<T> {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** Never set: carries T for inference. */
  readonly [objectType]?: T;
}

export const PODS: ResourceType<Wire<V1Pod>> = {
  group: '',
  version: 'v1',
  plural: 'pods',
  kind: 'Pod',
  namespaced: true,
};
export const NAMESPACES: ResourceType<Wire<V1Namespace>> = {
  group: '',
  version: 'v1',
  plural: 'namespaces',
  kind: 'Namespace',
  namespaced: false,
};
export const NODES: ResourceType<Wire<V1Node>> = {
  group: '',
  version: 'v1',
  plural: 'nodes',
  kind: 'Node',
  namespaced: false,
};
export const RUNTIME_CLASSES: ResourceType<Wire<V1RuntimeClass>> = {
  group: 'node.k8s.io',
  version: 'v1',
  plural: 'runtimeclasses',
  kind: 'RuntimeClass',
  namespaced: false,
};
export const LEASES: ResourceType<Wire<V1Lease>> = {
  group: 'coordination.k8s.io',
  version: 'v1',
  plural: 'leases',
  kind: 'Lease',
  namespaced: true,
};
/** Delivered unvalidated: parse with the api/v1alpha1 schema before use. */
export const CONTAINER_AUDIT_POLICIES: ResourceType<RawObject> = {
  group: GROUP,
  version: VERSION,
  plural: POLICY_PLURAL,
  kind: POLICY_KIND,
  namespaced: false,
};
/** Delivered unvalidated: parse with the api/v1alpha1 schema before use. */
export const AUDIT_RECORDS: ResourceType<RawObject> = {
  group: GROUP,
  version: VERSION,
  plural: RECORD_PLURAL,
  kind: RECORD_KIND,
  namespaced: true,
};

export function apiVersionOf(resource: ResourceType<unknown>): string {
  return resource.group ? `${resource.group}/${resource.version}` : resource.version;
}

/** `pods`, `runtimeclasses.node.k8s.io`: how kubectl and RBAC name a resource. */
export function resourceName(resource: ResourceType<unknown>): string {
  return resource.group ? `${resource.plural}.${resource.group}` : resource.plural;
}

/**
 * The collection's path: across all namespaces when `namespace` is undefined (or the resource is
 * cluster-scoped), else within that namespace.
 */
export function collectionPath(resource: ResourceType<unknown>, namespace?: string): string {
  const root = resource.group ? `/apis/${resource.group}/${resource.version}` : `/api/${resource.version}`;
  const scope = resource.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${root}${scope}/${resource.plural}`;
}
