/**
 * The record leader election keeps in a `coordination.k8s.io/v1` Lease, read and written with optimistic
 * concurrency: every update carries the resourceVersion it was computed from, and the API server refuses it
 * (409 Conflict) if anyone wrote in between. That, not timing, is what keeps two replicas from both taking
 * the lease.
 *
 * client-node pitfalls met here (1.4 and 2.x alike): the Lease's `MicroTime` fields (`acquireTime`,
 * `renewTime`) must be sent as `V1MicroTime` (six fractional digits); a plain `Date` is refused with 400
 * BadRequest. And a typed read returns those fields as strings, whatever their declared type says.
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { isNotFound } from '../../common/kube/errors.js';

export interface LeaseRecord {
  /** '' when nobody holds the lease (released). */
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime?: Date;
  renewTime?: Date;
  leaseTransitions: number;
}

export interface LeaseSnapshot {
  record: LeaseRecord;
  resourceVersion: string;
}

export interface LeaseLock {
  /** `namespace/name`, for logs. */
  readonly description: string;
  /** The lease as stored; undefined if it does not exist. */
  get(): Promise<LeaseSnapshot | undefined>;
  /** Creates the lease; fails (409 AlreadyExists) if another replica created it first. */
  create(record: LeaseRecord): Promise<LeaseSnapshot>;
  /** Replaces the lease if it is still at `resourceVersion`; fails with 409 Conflict otherwise. */
  update(record: LeaseRecord, resourceVersion: string): Promise<LeaseSnapshot>;
}

function toDate(value: unknown): Date | undefined {
  if (value instanceof Date) return value;
  if (typeof value !== 'string' || value === '') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function toMicroTime(date: Date | undefined): V1MicroTime | undefined {
  return date ? new V1MicroTime(date.getTime()) : undefined;
}

function snapshotOf(lease: V1Lease): LeaseSnapshot {
  const spec = lease.spec ?? {};
  return {
    record: {
      holderIdentity: spec.holderIdentity ?? '',
      leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
      acquireTime: toDate(spec.acquireTime),
      renewTime: toDate(spec.renewTime),
      leaseTransitions: spec.leaseTransitions ?? 0,
    },
    resourceVersion: lease.metadata?.resourceVersion ?? '',
  };
}

export class KubeLeaseLock implements LeaseLock {
  readonly description: string;
  private readonly api: CoordinationV1Api;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.description = `${namespace}/${name}`;
  }

  async get(): Promise<LeaseSnapshot | undefined> {
    try {
      return snapshotOf(await this.api.readNamespacedLease({ namespace: this.namespace, name: this.name }));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async create(record: LeaseRecord): Promise<LeaseSnapshot> {
    const body = this.body(record);
    return snapshotOf(await this.api.createNamespacedLease({ namespace: this.namespace, body }));
  }

  async update(record: LeaseRecord, resourceVersion: string): Promise<LeaseSnapshot> {
    const body = this.body(record, resourceVersion);
    return snapshotOf(
      await this.api.replaceNamespacedLease({ namespace: this.namespace, name: this.name, body }),
    );
  }

  private body(record: LeaseRecord, resourceVersion?: string): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace, resourceVersion },
      spec: {
        holderIdentity: record.holderIdentity,
        leaseDurationSeconds: record.leaseDurationSeconds,
        acquireTime: toMicroTime(record.acquireTime),
        renewTime: toMicroTime(record.renewTime),
        leaseTransitions: record.leaseTransitions,
      },
    };
  }
}
