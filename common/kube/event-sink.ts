/**
 * Where the operator's core/v1 Events go: one sink for both halves (Events on Pods from ingestion, Warning
 * Events on policies from the reconciler). Callers build the Event, with a deterministic name, so that a
 * retried one is an AlreadyExists ('exists'), not a second Event.
 */
import {
  CoreV1Api,
  type CoreV1Event,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { isAlreadyExists, isNotFound } from './errors.js';

export interface EventSink {
  /** 'exists' when an Event of that name is there already (a duplicate). */
  create(event: CoreV1Event): Promise<'created' | 'exists'>;
  /** Sets count and lastTimestamp of an existing Event; false when it is gone. */
  bump(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<boolean>;
}

export class KubeEventSink implements EventSink {
  private readonly api: CoreV1Api;
  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async create(event: CoreV1Event): Promise<'created' | 'exists'> {
    try {
      await this.api.createNamespacedEvent({ namespace: event.metadata.namespace ?? '', body: event });
      return 'created';
    } catch (e) {
      if (isAlreadyExists(e)) return 'exists';
      throw e;
    }
  }

  async bump(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<boolean> {
    try {
      await this.api.patchNamespacedEvent(
        { namespace, name, body: { count, lastTimestamp: lastTimestamp.toISOString() } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }
}
