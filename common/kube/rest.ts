/**
 * A raw GET of JSON from the API server, authenticated by the KubeConfig. Used where client-node's typed
 * calls would convert the response (a typed list turns timestamps into `Date`s while a watch of the same
 * resource delivers strings) or has no call at all (any resource by path). A failure is an `ApiException`
 * with the code and the response text, like a typed call's, so `classifyError` treats both alike; the
 * response headers are not kept.
 */
import { request as httpRequest } from 'node:http';
import { type RequestOptions, request as httpsRequest } from 'node:https';
import { ApiException, type KubeConfig } from '@kubernetes/client-node';

export type Query = Record<string, string | number | boolean | undefined>;

export interface GetJsonOptions {
  /** Abandons the request after this long without an answer (default 60 s). */
  timeoutMs?: number;
}

export async function getJson(
  kc: KubeConfig,
  path: string,
  query: Query = {},
  options: GetJsonOptions = {},
): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(name, String(value));
  }
  const requestOptions: RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  // Client certificates, CA, bearer or exec tokens, proxy agent: all of it from the KubeConfig.
  await kc.applyToHTTPSOptions(requestOptions);
  const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
  const timeoutMs = options.timeoutMs ?? 60_000;

  return new Promise((resolve, reject) => {
    const request = send(url, requestOptions, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const code = response.statusCode ?? 0;
        if (code < 200 || code > 299) {
          reject(new ApiException(code, response.statusMessage ?? 'request failed', text, {}));
          return;
        }
        try {
          resolve(JSON.parse(text) as unknown);
        } catch {
          reject(new Error(`GET ${path}: the response is not JSON`));
        }
      });
    });
    request.setTimeout(timeoutMs, () =>
      request.destroy(
        Object.assign(new Error(`GET ${path}: no answer in ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
      ),
    );
    request.on('error', reject);
    request.end();
  });
}
