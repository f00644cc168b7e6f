/**
 * Credentials an agent and an operator use in tests and benches: a self-signed certificate for the operator's
 * loopback endpoint (openssl), and ServiceAccount tokens from the TokenRequest API, bound to a Pod the way a
 * projected token in the agent's pod is.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { AGENT_TOKEN_AUDIENCE } from '../../api/agentapi/v1.js';

export interface SelfSignedCert {
  certFile: string;
  keyFile: string;
}

/** Writes tls.crt and tls.key into `dir`: an EC key, valid for a day, for 127.0.0.1 and localhost. */
export function selfSignedCert(dir: string, commonName = 'container-auditor-operator'): SelfSignedCert {
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  const result = spawnSync(
    'openssl',
    [
      ...[
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
      ],
      ...['-subj', `/CN=${commonName}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      ...['-keyout', keyFile, '-out', certFile],
    ],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`openssl failed: ${result.error?.message ?? result.stderr}`);
  return { certFile, keyFile };
}

export interface ScratchCert extends SelfSignedCert {
  /** The new directory holding tls.crt and tls.key (the caller removes it). */
  dir: string;
  /** The certificate's bytes, to trust as the CA. */
  ca: Buffer;
}

/** A new scratch directory named from `prefix`, with a self-signed certificate in it. */
export function scratchCert(prefix: string, commonName?: string): ScratchCert {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const cert = selfSignedCert(dir, commonName);
  return { dir, ...cert, ca: readFileSync(cert.certFile) };
}

export interface TokenOptions {
  namespace: string;
  serviceAccount: string;
  audiences: string[];
  /** The Pod the token is bound to (its node is the agent's). */
  boundPod?: V1Pod;
  expirationSeconds?: number;
}

/** A token from the TokenRequest API (`kubectl create token`), optionally bound to a Pod. */
export async function requestToken(core: CoreV1Api, options: TokenOptions): Promise<string> {
  const { boundPod } = options;
  const result = await core.createNamespacedServiceAccountToken({
    name: options.serviceAccount,
    namespace: options.namespace,
    body: {
      spec: {
        audiences: options.audiences,
        expirationSeconds: options.expirationSeconds ?? 3600,
        ...(boundPod
          ? {
              boundObjectRef: {
                apiVersion: 'v1',
                kind: 'Pod',
                name: boundPod.metadata!.name,
                uid: boundPod.metadata!.uid,
              },
            }
          : {}),
      },
    },
  });
  // Optional in the model (client-node 2.x); the API server always sets it on success.
  const token = result.status?.token;
  if (!token)
    throw new Error(`the TokenRequest for ${options.namespace}/${options.serviceAccount} returned no token`);
  return token;
}

/**
 * The token the kubelet would project into `pod`: of the pod's ServiceAccount, for the agents' audience, bound
 * to the pod.
 */
export function agentToken(core: CoreV1Api, pod: V1Pod, expirationSeconds?: number): Promise<string> {
  return requestToken(core, {
    namespace: pod.metadata!.namespace!,
    serviceAccount: pod.spec!.serviceAccountName!,
    audiences: [AGENT_TOKEN_AUDIENCE],
    boundPod: pod,
    ...(expirationSeconds !== undefined ? { expirationSeconds } : {}),
  });
}

/**
 * An agent on `node`: the ServiceAccount `agent` in `namespace`, a Pod `agent` of it on the node (it stays
 * Pending: there is no kubelet), and its projected token.
 */
export async function agentOnNode(
  core: CoreV1Api,
  options: { namespace: string; node: string; image: string; expirationSeconds?: number },
): Promise<{ pod: V1Pod; token: string }> {
  const { namespace, node, image, expirationSeconds } = options;
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'agent' } } });
  const pod = await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: 'agent' },
      spec: { nodeName: node, serviceAccountName: 'agent', containers: [{ name: 'agent', image }] },
    },
  });
  return { pod, token: await agentToken(core, pod, expirationSeconds) };
}
