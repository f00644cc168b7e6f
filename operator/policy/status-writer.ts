/**
 * Writes a policy's status through the status subresource with server-side apply, under our own field
 * manager (common/kube/identity.ts). Apply rather than a merge patch because we send the whole status we mean: a field or list entry
 * we wrote before and leave out now (a node no longer hosting audited containers, `unauditablePods` of a
 * policy that turned Invalid) is removed by the server, while fields other managers own are left alone.
 *
 * The applied object carries the resourceVersion the status was computed from: the counters in it
 * (commandsRecorded) are the stored figure plus what the ledger gathered since, so a write computed from
 * a stale copy must fail (409) instead of setting the counter back.
 */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  type ContainerAuditPolicyStatus,
  POLICY_KIND,
  POLICY_PLURAL,
} from '../../api/v1alpha1/containerauditpolicy.js';
import { API_VERSION, GROUP, VERSION } from '../../api/v1alpha1/meta.js';
import { readPolicy } from './world.js';
import { FIELD_MANAGER } from '../../common/kube/identity.js';

export interface StoredStatus {
  resourceVersion?: string;
  status?: ContainerAuditPolicyStatus;
}

export interface StatusWriter {
  /**
   * Sets the policy's status if the policy is still at `resourceVersion` (any version when undefined);
   * returns what the server stored. Rejects with the API error (409 on a lost race, 404 when deleted).
   */
  apply(
    name: string,
    resourceVersion: string | undefined,
    status: ContainerAuditPolicyStatus,
  ): Promise<StoredStatus>;
}

export function kubeStatusWriter(api: CustomObjectsApi): StatusWriter {
  const options = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  return {
    async apply(name, resourceVersion, status) {
      const body = {
        apiVersion: API_VERSION,
        kind: POLICY_KIND,
        metadata: { name, ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
        status,
      };
      const stored: unknown = await api.patchClusterCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural: POLICY_PLURAL,
          name,
          body,
          fieldManager: FIELD_MANAGER,
          fieldValidation: 'Strict',
          // We are the only writer of status: take fields over from whoever set them by hand.
          force: true,
        },
        options,
      );
      const policy = readPolicy(stored);
      return { resourceVersion: policy?.resourceVersion, status: policy?.status };
    },
  };
}
