/**
 * Hostile input: `kubectl get auditrecords` shows the pod, container, node and policy names in its columns,
 * and kubectl does not escape them. The schema (and so the CRD the API server enforces) takes only the shapes
 * Kubernetes gives those names, so no column can carry a control or bidirectional formatting character.
 */
import { AuditRecordSpec } from './index.js';

const spec = {
  pod: { name: 'web-0', uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' },
  container: { name: 'app', id: 'c0ffee' },
  node: 'node-a.example',
  policy: 'production-shells',
  session: { kind: 'shell', pid: 4242, start: '2026-11-29T10:00:00Z' },
};

describe('AuditRecord printer columns', () => {
  it('take Kubernetes names', () => {
    expect(AuditRecordSpec.safeParse(spec).success).toBe(true);
  });

  it.each([
    ['pod', { pod: { ...spec.pod, name: 'web-0\b\b\b\b\bdb-0' } }, ['pod', 'name']],
    ['container', { container: { ...spec.container, name: 'app\n  Normal  Pulled' } }, ['container', 'name']],
    ['node', { node: 'node-a\u202e' }, ['node']],
    ['policy', { policy: 'prod\x1b[8m' }, ['policy']],
  ])('refuse a %s name with control characters', (_what, change, path) => {
    expect(AuditRecordSpec.safeParse({ ...spec, ...change }).error?.issues[0]?.path).toEqual(path);
  });
});
