/**
 * Kubernetes API failures as values to branch on. client-node (2.x) throws `ApiException` with `code`, `body`
 * (the response text, a JSON `Status` for API errors; `undefined` for a 401) and `headers`; its `message`
 * embeds the headers and the whole body, so it must never reach a log. Its `Watch` fails with a plain `Error`
 * that carries `statusCode`, or with a `TimeoutError` when nothing arrived for 30 s. Requests go through
 * undici's `fetch`, whose failure to connect or broken connection is a `TypeError: fetch failed` with the
 * Node.js system error (`code: 'ECONNRESET'`) as its `cause`; our own raw requests (rest.ts) fail with that
 * system error itself. `classifyError` folds all of these into a `KubeError` that keeps the HTTP code, the
 * Status reason and the Status message (bounded, escaped: common/text/escape.ts), and nothing else.
 */
import { ApiException } from '@kubernetes/client-node';
import { excerpt } from '../text/escape.js';

export type KubeErrorKind =
  | 'not-found'
  | 'conflict'
  | 'already-exists'
  | 'unauthorized'
  | 'forbidden'
  | 'invalid'
  /** 410: a resourceVersion or continue token too old to serve; list again. */
  | 'gone'
  /** Worth retrying as is: throttling, server errors, timeouts, broken connections. */
  | 'transient'
  | 'other';

/** Status messages can list every invalid field; a log line or a condition needs the gist. */
const MAX_DETAIL = 1024;

export class KubeError extends Error {
  override readonly name = 'KubeError';

  constructor(
    readonly kind: KubeErrorKind,
    /** The HTTP status code; undefined when no response arrived. */
    readonly code: number | undefined,
    /** The Status reason (`NotFound`, `Conflict`, `AlreadyExists`, `Expired`...), when the server gave one. */
    readonly reason: string | undefined,
    /** The Status message or the system error, bounded. */
    readonly detail: string,
  ) {
    super(`${kind}${code === undefined ? '' : ` (${code}${reason ? ` ${reason}` : ''})`}: ${detail}`);
  }
}

/** Node.js and fetch error codes of a connection that failed or broke: the request may succeed if retried. */
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

const TRANSIENT_CODES = new Set([408, 429, 500, 502, 503, 504]);

/** Error names of a request given up on for time (`AbortSignal.timeout`, client-node's watch timer). */
const TIMEOUT_ERROR_NAMES = new Set(['TimeoutError']);

interface StatusFields {
  code?: number;
  reason?: string;
  message?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The fields of a `metav1.Status`, from a parsed object or from the response text that holds one. */
export function statusFields(body: unknown): StatusFields {
  let value = body;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      return {};
    }
  }
  if (!isRecord(value)) return {};
  return {
    code: typeof value.code === 'number' ? value.code : undefined,
    reason: typeof value.reason === 'string' && value.reason !== '' ? value.reason : undefined,
    message: typeof value.message === 'string' && value.message !== '' ? value.message : undefined,
  };
}

/** The HTTP status of a failed request, whichever client-node path produced it; undefined if none. */
export function statusCode(error: unknown): number | undefined {
  if (error instanceof KubeError) return error.code;
  if (error instanceof ApiException) return error.code;
  if (!isRecord(error)) return undefined;
  if (typeof error.statusCode === 'number') return error.statusCode; // client-node's Watch
  if (error.kind === 'Status' && typeof error.code === 'number') return error.code; // a watch ERROR event
  return undefined;
}

function kindOf(
  code: number | undefined,
  reason: string | undefined,
  networkCode: string | undefined,
): KubeErrorKind {
  if (code === undefined) return networkCode && NETWORK_ERROR_CODES.has(networkCode) ? 'transient' : 'other';
  if (code === 404) return 'not-found';
  if (code === 409) return reason === 'AlreadyExists' ? 'already-exists' : 'conflict';
  if (code === 410) return 'gone';
  if (code === 401) return 'unauthorized';
  if (code === 403) return 'forbidden';
  if (code === 400 || code === 422) return 'invalid';
  if (TRANSIENT_CODES.has(code)) return 'transient';
  return 'other';
}

/** The server's words, escaped: a Status message can quote a refused value, which may be a container's text. */
function bounded(text: string): string {
  return excerpt(text, MAX_DETAIL);
}

/** A KubeError from a `metav1.Status` (a watch ERROR event carries one). */
export function statusError(status: unknown): KubeError {
  const { code, reason, message } = statusFields(status);
  return new KubeError(kindOf(code, reason, undefined), code, reason, bounded(message ?? 'no message'));
}

/** Any failure as a KubeError; never reads an ApiException's message or headers. */
export function classifyError(error: unknown): KubeError {
  if (error instanceof KubeError) return error;
  if (error instanceof ApiException) {
    const status = statusFields(error.body);
    const reason = status.reason;
    // Not every error body is a Status: an unknown API group gets `404 page not found` as plain text.
    const text = typeof error.body === 'string' ? error.body.trim().split('\n')[0] : undefined;
    const detail = status.message ?? (text || (error.code === 401 ? 'Unauthorized' : `HTTP ${error.code}`));
    return new KubeError(kindOf(error.code, reason, undefined), error.code, reason, bounded(detail));
  }
  if (isRecord(error) && error.kind === 'Status') return statusError(error);
  const code = statusCode(error);
  const failure = errorLike(error);
  // undici's fetch wraps the system error: `TypeError: fetch failed`, the reason in `cause`.
  const cause = errorLike(failure?.cause);
  const networkCode = systemErrorCode(error) ?? systemErrorCode(cause);
  const timedOut = failure !== undefined && TIMEOUT_ERROR_NAMES.has(failure.name);
  const detail = failure
    ? `${failure.name}: ${failure.message}${cause ? ` (${cause.message})` : ''}`
    : typeof error === 'string'
      ? error
      : 'unknown';
  const kind = timedOut && code === undefined ? 'transient' : kindOf(code, undefined, networkCode);
  return new KubeError(kind, code, undefined, bounded(detail));
}

/**
 * An `Error` or `DOMException`, from this realm or another (`instanceof Error` is false for a Node.js
 * `DOMException` seen from a test's VM context): what has a string name and message.
 */
function errorLike(value: unknown): { name: string; message: string; cause?: unknown } | undefined {
  if (value instanceof Error) return value;
  if (!isRecord(value) || typeof value.name !== 'string' || typeof value.message !== 'string')
    return undefined;
  return { name: value.name, message: value.message, cause: value.cause };
}

/** A Node.js or undici error code (`ECONNRESET`, `UND_ERR_SOCKET`); not a DOMException's numeric one. */
function systemErrorCode(error: unknown): string | undefined {
  return isRecord(error) && typeof error.code === 'string' ? error.code : undefined;
}

export const isNotFound = (error: unknown): boolean => classifyError(error).kind === 'not-found';
export const isConflict = (error: unknown): boolean => classifyError(error).kind === 'conflict';
export const isAlreadyExists = (error: unknown): boolean => classifyError(error).kind === 'already-exists';
export const isUnauthorized = (error: unknown): boolean => classifyError(error).kind === 'unauthorized';
export const isForbidden = (error: unknown): boolean => classifyError(error).kind === 'forbidden';
export const isInvalid = (error: unknown): boolean => classifyError(error).kind === 'invalid';
export const isGone = (error: unknown): boolean => classifyError(error).kind === 'gone';
export const isTransient = (error: unknown): boolean => classifyError(error).kind === 'transient';

/** One line for a log field or a condition message: kind, code, reason and the server's message. */
export function describeError(error: unknown): string {
  return classifyError(error).message;
}
