/**
 * A raw GET of JSON from the API server, authenticated by the KubeConfig. Used where client-node's typed
 * calls would convert the response (a typed list turns timestamps into `Date`s while a watch of the same
 * resource delivers strings) or has no call at all (any resource by path). A failure is an `ApiException`
 * with the code and the response text, like a typed call's, so `classifyError` treats both alike; the
 * response headers are not kept.
 *
 * It sends the request the way client-node's own `Watch` does: undici's `fetch` (the product's one HTTP
 * client, see common/http/README.md), with the headers and the connection pool (`dispatcher`: CA, client
 * certificate, proxy) that the KubeConfig gives a `RequestContext`.
 */
import { ApiException, HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch } from 'undici';

export type Query = Record<string, string | number | boolean | undefined>;

export interface GetJsonOptions {
  /** Abandons the request after this long without the whole answer (default 60 s). */
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
  const context = new RequestContext(url.toString(), HttpMethod.GET);
  context.setHeaderParam('Accept', 'application/json');
  // Client certificates, CA, bearer or exec tokens, proxy: all of it from the KubeConfig.
  await kc.applySecurityAuthentication(context);
  // A time-out rejects with a TimeoutError, which classifyError counts as transient.
  const response = await fetch(url, {
    method: 'GET',
    headers: context.getHeaders(),
    dispatcher: context.getDispatcher(),
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  });
  const text = await response.text();
  if (!response.ok)
    throw new ApiException(response.status, response.statusText || 'request failed', text, {});
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`GET ${path}: the response is not JSON`);
  }
}
