import type { ContainerRecord } from '../containers/registry.js';
import type { CommandFilter } from './plan.js';
import { PolicyFileError, StandalonePolicyPlan, parsePolicyText } from './standalone-policy.js';
import { containerRecord } from '../containers/testdata/container-record.js';

const noFilter: CommandFilter = {
  apply: (text) => ({ text, redacted: false, alerts: [] }),
  applyArgv: (args) => ({ args: [...args], redacted: false, alerts: [] }),
};

function policy(spec: string): string {
  return `apiVersion: containeraudit.io/v1alpha1\nkind: ContainerAuditPolicy\nmetadata: {name: p}\nspec: ${spec}\n`;
}

const container = (identity: ContainerRecord['identity']) => containerRecord(identity);

const pod = { kind: 'container' as const, podNamespace: 'shop', podName: 'web-1', containerName: 'app' };

describe('the standalone policy plan', () => {
  it('audits every container but sandboxes when the selectors are empty', () => {
    const plan = new StandalonePolicyPlan(parsePolicyText(policy('{}'), 'f'), noFilter);
    expect(plan.auditOf(container({ kind: 'unknown' }))).toMatchObject({ audited: true });
    expect(plan.auditOf(container(pod))).toMatchObject({
      audited: true,
      audit: { policy: 'p', maxCommandBytes: 4096, interactiveShells: true, execs: false },
    });
    expect(plan.auditOf(container({ kind: 'sandbox' }))).toMatchObject({ audited: false });
  });

  it('selects by namespace name and container name, which the node knows', () => {
    const plan = new StandalonePolicyPlan(
      parsePolicyText(
        policy(
          '{selector: {namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [shop]}]}, containers: [app]}}',
        ),
        'f',
      ),
      noFilter,
    );
    expect(plan.auditOf(container(pod)).audited).toBe(true);
    expect(plan.auditOf(container({ ...pod, podNamespace: 'dev' }))).toEqual({
      audited: false,
      reason: 'namespace dev is not selected',
    });
    expect(plan.auditOf(container({ ...pod, containerName: 'sidecar' }))).toEqual({
      audited: false,
      reason: 'container sidecar is not selected',
    });
    expect(plan.auditOf(container({ kind: 'unknown' }))).toMatchObject({ audited: false });
  });

  it('refuses selectors that need the cluster, saying which', () => {
    const make = (spec: string) => () =>
      new StandalonePolicyPlan(parsePolicyText(policy(spec), 'f'), noFilter);
    expect(make('{selector: {podSelector: {matchLabels: {app: web}}}}')).toThrow(
      /podSelector.*needs the cluster/,
    );
    expect(make('{selector: {namespaceSelector: {matchLabels: {team: a}}}}')).toThrow(
      /team need the cluster/,
    );
  });

  it('audits nothing while suspended', () => {
    const plan = new StandalonePolicyPlan(parsePolicyText(policy('{suspend: true}'), 'f'), noFilter);
    expect(plan.auditOf(container(pod))).toEqual({ audited: false, reason: 'the policy is suspended' });
  });

  it.each([
    ['not YAML', 'a: [', /not YAML or JSON/],
    ['two documents', `${policy('{}')}---\n${policy('{}')}`, /exactly one ContainerAuditPolicy, found 2/],
    ['a bad field', policy('{capture: {maxCommandBytes: 0}}'), /spec\.capture\.maxCommandBytes/],
    ['another kind', 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n', /kind/],
  ])('refuses %s with a clear error', (_, text, message) => {
    expect(() => parsePolicyText(text, 'policy.yaml')).toThrow(PolicyFileError);
    expect(() => parsePolicyText(text, 'policy.yaml')).toThrow(message);
  });

  it('refuses a file of nested aliases (a billion laughs) with a clear error, without expanding them', () => {
    // Ten levels of ten aliases each: 10^10 strings if expanded. Aliases stay shared references, and the
    // schema stops at the first level that is not a list of strings.
    const levels = ['l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 10; i++)
      levels.push(
        `l${i}: &l${i} [${Array(10)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    const text =
      `apiVersion: containeraudit.io/v1alpha1\nkind: ContainerAuditPolicy\nmetadata:\n  name: p\n` +
      `  annotations:\n${levels.map((l) => `    ${l}`).join('\n')}\n` +
      'spec: {}\n';
    expect(() => parsePolicyText(text, 'policy.yaml')).toThrow(PolicyFileError);
    expect(() => parsePolicyText(text, 'policy.yaml')).toThrow(/metadata\.annotations\.l0/);
  });

  it('reads YAML as kubectl does: merge keys merge, timestamps and yes stay strings', () => {
    const text =
      'apiVersion: containeraudit.io/v1alpha1\nkind: ContainerAuditPolicy\nmetadata:\n  name: p\n' +
      '  labels: &labels {app: shop}\n' +
      '  annotations:\n    <<: *labels\n    at: 2026-01-01T00:00:00Z\n    ok: yes\nspec: {}\n';
    expect(parsePolicyText(text, 'policy.yaml').metadata?.annotations).toEqual({
      app: 'shop',
      at: '2026-01-01T00:00:00Z',
      ok: 'yes',
    });
  });
});
