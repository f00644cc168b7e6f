import { ApiException } from '@kubernetes/client-node';
import {
  KubeError,
  classifyError,
  describeError,
  isAlreadyExists,
  isConflict,
  isForbidden,
  isGone,
  isInvalid,
  isNotFound,
  isTransient,
  isUnauthorized,
  statusCode,
  statusError,
} from './errors.js';

/** A failure as client-node's generated clients throw it: the body is the response text. */
function apiException(code: number, reason?: string, message?: string): ApiException<string | undefined> {
  const body = reason
    ? JSON.stringify({ kind: 'Status', status: 'Failure', reason, message, code })
    : undefined;
  return new ApiException(code, 'Unknown API Status Code!', body, {
    authorization: 'Bearer s3cr3t-token',
    'set-cookie': 'session=s3cr3t',
  });
}

describe('classifyError', () => {
  it.each([
    [404, 'NotFound', 'not-found'],
    [409, 'Conflict', 'conflict'],
    [409, 'AlreadyExists', 'already-exists'],
    [410, 'Expired', 'gone'],
    [401, undefined, 'unauthorized'],
    [403, 'Forbidden', 'forbidden'],
    [422, 'Invalid', 'invalid'],
    [400, 'BadRequest', 'invalid'],
    [429, 'TooManyRequests', 'transient'],
    [500, 'InternalError', 'transient'],
    [503, 'ServiceUnavailable', 'transient'],
    [504, 'Timeout', 'transient'],
    [418, 'Teapot', 'other'],
  ] as const)('%i %s is %s', (code, reason, kind) => {
    const error = classifyError(apiException(code, reason, 'the message'));
    expect(error).toMatchObject({ kind, code, reason });
  });

  it('keeps the code, reason and message, never the headers or the raw body', () => {
    const error = classifyError(apiException(404, 'NotFound', 'pods "web-0" not found'));
    expect(error.message).toBe('not-found (404 NotFound): pods "web-0" not found');
    expect(describeError(apiException(409, 'Conflict', 'modified'))).toBe(
      'conflict (409 Conflict): modified',
    );
    expect(JSON.stringify(error)).not.toContain('s3cr3t');
    expect(error.message).not.toContain('s3cr3t');
    expect(describeError(apiException(401))).toBe('unauthorized (401): Unauthorized');
  });

  it('bounds a long message', () => {
    expect(describeError(apiException(422, 'Invalid', 'x'.repeat(5000))).length).toBeLessThan(1100);
  });

  it('escapes what a message quotes: a refused value may be a container’s text', () => {
    const quoted = 'spec.container.name: Invalid value: "app\b\b\bdb\u202e": must be a container name';
    expect(describeError(apiException(422, 'Invalid', quoted))).toBe(
      'invalid (422 Invalid): spec.container.name: Invalid value: "app\\x08\\x08\\x08db\\u{202e}": must be a container name',
    );
  });

  it('reads the status code of a failed watch (a plain Error with statusCode)', () => {
    const watchError = Object.assign(new Error('Gone'), { statusCode: 410 });
    expect(statusCode(watchError)).toBe(410);
    expect(isGone(watchError)).toBe(true);
  });

  it('turns a watch ERROR event (a Status object) into an error', () => {
    const status = { kind: 'Status', status: 'Failure', code: 410, reason: 'Expired', message: 'too old' };
    expect(statusError(status)).toMatchObject({ kind: 'gone', code: 410, reason: 'Expired' });
    expect(classifyError(status).kind).toBe('gone');
  });

  it('takes broken connections for transient failures, and anything else for other', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(isTransient(reset)).toBe(true);
    expect(classifyError(reset)).toMatchObject({ kind: 'transient', code: undefined });
    expect(classifyError(new TypeError('x is undefined')).kind).toBe('other');
    expect(classifyError('a string').message).toBe('other: a string');
  });

  it('reads the system error under undici’s `fetch failed` (client-node 2.x requests and watches)', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    const failed = new TypeError('fetch failed', { cause: refused });
    expect(isTransient(failed)).toBe(true);
    expect(classifyError(failed).message).toBe(
      'transient: TypeError: fetch failed (connect ECONNREFUSED 127.0.0.1:6443)',
    );
    const closed = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    expect(isTransient(new TypeError('terminated', { cause: closed }))).toBe(true);
    expect(classifyError(new TypeError('fetch failed', { cause: new Error('bad port') })).kind).toBe('other');
  });

  it('takes a timed-out request (a DOMException TimeoutError, numeric code) for a transient failure', () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    expect(classifyError(timeout)).toMatchObject({ kind: 'transient', code: undefined });
    expect(classifyError(new DOMException('aborted', 'AbortError')).kind).toBe('other');
  });

  it('answers the predicates', () => {
    expect(isNotFound(apiException(404, 'NotFound'))).toBe(true);
    expect(isConflict(apiException(409, 'Conflict'))).toBe(true);
    expect(isConflict(apiException(409, 'AlreadyExists'))).toBe(false);
    expect(isAlreadyExists(apiException(409, 'AlreadyExists'))).toBe(true);
    expect(isForbidden(apiException(403, 'Forbidden'))).toBe(true);
    expect(isUnauthorized(apiException(401))).toBe(true);
    expect(isInvalid(apiException(422, 'Invalid'))).toBe(true);
    expect(isNotFound(new Error('x'))).toBe(false);
    expect(statusCode(new KubeError('conflict', 409, 'Conflict', 'x'))).toBe(409);
    expect(statusCode(undefined)).toBeUndefined();
  });
});
