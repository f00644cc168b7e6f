/**
 * Where the API server is and who we are to it, in the order a user expects: `--kubeconfig PATH`, then
 * `$KUBECONFIG` (a list of files, merged as kubectl does: the first file's current context wins), then the
 * pod's service account. Unlike client-node's `loadFromDefault`, nothing else is tried: no `~/.kube/config`
 * picked up by surprise, no fallback to `http://localhost:8080`; with none of the three, loading fails and
 * says what to set.
 */
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export type KubeConfigSource = 'flag' | 'env' | 'in-cluster';

export interface LoadedKubeConfig {
  kubeConfig: KubeConfig;
  source: KubeConfigSource;
  /** The files read, or the in-cluster server: for the start-up log line. */
  from: string;
}

export interface LoadKubeConfigOptions {
  /** The `--kubeconfig` flag's value. */
  kubeconfig?: string;
  /** Prefixes the service account directory (tests). */
  serviceAccountRoot?: string;
}

/** The value of `--kubeconfig PATH` or `--kubeconfig=PATH` in argv, if given. */
export function kubeconfigArg(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('--kubeconfig=')) return nonEmpty(arg.slice('--kubeconfig='.length));
    if (arg === '--kubeconfig') {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new Error('--kubeconfig needs a path');
      return nonEmpty(value);
    }
  }
  return undefined;
}

function nonEmpty(path: string): string {
  if (path === '') throw new Error('--kubeconfig needs a path');
  return path;
}

function fromFiles(files: readonly string[]): KubeConfig {
  const kc = new KubeConfig();
  files.forEach((file, i) => {
    const next = i === 0 ? kc : new KubeConfig();
    try {
      next.loadFromFile(file);
    } catch (error) {
      throw new Error(
        `cannot load kubeconfig ${file}: ${error instanceof Error ? error.message : 'unknown'}`,
        { cause: error },
      );
    }
    if (i > 0) kc.mergeConfig(next, true);
  });
  return kc;
}

function checked(loaded: LoadedKubeConfig): LoadedKubeConfig {
  if (!loaded.kubeConfig.getCurrentCluster()) {
    throw new Error(`kubeconfig from ${loaded.from} has no current context with a cluster`);
  }
  return loaded;
}

export function loadKubeConfig(options: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  // process.env, not an injected copy: client-node's in-cluster loader reads it too.
  const env = process.env;
  if (options.kubeconfig !== undefined) {
    return checked({ kubeConfig: fromFiles([options.kubeconfig]), source: 'flag', from: options.kubeconfig });
  }
  const list = env.KUBECONFIG;
  if (list) {
    // kubectl skips the files of the list that do not exist; so do we, but not all of them.
    const files = list.split(delimiter).filter((file) => file !== '' && existsSync(file));
    if (files.length === 0) throw new Error(`none of the files in KUBECONFIG exists: ${list}`);
    return checked({ kubeConfig: fromFiles(files), source: 'env', from: files.join(delimiter) });
  }
  const root = options.serviceAccountRoot ?? '';
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) {
    if (!existsSync(join(root + SERVICE_ACCOUNT_DIR, 'token'))) {
      throw new Error(`in a cluster but without a service account token in ${SERVICE_ACCOUNT_DIR}`);
    }
    const kc = new KubeConfig();
    // Reads the token file at each request: projected tokens are rotated in place.
    kc.loadFromCluster(root);
    return checked({ kubeConfig: kc, source: 'in-cluster', from: kc.getCurrentCluster()?.server ?? '' });
  }
  throw new Error(
    'no Kubernetes API server configured: pass --kubeconfig PATH, set KUBECONFIG, or run in a pod with a service account',
  );
}
