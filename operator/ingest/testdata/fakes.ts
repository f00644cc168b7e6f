/**
 * Test doubles for the ingestion unit tests (their clock is test-support/fake-clock.ts): in-memory
 * stand-ins for the API server's AuditRecords and Events that keep its rules (resourceVersion conflicts,
 * AlreadyExists, NotFound) and throw what client-node throws.
 */
import { ApiException, type CoreV1Event } from '@kubernetes/client-node';
import type { AgentRecord, CommandRecord, CoverageRecord, ExecRecord } from '../../../api/records/v1.js';
import type { AuditRecord } from '../../../api/v1alpha1/index.js';
import type { EventSink } from '../../../common/kube/event-sink.js';
import type { AuditRecordStore, StoredRecord } from '../kube-clients.js';

export { settle } from '../../../test-support/fake-clock.js';

/** Where the ingestion tests' clocks start. */
export const TEST_START = Date.parse('2026-03-01T10:00:00Z');

export function apiError(
  code: number,
  reason: string,
  message = reason,
  details?: object,
): ApiException<string> {
  return new ApiException(
    code,
    `HTTP ${code}`,
    JSON.stringify({ kind: 'Status', status: 'Failure', reason, code, message, details }),
    {},
  );
}

/**
 * Bytes of `value` as Go's encoding/json writes it, done independently of api/stored-size.ts: JSON.stringify,
 * then the HTML characters and the line separators escaped as Go escapes them.
 */
export function goJsonBytes(value: unknown): number {
  const text = JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return Buffer.byteLength(text);
}

const clone = <T>(v: T): T => structuredClone(v);

export class MemoryRecordStore implements AuditRecordStore {
  readonly objects = new Map<string, AuditRecord>();
  readonly calls = { get: 0, create: 0, replaceStatus: 0 };
  private rv = 1;
  /** Runs before a status write is judged: lets a test play another writer. */
  beforeReplace?: (record: AuditRecord) => void;
  /** Fails the next calls with this error. */
  failNext: { error: unknown; times: number } | undefined;
  /** Namespaces deleted (deleteNamespace): creates there fail as NamespaceLifecycle admission fails them. */
  private readonly goneNamespaces = new Set<string>();
  /** A status the schema refuses (422) when this says so. */
  refuseStatus?: (record: AuditRecord) => boolean;
  /** etcd's limit: a larger object, as Go encodes it, is refused (500 "request is too large"). */
  maxStoredBytes?: number;

  private key(namespace: string, name: string): string {
    return `${namespace}/${name}`;
  }

  /** The namespace and everything in it are gone. */
  deleteNamespace(namespace: string): void {
    this.goneNamespaces.add(namespace);
    for (const key of [...this.objects.keys()]) if (key.startsWith(`${namespace}/`)) this.objects.delete(key);
  }

  private maybeFail(namespace?: string): void {
    if (this.failNext && this.failNext.times > 0) {
      this.failNext.times--;
      throw this.failNext.error;
    }
    if (namespace !== undefined && this.goneNamespaces.has(namespace))
      throw apiError(404, 'NotFound', `namespaces "${namespace}" not found`, {
        name: namespace,
        kind: 'namespaces',
      });
  }

  get(namespace: string, name: string): Promise<StoredRecord | undefined> {
    this.calls.get++;
    this.maybeFail();
    const r = this.objects.get(this.key(namespace, name));
    return Promise.resolve(r ? { ok: true, record: clone(r) } : undefined);
  }

  create(record: AuditRecord): Promise<AuditRecord> {
    this.calls.create++;
    this.maybeFail(record.metadata.namespace ?? '');
    const key = this.key(record.metadata.namespace ?? '', record.metadata.name ?? '');
    if (this.objects.has(key)) return Promise.reject(apiError(409, 'AlreadyExists'));
    // The API server ignores status on create (status is a subresource).
    const stored: AuditRecord = clone(record);
    delete stored.status;
    stored.metadata.resourceVersion = String(this.rv++);
    this.objects.set(key, stored);
    return Promise.resolve(clone(stored));
  }

