/**
 * The thin shell between ingestion and the API server: the few calls the authenticator and the records writer
 * make (Events go through common/kube/event-sink.ts), behind small interfaces so their logic is tested without a cluster and their I/O against a real one.
 */
import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1TokenReviewStatus,
} from '@kubernetes/client-node';
import { AuditRecord, GROUP, RECORD_PLURAL, VERSION } from '../../api/v1alpha1/index.js';
import { isNotFound } from '../../common/kube/errors.js';
import { FIELD_MANAGER } from '../../common/kube/identity.js';

export interface TokenReviewer {
  review(token: string, audiences: readonly string[]): Promise<V1TokenReviewStatus>;
}

export interface BoundPod {
  uid?: string;
  nodeName?: string;
}

export interface PodReader {
  /** undefined when there is no such pod. */
  get(namespace: string, name: string): Promise<BoundPod | undefined>;
}

/** What a stored AuditRecord is to the writer: a valid record, or something it must not touch. */
export type StoredRecord = { ok: true; record: AuditRecord } | { ok: false };

export interface AuditRecordStore {
  /** undefined when absent. */
  get(namespace: string, name: string): Promise<StoredRecord | undefined>;
  /** Throws the API's AlreadyExists (see outcome.ts isAlreadyExists) when the name is taken. */
  create(record: AuditRecord): Promise<AuditRecord>;
  /** PUT of the status subresource: metadata.resourceVersion makes it conditional (409 Conflict). */
  replaceStatus(record: AuditRecord): Promise<AuditRecord>;
}

export class KubeTokenReviewer implements TokenReviewer {
  private readonly api: AuthenticationV1Api;
  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(AuthenticationV1Api);
  }

  async review(token: string, audiences: readonly string[]): Promise<V1TokenReviewStatus> {
    const result = await this.api.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [...audiences] },
      },
    });
    return result.status ?? {};
  }
}

export class KubePodReader implements PodReader {
  private readonly api: CoreV1Api;
  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async get(namespace: string, name: string): Promise<BoundPod | undefined> {
    try {
      const pod = await this.api.readNamespacedPod({ namespace, name });
      return { uid: pod.metadata?.uid, nodeName: pod.spec?.nodeName };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }
}

const coordinates = { group: GROUP, version: VERSION, plural: RECORD_PLURAL } as const;

function parseRecord(value: unknown): StoredRecord {
  const parsed = AuditRecord.safeParse(value);
  return parsed.success ? { ok: true, record: parsed.data } : { ok: false };
}

export class KubeAuditRecordStore implements AuditRecordStore {
  private readonly api: CustomObjectsApi;
  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  async get(namespace: string, name: string): Promise<StoredRecord | undefined> {
    try {
      return parseRecord(await this.api.getNamespacedCustomObject({ ...coordinates, namespace, name }));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async create(record: AuditRecord): Promise<AuditRecord> {
    const created: unknown = await this.api.createNamespacedCustomObject({
      ...coordinates,
      namespace: record.metadata.namespace ?? '',
      body: record,
      fieldManager: FIELD_MANAGER,
    });
    return AuditRecord.parse(created);
  }

  async replaceStatus(record: AuditRecord): Promise<AuditRecord> {
    const replaced: unknown = await this.api.replaceNamespacedCustomObjectStatus({
      ...coordinates,
      namespace: record.metadata.namespace ?? '',
      name: record.metadata.name ?? '',
      body: record,
      fieldManager: FIELD_MANAGER,
    });
    return AuditRecord.parse(replaced);
  }
}
