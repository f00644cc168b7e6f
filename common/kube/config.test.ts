import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { SERVICE_ACCOUNT_DIR, kubeconfigArg, loadKubeConfig } from './config.js';

function kubeconfig(context: string, server: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    `current-context: ${context}`,
    `clusters: [{name: ${context}, cluster: {server: "${server}"}}]`,
    `users: [{name: ${context}, user: {token: t}}]`,
    `contexts: [{name: ${context}, context: {cluster: ${context}, user: ${context}}}]`,
  ].join('\n');
}

describe('loadKubeConfig', () => {
  let dir: string;
  const VARS = ['KUBECONFIG', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT'] as const;
  const saved = Object.fromEntries(VARS.map((v) => [v, process.env[v]]));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
    writeFileSync(join(dir, 'a'), kubeconfig('a', 'https://a.example:6443'));
    writeFileSync(join(dir, 'b'), kubeconfig('b', 'https://b.example:6443'));
    for (const v of VARS) delete process.env[v];
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const v of VARS) {
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    }
  });

  it('prefers --kubeconfig over KUBECONFIG', () => {
    process.env.KUBECONFIG = join(dir, 'b');
    const loaded = loadKubeConfig({ kubeconfig: join(dir, 'a') });
    expect(loaded.source).toBe('flag');
    expect(loaded.kubeConfig.getCurrentCluster()?.server).toBe('https://a.example:6443');
  });

  it('merges the KUBECONFIG list, skipping missing files; the first current context wins', () => {
    process.env.KUBECONFIG = [join(dir, 'missing'), join(dir, 'a'), join(dir, 'b')].join(delimiter);
    const loaded = loadKubeConfig();
    expect(loaded.source).toBe('env');
    expect(loaded.kubeConfig.getCurrentCluster()?.server).toBe('https://a.example:6443');
    expect(loaded.kubeConfig.getContexts().map((c) => c.name)).toEqual(['a', 'b']);
  });

  it('loads the service account in a pod', () => {
    const sa = join(dir + SERVICE_ACCOUNT_DIR);
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'token');
    writeFileSync(join(sa, 'ca.crt'), '');
    writeFileSync(join(sa, 'namespace'), 'container-auditor');
    process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const loaded = loadKubeConfig({ serviceAccountRoot: dir });
    expect(loaded).toMatchObject({ source: 'in-cluster', from: 'https://10.0.0.1:443' });
  });

  it('says what to set when there is nothing to load, instead of guessing', () => {
    expect(() => loadKubeConfig({ serviceAccountRoot: dir })).toThrow(/--kubeconfig PATH, set KUBECONFIG/);
    process.env.KUBECONFIG = join(dir, 'missing');
    expect(() => loadKubeConfig()).toThrow(/none of the files in KUBECONFIG exists/);
    expect(() => loadKubeConfig({ kubeconfig: join(dir, 'missing') })).toThrow(/cannot load kubeconfig/);
  });

  it('reads --kubeconfig from argv in both spellings', () => {
    expect(kubeconfigArg(['--kubeconfig', '/k', '--x'])).toBe('/k');
    expect(kubeconfigArg(['--kubeconfig=/k'])).toBe('/k');
    expect(kubeconfigArg(['--other'])).toBeUndefined();
    expect(() => kubeconfigArg(['--kubeconfig'])).toThrow(/needs a path/);
    expect(() => kubeconfigArg(['--kubeconfig', '--x'])).toThrow(/needs a path/);
  });
});
