/**
 * Warning Events about policies. A ContainerAuditPolicy is cluster-scoped and an Event lives in a namespace:
 * Events about cluster-scoped objects go to `default` (as the kubelet does for Nodes), which is where
 * `kubectl describe auditpolicy` looks for them.
 *
 * The Event's name is derived from the policy, its generation and the message, so the same judgement told
 * twice (a retry, a restarted or second operator replica) is an AlreadyExists, not a second Event.
 */
import { createHash } from 'node:crypto';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import { isAlreadyExists } from '../../common/kube/errors.js';
import { MAX_EVENT_NOTE_BYTES, shortened } from '../../common/text/escape.js';
import { POLICY_KIND } from '../../api/v1alpha1/containerauditpolicy.js';
import { API_VERSION } from '../../api/v1alpha1/meta.js';
import { FIELD_MANAGER } from './status-writer.js';

export const EVENT_NAMESPACE = 'default';
export const INVALID_POLICY_REASON = 'InvalidPolicy';

export interface PolicyRef {
  name: string;
  uid?: string;
  generation?: number;
}

export interface PolicyEventSink {
  /** A Warning Event saying why the policy is invalid; resolves when written or already there. */
  invalidPolicy(policy: PolicyRef, message: string): Promise<void>;
}

/** The deterministic name of the Event telling `message` about `policy`. */
export function policyEventName(policy: PolicyRef, reason: string, message: string): string {
  const hash = createHash('sha256')
    .update(`${policy.uid ?? ''}\n${policy.generation ?? ''}\n${reason}\n${message}`)
    .digest('hex')
    .slice(0, 16);
  return `${policy.name.slice(0, 200)}.${hash}`;
}

export interface KubeEventSinkOptions {
  /** reportingInstance: which replica told it (the pod name). */
  instance?: string;
  now?: () => Date;
}

export function kubeEventSink(core: CoreV1Api, options: KubeEventSinkOptions = {}): PolicyEventSink {
  const now = options.now ?? (() => new Date());
  return {
    async invalidPolicy(policy, message) {
      // The message is a condition's, escaped already (status.ts): cut, not escaped again.
      const note = shortened(message, MAX_EVENT_NOTE_BYTES, 'bytes');
      const time = now();
      const body: CoreV1Event = {
        metadata: { name: policyEventName(policy, INVALID_POLICY_REASON, note), namespace: EVENT_NAMESPACE },
        involvedObject: { apiVersion: API_VERSION, kind: POLICY_KIND, name: policy.name, uid: policy.uid },
        type: 'Warning',
        reason: INVALID_POLICY_REASON,
        message: note,
        source: { component: FIELD_MANAGER },
        reportingComponent: FIELD_MANAGER,
        ...(options.instance !== undefined ? { reportingInstance: options.instance } : {}),
        firstTimestamp: time,
        lastTimestamp: time,
        count: 1,
      };
      try {
        await core.createNamespacedEvent({ namespace: EVENT_NAMESPACE, body });
      } catch (error) {
        if (isAlreadyExists(error)) return;
        throw error;
      }
    },
  };
}
