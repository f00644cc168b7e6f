/**
 * Plain objects for the policy tests: specs with the server's defaults, policies, pods, namespaces, and the
 * inputs of desiredStatus.
 */
import type { KubernetesObject, V1Namespace, V1Pod } from '@kubernetes/client-node';
import { ContainerAuditPolicySpec } from '../../../api/v1alpha1/containerauditpolicy.js';
import { API_VERSION } from '../../../api/v1alpha1/meta.js';
import type { AgentState } from '../../../api/agentapi/v1.js';
import type { NodeReport } from '../../ledger.js';
import type { PodFacts, PolicyFacts, PolicySelection } from '../select.js';
import type { StatusInput } from '../status.js';
import type { WorldSources } from '../world.js';

/** A spec as the API server stores it: what is given, with every default filled in. */
export function spec(input: Record<string, unknown> = {}): ContainerAuditPolicySpec {
  return ContainerAuditPolicySpec.parse(input);
}

/** Policies created a minute apart by `minute`, so tests can say which is older. */
export function policy(name: string, minute: number, input: Record<string, unknown> = {}): PolicyFacts {
  return {
    name,
    creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString(),
    spec: { ok: true, spec: spec(input) },
  };
}

export function pod(
  ref: string,
  options: Partial<Omit<PodFacts, 'namespace' | 'name'>> & { containers?: string[] } = {},
): PodFacts {
  const [namespace, name] = ref.split('/') as [string, string];
  return {
    namespace,
    name,
    uid: `uid-${name}`,
    labels: {},
    nodeName: 'node-a',
    runtimeClassName: 'container-auditor',
    containers: ['app'],
    ...options,
  };
}

/** The raw object an informer holds for a policy. */
export function policyObject(
  name: string,
  input: Record<string, unknown> = {},
  meta: Record<string, unknown> = {},
  status?: unknown,
): KubernetesObject {
  return {
    apiVersion: API_VERSION,
    kind: 'ContainerAuditPolicy',
    metadata: {
      name,
      uid: `uid-${name}`,
      generation: 1,
      resourceVersion: '1',
      creationTimestamp: '2026-01-01T00:00:00Z',
      ...meta,
    } as unknown as KubernetesObject['metadata'],
    spec: spec(input),
    ...(status !== undefined ? { status } : {}),
  } as KubernetesObject;
}

export function podObject(facts: PodFacts): V1Pod {
  return {
    metadata: { namespace: facts.namespace, name: facts.name, uid: facts.uid, labels: { ...facts.labels } },
    spec: {
      nodeName: facts.nodeName,
      runtimeClassName: facts.runtimeClassName,
      containers: facts.containers.map((name) => ({ name, image: 'example' })),
    },
    status: { phase: facts.phase ?? 'Running' },
  };
}

export function namespaceObject(name: string, labels: Record<string, string> = {}): V1Namespace {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } };
}

/** Mutable informer caches for tests. */
export class FakeSources implements WorldSources {
  policyObjects = new Map<string, KubernetesObject>();
  podObjects: V1Pod[] = [];
  namespaceObjects: V1Namespace[] = [];

  readonly policies = {
    list: (): KubernetesObject[] => [...this.policyObjects.values()],
    get: (name: string): KubernetesObject | undefined => this.policyObjects.get(name),
  };
  readonly pods = { list: (): V1Pod[] => this.podObjects };
  readonly namespaces = { list: (): V1Namespace[] => this.namespaceObjects };

  setPolicy(object: KubernetesObject): void {
    this.policyObjects.set(object.metadata!.name!, object);
  }
}

// ---------------------------------------------------------------------------------------------------------
// desiredStatus inputs (status.ts): a selection auditing 3 containers on node-a, whose agent reported 30 s ago.

export const STATUS_NOW = new Date('2026-03-01T12:00:00Z');

export function selection(overrides: Partial<PolicySelection> = {}): PolicySelection {
  return {
    name: 'p',
    problems: [],
    suspended: false,
    active: true,
    evaluated: true,
    matchedPods: 2,
    unscheduledPods: 0,
    unauditablePods: 0,
    unauditablePodNames: [],
    auditedContainers: 3,
    auditedElsewhere: [],
    nodes: [{ name: 'node-a', containers: 3 }],
    ...overrides,
  };
}

export const agentState = (s: Partial<AgentState> = {}): AgentState => ({
  planVersion: 'v1',
  auditedContainers: 3,
  probesAttached: 1,
  errors: [],
  queueDropped: 0,
  ...s,
});

export const reported = (s: Partial<AgentState> = {}): NodeReport => ({
  state: agentState(s),
  lastReportTime: new Date('2026-03-01T11:59:30.250Z'),
});

export function statusInput(overrides: Partial<StatusInput> = {}): StatusInput {
  return {
    generation: 3,
    selection: selection(),
    runtimeClass: 'container-auditor',
    nodeReport: () => reported(),
    recentProblems: [],
    excuseMissingReports: false,
    now: STATUS_NOW,
    ...overrides,
  };
}
