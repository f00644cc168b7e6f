/** What an integration test needs to talk to the control plane that e2e/jest/global-setup.mjs started. */
import { type CommandResult, runCommand } from './command.js';
import { type CoreV1Api, type CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { AuditRecord } from '../../api/v1alpha1/auditrecord.js';
import {
  API_VERSION,
  GROUP,
  POLICY_KIND,
  POLICY_PLURAL,
  RECORD_PLURAL,
  VERSION,
} from '../../api/v1alpha1/index.js';
import { CRD_DIR, KUBECTL } from './paths.js';

export function testKubeconfigPath(): string {
  const path = process.env.CONTAINER_AUDITOR_TEST_KUBECONFIG;
  if (!path)
    throw new Error('CONTAINER_AUDITOR_TEST_KUBECONFIG is not set: run this test in the integration tier');
  return path;
}

export function testKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(testKubeconfigPath());
  return kc;
}

/** Runs the kubectl built with the control plane against it, as a user would. */
export function kubectl(args: string[], input?: string): Promise<CommandResult> {
  return runCommand(KUBECTL, ['--kubeconfig', testKubeconfigPath(), ...args], { input });
}

/** kubectl that must succeed; throws with its stderr otherwise. */
export async function kubectlOk(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** Installs the CRDs and waits until the API server serves them; `run` is kubectl against the cluster. */
export async function installCrds(run: (args: string[]) => Promise<unknown> = kubectlOk): Promise<void> {
  await run(['apply', '--server-side', '-f', CRD_DIR]);
  await run(['wait', '--for=condition=Established', '--timeout=60s', '-f', CRD_DIR]);
}

/** Creates the ContainerAuditPolicy `name` (cluster-scoped) with `spec`, and `labels` if given. */
export async function createAuditPolicy(
  custom: CustomObjectsApi,
  name: string,
  spec: object,
  labels?: Record<string, string>,
): Promise<void> {
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: POLICY_KIND,
      metadata: { name, ...(labels ? { labels } : {}) },
      spec,
    },
  });
}

/** The AuditRecords in `namespace`, as the API server has them. */
export async function listAuditRecords(custom: CustomObjectsApi, namespace: string): Promise<AuditRecord[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RECORD_PLURAL,
    namespace,
  })) as { items: AuditRecord[] };
  return list.items;
}

/** Deletes the AuditRecords and Events in `namespace` (no controller-manager collects them); never throws. */
export async function removeWritten(
  core: CoreV1Api,
  custom: CustomObjectsApi,
  namespace: string,
): Promise<void> {
  await custom
    .deleteCollectionNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RECORD_PLURAL,
      namespace,
    })
    .catch(() => undefined);
  await core.deleteCollectionNamespacedEvent({ namespace }).catch(() => undefined);
}
