import { ApiException } from '@kubernetes/client-node';
import { writeFailure } from './outcome.js';

/** What client-node throws for an API error: the Status as the response text. */
function status(code: number, reason: string, message: string, details?: object): ApiException<string> {
  const body = { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code, details };
  return new ApiException(code, `HTTP ${code}`, JSON.stringify(body), {});
}

describe('writeFailure', () => {
  it.each([
    [
      'a deleted namespace (NamespaceLifecycle: 404 on namespaces)',
      status(404, 'NotFound', 'namespaces "ci-42" not found', { name: 'ci-42', kind: 'namespaces' }),
      { permanent: true, reason: 'namespace-gone', scope: 'target' },
    ],
    [
      'a terminating namespace',
      status(
        403,
        'Forbidden',
        'auditrecords.containeraudit.io "x" is forbidden: unable to create new content in namespace ci-42 because it is being terminated',
        {
          name: 'x',
          group: 'containeraudit.io',
          kind: 'auditrecords',
          causes: [{ reason: 'NamespaceTerminating', message: 'namespace ci-42 is being terminated' }],
        },
      ),
      { permanent: true, reason: 'namespace-gone', scope: 'target' },
    ],
    [
      'RBAC',
      status(403, 'Forbidden', 'auditrecords.containeraudit.io is forbidden: User "x" cannot create', {
        group: 'containeraudit.io',
        kind: 'auditrecords',
      }),
      { permanent: true, reason: 'forbidden', scope: 'target' },
    ],
    [
      'a schema refusal',
      status(
        422,
        'Invalid',
        'AuditRecord.containeraudit.io "x" is invalid: status.commands[0].command: Too long',
      ),
      { permanent: true, reason: 'invalid', scope: 'content' },
    ],
    [
      'a request body too large',
      status(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728'),
      { permanent: true, reason: 'too-large', scope: 'content' },
    ],
    // Both as kube-apiserver 1.34 answers them, with etcd 3.6 at its default limits.
    [
      'etcd refusing the object (over 1.5 MiB)',
      status(500, '', 'etcdserver: request is too large'),
      { permanent: true, reason: 'too-large', scope: 'content' },
    ],
    [
      'the etcd client refusing to send it (over 2 MiB)',
      status(
        500,
        '',
        'rpc error: code = ResourceExhausted desc = trying to send message larger than max (2164791 vs. 2097152)',
      ),
      { permanent: true, reason: 'too-large', scope: 'content' },
    ],
  ])('is permanent for %s', (_what, error, expected) => {
    expect(writeFailure(error)).toEqual(expected);
  });

  it.each([
    ['throttling', status(429, 'TooManyRequests', 'too many requests')],
    ['a server error', status(500, 'InternalError', 'Internal error occurred: something broke')],
    ['an unavailable server', status(503, 'ServiceUnavailable', 'the server is currently unable')],
    ['a time-out', status(504, 'Timeout', 'the server was unable to return a response in time')],
    [
      'a missing resource type (no CRD yet)',
      status(404, 'NotFound', 'the server could not find the requested resource'),
    ],
    ['a broken connection', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
    ['anything else', new Error('unexpected')],
  ])('is transient for %s', (_what, error) => {
    expect(writeFailure(error)).toEqual({ permanent: false });
  });
});
