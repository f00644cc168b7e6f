/**
 * The world as selection sees it, read from the informers' caches. Injected as plain list/get interfaces
 * (what operator/runtime's Informer offers), so unit tests feed plain objects and the operator its informers.
 * The object types are the fields read here, nothing more: both client-node's models (timestamps as Dates)
 * and objects as they come off the wire (timestamps as strings, common/kube/objects.ts `Wire`) fit them.
 *
 * Every policy is checked here, at the trust boundary: its spec with the zod schema (a failure is the
 * policy's Invalid condition, not a crash), its status leniently (an unreadable status is treated as none).
 */
import {
  ContainerAuditPolicyStatus,
  type ContainerAuditPolicyStatus as Status,
} from '../../api/v1alpha1/containerauditpolicy.js';
import type { Labels } from '../../common/label-selector.js';
import type { PodFacts, PolicyFacts, SelectionInput } from './select.js';
import { parseSpec } from './validate.js';

export interface ObjectSource<T> {
  list(): ReadonlyArray<T>;
}

export interface KeyedSource<T> extends ObjectSource<T> {
  get(name: string): T | undefined;
}

interface ContainerSpec {
  name: string;
}

/** What selection reads of a Pod. */
export interface PodObject {
  metadata?: {
    namespace?: string;
    name?: string;
    uid?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: unknown;
  };
  spec?: {
    nodeName?: string;
    runtimeClassName?: string;
    initContainers?: ContainerSpec[];
    containers?: ContainerSpec[];
    ephemeralContainers?: ContainerSpec[];
  };
  status?: { phase?: string };
}

/** What selection reads of a Namespace. */
export interface NamespaceObject {
  metadata?: { name?: string; labels?: Record<string, string> };
}

export interface WorldSources {
  /**
   * ContainerAuditPolicy objects as the API server serves them, unvalidated (cluster-scoped: keyed by
   * name). Each is checked here (readPolicy).
   */
  policies: KeyedSource<unknown>;
  pods: ObjectSource<PodObject>;
  namespaces: ObjectSource<NamespaceObject>;
}

/** A policy object, checked. */
export interface PolicyObject extends PolicyFacts {
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  /** The status as stored; undefined when there is none or it does not parse. */
  status?: Status;
}

/** Timestamps arrive as strings from untyped lists and as Dates from typed deserialization. */
function timestamp(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : undefined;
}

/** The policy in `raw`, checked; undefined for an object without a name (which the API server never serves). */
export function readPolicy(raw: unknown): PolicyObject | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const { metadata, spec, status } = raw as {
    metadata?: Record<string, unknown>;
    spec?: unknown;
    status?: unknown;
  };
  const name = metadata?.['name'];
  if (typeof name !== 'string' || name === '') return undefined;
  const parsedStatus = status === undefined ? undefined : ContainerAuditPolicyStatus.safeParse(status);
  const generation = metadata?.['generation'];
  return {
    name,
    uid: typeof metadata?.['uid'] === 'string' ? metadata['uid'] : undefined,
    generation: typeof generation === 'number' ? generation : undefined,
    resourceVersion:
      typeof metadata?.['resourceVersion'] === 'string' ? metadata['resourceVersion'] : undefined,
    creationTimestamp: timestamp(metadata?.['creationTimestamp']),
    spec: parseSpec(spec ?? {}),
    status: parsedStatus?.success ? parsedStatus.data : undefined,
  };
}

/** What selection reads of a pod; undefined for one without the identity a plan needs. */
export function podFacts(pod: PodObject): PodFacts | undefined {
  const { namespace, name, uid, labels, deletionTimestamp } = pod.metadata ?? {};
  if (!namespace || !name || !uid) return undefined;
  const spec = pod.spec;
  return {
    namespace,
    name,
    uid,
    labels: labels ?? {},
    nodeName: spec?.nodeName || undefined,
    runtimeClassName: spec?.runtimeClassName || undefined,
    containers: [
      ...(spec?.initContainers ?? []),
      ...(spec?.containers ?? []),
      ...(spec?.ephemeralContainers ?? []),
    ].map((c) => c.name),
    phase: pod.status?.phase,
    deleting: deletionTimestamp !== undefined && deletionTimestamp !== null,
  };
}

export function namespaceLabels(namespaces: ReadonlyArray<NamespaceObject>): Map<string, Labels> {
  const map = new Map<string, Labels>();
  for (const ns of namespaces) if (ns.metadata?.name) map.set(ns.metadata.name, ns.metadata.labels ?? {});
  return map;
}

export interface World {
  policies: PolicyObject[];
  input: Omit<SelectionInput, 'runtimeClass' | 'maxNamedPods'>;
}

export function readWorld(sources: WorldSources): World {
  const policies = sources.policies.list().flatMap((raw) => readPolicy(raw) ?? []);
  const pods = sources.pods.list().flatMap((pod) => podFacts(pod) ?? []);
  return { policies, input: { policies, namespaces: namespaceLabels(sources.namespaces.list()), pods } };
}