  replaceStatus(record: AuditRecord): Promise<AuditRecord> {
    this.calls.replaceStatus++;
    this.maybeFail();
    this.beforeReplace?.(record);
    const key = this.key(record.metadata.namespace ?? '', record.metadata.name ?? '');
    const current = this.objects.get(key);
    if (!current) return Promise.reject(apiError(404, 'NotFound'));
    if (current.metadata.resourceVersion !== record.metadata.resourceVersion)
      return Promise.reject(apiError(409, 'Conflict'));
    if (this.refuseStatus?.(record))
      return Promise.reject(apiError(422, 'Invalid', 'AuditRecord.containeraudit.io is invalid'));
    const stored: AuditRecord = {
      ...current,
      metadata: { ...current.metadata, resourceVersion: String(this.rv++) },
      status: clone(record.status),
    };
    if (this.maxStoredBytes !== undefined && goJsonBytes(stored) > this.maxStoredBytes)
      return Promise.reject(apiError(500, 'InternalError', 'etcdserver: request is too large'));
    this.objects.set(key, stored);
    return Promise.resolve(clone(stored));
  }

  /** Another writer's status change, as the API server would apply it. */
  mutate(namespace: string, name: string, change: (r: AuditRecord) => void): void {
    const key = this.key(namespace, name);
    const current = this.objects.get(key);
    if (!current) throw new Error(`no ${key}`);
    change(current);
    current.metadata.resourceVersion = String(this.rv++);
  }

  records(): AuditRecord[] {
    return [...this.objects.values()].sort((a, b) =>
      (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''),
    );
  }
}

export class MemoryEventSink implements EventSink {
  readonly events = new Map<string, CoreV1Event>();
  readonly calls = { create: 0, bump: 0 };
  failNext: { error: unknown; times: number } | undefined;

  private maybeFail(): void {
    if (this.failNext && this.failNext.times > 0) {
      this.failNext.times--;
      throw this.failNext.error;
    }
  }

  create(event: CoreV1Event): Promise<'created' | 'exists'> {
    this.calls.create++;
    this.maybeFail();
    const key = `${event.metadata.namespace}/${event.metadata.name}`;
    if (this.events.has(key)) return Promise.resolve('exists');
    this.events.set(key, structuredClone(event));
    return Promise.resolve('created');
  }

  bump(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<boolean> {
    this.calls.bump++;
    this.maybeFail();
    const e = this.events.get(`${namespace}/${name}`);
    if (!e) return Promise.resolve(false);
    e.count = count;
    e.lastTimestamp = lastTimestamp;
    return Promise.resolve(true);
  }

  list(): CoreV1Event[] {
    return [...this.events.values()];
  }
}

export const BOOT = '0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9';

/** A command record with sensible defaults. */
/** What every record of the fakes shares: the agent's stamp and the container, one second per seq. */
function stamped(seq: number) {
  return {
    seq,
    boot: BOOT,
    node: 'node-a',
    time: new Date(Date.parse('2026-03-01T10:00:00Z') + seq * 1000).toISOString(),
    containerId: 'c0ffee0123456789',
    pod: { namespace: 'shop', name: 'web-0', uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' },
    container: 'app',
    policy: 'prod',
  };
}

export function command(seq: number, text: string, over: Partial<CommandRecord> = {}): CommandRecord {
  return {
    kind: 'command',
    ...stamped(seq),
    image: 'registry.example/web:1.2',
    pid: 4242,
    nsPid: 7,
    uid: 0,
    command: text,
    truncated: false,
    redacted: false,
    alerts: [],
    ...over,
  };
}

export function exec(seq: number, argv: string[], over: Partial<ExecRecord> = {}): ExecRecord {
  return {
    kind: 'exec',
    ...stamped(seq),
    source: 'kernel',
    pid: 5000 + seq,
    ppid: 4242,
    uid: 0,
    argv,
    truncated: false,
    redacted: false,
    alerts: [],
    ...over,
  };
}

/** A coverage gap of the fakes' container (a late attachment with `{ status: 'covered', late: true }`). */
export function coverageRecord(seq: number, over: Partial<CoverageRecord> = {}): CoverageRecord {
  return {
    kind: 'coverage',
    ...stamped(seq),
    status: 'gap',
    bash: '/bin/bash',
    reason: 'no readline in /bin/bash',
    ...over,
  };
}

export type { AgentRecord };
