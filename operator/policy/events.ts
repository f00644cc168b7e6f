/**
 * Warning Events about policies. A ContainerAuditPolicy is cluster-scoped and an Event lives in a namespace:
 * Events about cluster-scoped objects go to `default` (as the kubelet does for Nodes), which is where
 * `kubectl describe auditpolicy` looks for them.
 *
 * The Event's name is derived from the policy, its generation and the message, so the same judgement told
 * twice (a retry, a restarted or second operator replica) is an AlreadyExists, not a second Event.
 */
import { createHash } from 'node:crypto';
import type { CoreV1Event } from '@kubernetes/client-node';
import { type Clock, realClock } from '../../common/clock.js';
import type { EventSink } from '../../common/kube/event-sink.js';
import { EVENT_COMPONENT } from '../../common/kube/identity.js';
import { MAX_EVENT_NOTE_BYTES, shortened } from '../../common/text/escape.js';
import { POLICY_KIND } from '../../api/v1alpha1/containerauditpolicy.js';
import { API_VERSION } from '../../api/v1alpha1/meta.js';

export const EVENT_NAMESPACE = 'default';
export const INVALID_POLICY_REASON = 'InvalidPolicy';

export interface PolicyRef {
  name: string;
  uid?: string;
  generation?: number;
}

/** What the reconciler tells about policies, written through the operator's one EventSink. */
export interface PolicyEvents {
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

export interface PolicyEventsOptions {
  /** reportingInstance: which replica told it (the pod name). */
  instance?: string;
  clock?: Pick<Clock, 'now'>;
}

/** The InvalidPolicy Warning Event: named after the judgement, in EVENT_NAMESPACE. */
export function invalidPolicyEvent(
  policy: PolicyRef,
  message: string,
  time: Date,
  instance?: string,
): CoreV1Event {
  // The message is a condition's, escaped already (status.ts): cut, not escaped again.
  const note = shortened(message, MAX_EVENT_NOTE_BYTES, 'bytes');
  return {
    metadata: { name: policyEventName(policy, INVALID_POLICY_REASON, note), namespace: EVENT_NAMESPACE },
    involvedObject: { apiVersion: API_VERSION, kind: POLICY_KIND, name: policy.name, uid: policy.uid },
    type: 'Warning',
    reason: INVALID_POLICY_REASON,
    message: note,
    source: { component: EVENT_COMPONENT },
    reportingComponent: EVENT_COMPONENT,
    ...(instance !== undefined ? { reportingInstance: instance } : {}),
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
  };
}

export function policyEvents(sink: EventSink, options: PolicyEventsOptions = {}): PolicyEvents {
  const clock = options.clock ?? realClock;
  return {
    async invalidPolicy(policy, message) {
      // 'exists': the same judgement told before (a retry, another replica).
      await sink.create(invalidPolicyEvent(policy, message, new Date(clock.now()), options.instance));
    },
  };
}
