/**
 * The agent's HTTP client for the operator (api/agentapi/v1.ts): one base URL, a bearer token read from its
 * file on every request (a projected ServiceAccount token is rotated by the kubelet, so a cached copy would
 * expire), and the operator's CA when it is not one the system trusts.
 *
 * It only moves bytes: it answers with the status and the body, whatever the status, and throws only when
 * there is no answer (network error, timeout, abort, no token). What a status means is the caller's to
 * decide (plan-client.ts, reporter.ts).
 *
 * The requests go through undici's `fetch`, the product's one HTTP client (common/http/README.md), over one
 * keep-alive connection pool that trusts the operator's CA.
 */
import { readFile } from 'node:fs/promises';
import { Agent, fetch } from 'undici';
import type { BackoffPolicy } from '../../common/backoff.js';

/** Longest body read from an answer: a plan for 100,000 containers is far below this. */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * How the agent retries the operator (plan polls, reports): 250 ms doubling up to 15 s, each delay drawn
 * from [d, 2 d], so between 250 ms and 30 s.
 */
export const OPERATOR_RETRY_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 15_000, factor: 2, jitter: 1 };

export interface OperatorClientOptions {
  /** The operator's base URL, `https://host:port` (a path prefix is kept). */
  url: string;
  /** The projected ServiceAccount token (audience AGENT_TOKEN_AUDIENCE), read again for every request. */
  tokenFile: string;
  /** PEM: the CA that signed the operator's serving certificate; unset trusts the system's CAs. */
  ca?: string | Buffer;
}

export interface OperatorResponse {
  status: number;
  body: string;
}

export interface RequestOptions {
  body?: unknown;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The token file cannot be read or is empty: no request was sent. */
export class TokenError extends Error {}

/** Whether a URL may carry the agent's token: https, or plain http to the loopback (tests, port-forwards). */
export function isSafeOperatorUrl(url: URL): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
}

export class OperatorClient {
  readonly base: URL;
  private readonly pool: Agent;

  constructor(private readonly options: OperatorClientOptions) {
    this.base = new URL(options.url);
    if (this.base.protocol !== 'https:' && this.base.protocol !== 'http:')
      throw new Error(`the operator URL must be https: ${options.url}`);
    this.pool = new Agent(options.ca !== undefined ? { connect: { ca: options.ca } } : {});
  }

  /** Reads the token now: rotated tokens are picked up on the next request. */
  async token(): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.options.tokenFile, 'utf8');
    } catch (error) {
      throw new TokenError(
        `cannot read the token file ${this.options.tokenFile}: ${(error as Error).message}`,
      );
    }
    const token = text.trim();
    if (token.length === 0 || /\s/.test(token))
      throw new TokenError(`the token file ${this.options.tokenFile} does not hold one token`);
    return token;
  }

  /** `path` with its query, below the base URL's path. */
  urlFor(path: string, query: Record<string, string | undefined> = {}): URL {
    const url = new URL(this.base.href);
    url.pathname = `${this.base.pathname.replace(/\/+$/, '')}${path}`;
    url.search = '';
    for (const [key, value] of Object.entries(query))
      if (value !== undefined) url.searchParams.set(key, value);
    return url;
  }

  async request(
    method: 'GET' | 'POST',
    path: string,
    query: Record<string, string | undefined> = {},
    options: RequestOptions = {},
  ): Promise<OperatorResponse> {
    const token = await this.token();
    const url = this.urlFor(path, query);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
    try {
      const response = await fetch(url, {
        method,
        dispatcher: this.pool,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body } : {}),
        signal,
      });
      const chunks: Uint8Array[] = [];
      let size = 0;
      // Leaving the loop early cancels the body: the rest is never read.
      for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) break;
        chunks.push(chunk);
      }
      if (size > MAX_RESPONSE_BYTES)
        throw new Error(`the answer from ${url.host} exceeds ${MAX_RESPONSE_BYTES} bytes`);
      return { status: response.status, body: Buffer.concat(chunks).toString('utf8') };
    } catch (error) {
      if (timeout.aborted)
        throw new Error(`no answer from ${url.host} within ${timeoutMs} ms`, { cause: error });
      // fetch says "fetch failed"; the reason (refused, reset, a certificate not trusted) is its cause.
      // (By shape, not instanceof: the cause may come from another realm.)
      const cause = (error as { cause?: { message?: unknown } }).cause;
      if (typeof cause?.message === 'string')
        throw new Error(`${url.host}: ${cause.message}`, { cause: error });
      throw error;
    }
  }

  /** Closes the connections. */
  close(): void {
    void this.pool.close();
  }
}

/** The `error` and `detail` of an operator's error answer, for logs; the raw text (cut) otherwise. */
export function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; detail?: unknown };
    if (typeof parsed.error === 'string')
      return typeof parsed.detail === 'string' ? `${parsed.error}: ${parsed.detail}` : parsed.error;
  } catch {
    // not JSON: the text as is
  }
  return body.slice(0, 512);
}
