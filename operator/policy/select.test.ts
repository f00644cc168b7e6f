import type { Labels } from '../../common/label-selector.js';
import { emptyPlan } from './node-plans.js';
import { type PodFacts, type PolicyFacts, type PolicySelection, select } from './select.js';
import { pod, policy, spec } from './testdata/fixtures.js';

const namespaces = new Map<string, Labels>([
  ['prod', { env: 'production', 'kubernetes.io/metadata.name': 'prod' }],
  ['dev', { env: 'dev', 'kubernetes.io/metadata.name': 'dev' }],
]);

interface Case {
  name: string;
  policies: PolicyFacts[];
  pods: PodFacts[];
  runtimeClass?: string;
  maxNamedPods?: number;
  /** Expected figures per policy (a subset of PolicySelection). */
  want: Record<string, Partial<PolicySelection>>;
}

const cases: Case[] = [
  {
    name: 'an empty selector selects every container of every pod',
    policies: [policy('all', 0)],
    pods: [pod('prod/a', { containers: ['app', 'sidecar'] }), pod('dev/b')],
    want: {
      all: {
        active: true,
        matchedPods: 2,
        auditedContainers: 3,
        unauditablePods: 0,
        nodes: [{ name: 'node-a', containers: 3 }],
      },
    },
  },
  {
    name: 'a namespace selector reads the namespace labels; an unknown namespace has none',
    policies: [
      policy('prod', 0, { selector: { namespaceSelector: { matchLabels: { env: 'production' } } } }),
    ],
    pods: [pod('prod/a'), pod('dev/b'), pod('unknown/c')],
    want: { prod: { matchedPods: 1, auditedContainers: 1 } },
  },
  {
    name: 'an unknown namespace still matches an empty namespace selector',
    policies: [policy('all', 0)],
    pods: [pod('unknown/c')],
    want: { all: { matchedPods: 1, auditedContainers: 1 } },
  },
  {
    name: 'a pod selector with expressions',
    policies: [
      policy('web', 0, {
        selector: {
          podSelector: {
            matchExpressions: [
              { key: 'app', operator: 'In', values: ['web'] },
              { key: 'debug', operator: 'DoesNotExist' },
            ],
          },
        },
      }),
    ],
    pods: [
      pod('prod/web', { labels: { app: 'web' } }),
      pod('prod/web-debug', { labels: { app: 'web', debug: 'yes' } }),
      pod('prod/db', { labels: { app: 'db' } }),
    ],
    want: { web: { matchedPods: 1, auditedContainers: 1 } },
  },
  {
    name: 'container names narrow the selection; a pod with none of them is not matched',
    policies: [policy('app-only', 0, { selector: { containers: ['app', 'absent'] } })],
    pods: [pod('prod/a', { containers: ['app', 'sidecar'] }), pod('prod/b', { containers: ['sidecar'] })],
    want: { 'app-only': { matchedPods: 1, auditedContainers: 1 } },
  },
  {
    name: 'pods outside the audit RuntimeClass are unauditable, named in order, at most N',
    policies: [policy('all', 0)],
    pods: [
      pod('prod/z', { runtimeClassName: undefined }),
      pod('prod/y', { runtimeClassName: 'gvisor' }),
      pod('dev/x', { runtimeClassName: undefined, nodeName: undefined }),
      pod('prod/ok'),
    ],
    maxNamedPods: 2,
    want: {
      all: {
        matchedPods: 4,
        unauditablePods: 3,
        unauditablePodNames: ['dev/x', 'prod/y'],
        auditedContainers: 1,
        unscheduledPods: 0,
      },
    },
  },
  {
    name: 'the audit RuntimeClass name is configurable',
    policies: [policy('all', 0)],
    pods: [pod('prod/a', { runtimeClassName: 'audited' }), pod('prod/b')],
    runtimeClass: 'audited',
    want: { all: { auditedContainers: 1, unauditablePods: 1, unauditablePodNames: ['prod/b'] } },
  },
  {
    name: 'a pod with no node yet is matched and planned nowhere',
    policies: [policy('all', 0)],
    pods: [pod('prod/pending', { nodeName: undefined })],
    want: { all: { matchedPods: 1, unscheduledPods: 1, auditedContainers: 0, nodes: [] } },
  },
  {
    name: 'finished pods are left out; a pod being deleted is still audited',
    policies: [policy('all', 0)],
    pods: [
      pod('prod/done', { phase: 'Succeeded' }),
      pod('prod/failed', { phase: 'Failed' }),
      pod('prod/leaving', { deleting: true, phase: 'Running' }),
    ],
    want: { all: { matchedPods: 1, auditedContainers: 1 } },
  },
  {
    name: 'overlap: the oldest policy audits, the younger counts it as audited elsewhere',
    policies: [policy('young', 5), policy('old', 1)],
    pods: [pod('prod/a', { containers: ['app', 'sidecar'] })],
    want: {
      old: { auditedContainers: 2, auditedElsewhere: [] },
      young: { matchedPods: 1, auditedContainers: 0, auditedElsewhere: [{ policy: 'old', containers: 2 }] },
    },
  },
  {
    name: 'overlap with the same creation time: the name decides',
    policies: [policy('bravo', 1), policy('alpha', 1)],
    pods: [pod('prod/a')],
    want: {
      alpha: { auditedContainers: 1 },
      bravo: { auditedContainers: 0, auditedElsewhere: [{ policy: 'alpha', containers: 1 }] },
    },
  },
  {
    name: 'overlap on some containers only: each container goes to its oldest selector',
    policies: [policy('old-app', 1, { selector: { containers: ['app'] } }), policy('young-all', 2)],
    pods: [pod('prod/a', { containers: ['app', 'sidecar', 'debugger'] })],
    want: {
      'old-app': { auditedContainers: 1 },
      'young-all': { auditedContainers: 2, auditedElsewhere: [{ policy: 'old-app', containers: 1 }] },
    },
  },
  {
    name: 'a suspended policy contributes nothing: the younger one audits',
    policies: [policy('old', 1, { suspend: true }), policy('young', 2)],
    pods: [pod('prod/a')],
    want: {
      old: { suspended: true, active: false, matchedPods: 1, auditedContainers: 0, nodes: [] },
      young: { auditedContainers: 1, auditedElsewhere: [] },
    },
  },
  {
    name: 'an invalid policy contributes nothing and names the field',
    policies: [policy('old', 1, { redact: { patterns: ['ok', '(a)\\1'] } }), policy('young', 2)],
    pods: [pod('prod/a')],
    want: {
      old: { active: false, evaluated: true, matchedPods: 1, auditedContainers: 0 },
      young: { auditedContainers: 1 },
    },
  },
  {
    name: 'a spec that failed the schema is not evaluated',
    policies: [
      { name: 'broken', spec: { ok: false, problems: [{ field: 'spec.capture', message: 'bad' }] } },
      policy('young', 2),
    ],
    pods: [pod('prod/a')],
    want: {
      broken: {
        active: false,
        evaluated: false,
        matchedPods: 0,
        problems: [{ field: 'spec.capture', message: 'bad' }],
      },
      young: { auditedContainers: 1 },
    },
  },
  {
    name: 'nodes are listed with their container counts',
    policies: [policy('all', 0)],
    pods: [
      pod('prod/a', { nodeName: 'node-b' }),
      pod('prod/b', { nodeName: 'node-a', containers: ['x', 'y'] }),
    ],
    want: {
      all: {
        nodes: [
          { name: 'node-a', containers: 2 },
          { name: 'node-b', containers: 1 },
        ],
      },
    },
  },
];

describe('select: per-policy figures', () => {
  it.each(cases)('$name', ({ policies, pods, runtimeClass, maxNamedPods, want }) => {
    const result = select({ policies, namespaces, pods, runtimeClass, maxNamedPods });
    for (const [name, figures] of Object.entries(want))
      expect(result.policies.get(name)).toMatchObject(figures);
  });

  it('names the field of every problem of an invalid policy', () => {
    const result = select({
      policies: [
        policy('bad', 0, {
          redact: { patterns: ['(a)\\1'] },
          alerts: [{ name: 'x', pattern: '(?<=a)b\\k<nope>' }],
          selector: { podSelector: { matchLabels: { app: 'not a value!' } } },
        }),
      ],
      namespaces,
      pods: [],
    });
    expect(result.policies.get('bad')!.problems.map((p) => p.field)).toEqual([
      'spec.selector.podSelector.matchLabels["app"]',
      'spec.redact.patterns[0]',
      'spec.alerts[0].pattern',
    ]);
  });
});

describe('select: node plans', () => {
  const rulesA = { redact: { patterns: ['token=[a-z]+'] } };

  it('plans each node its containers and the rules of exactly the policies they name', () => {
    const { plans } = select({
      policies: [
        policy('a', 1, { ...rulesA, selector: { containers: ['app'] } }),
        policy('b', 2, { capture: { execs: true } }),
        policy('unused', 3, { selector: { podSelector: { matchLabels: { none: 'x' } } } }),
      ],
      namespaces,
      pods: [
        pod('prod/p1', { containers: ['app', 'sidecar'] }),
        pod('prod/p2', { nodeName: 'node-b', containers: ['app'] }),
      ],
    });
    expect([...plans.keys()].sort()).toEqual(['node-a', 'node-b']);
    const a = plans.get('node-a')!;
    expect(a.node).toBe('node-a');
    expect(a.containers).toEqual([
      { podNamespace: 'prod', podName: 'p1', podUid: 'uid-p1', containerName: 'app', policy: 'a' },
      { podNamespace: 'prod', podName: 'p1', podUid: 'uid-p1', containerName: 'sidecar', policy: 'b' },
    ]);
    expect(Object.keys(a.policies)).toEqual(['a', 'b']);
    expect(a.policies['a']!.redact.patterns).toEqual(['token=[a-z]+']);
    expect(a.policies['b']!.capture.execs).toBe(true);
    expect(a).not.toHaveProperty('generatedAt');
    expect(Object.keys(plans.get('node-b')!.policies)).toEqual(['a']);
  });

  it('gives no plan to nodes with nothing to audit, and none for suspended, invalid or unauditable', () => {
    const { plans } = select({
      policies: [policy('s', 1, { suspend: true }), policy('i', 2, { redact: { patterns: ['(a)\\1'] } })],
      namespaces,
      pods: [pod('prod/a')],
    });
    expect(plans.size).toBe(0);
    expect(
      select({
        policies: [policy('all', 1)],
        namespaces,
        pods: [pod('prod/a', { runtimeClassName: undefined })],
      }).plans.size,
    ).toBe(0);
  });

  const pods = [
    pod('prod/a', { containers: ['app', 'b'] }),
    pod('dev/c'),
    pod('prod/d', { containers: ['z'] }),
  ];
  const versionOf = (policies: PolicyFacts[], p: PodFacts[]) =>
    select({ policies, namespaces, pods: p }).plans.get('node-a')?.version;

  it('versions plans by content: the listing order does not matter', () => {
    const v = versionOf([policy('x', 1), policy('y', 2)], pods);
    expect(v).toMatch(/^[0-9a-f]{32}$/);
    expect(versionOf([policy('y', 2), policy('x', 1)], [...pods].reverse())).toBe(v);
  });

  it.each<[string, PolicyFacts[], PodFacts[]]>([
    ['a container more', [policy('x', 1)], [...pods, pod('prod/e')]],
    [
      'a pod recreated (new uid)',
      [policy('x', 1)],
      [pod('prod/a', { uid: 'new', containers: ['app', 'b'] }), ...pods.slice(1)],
    ],
    ['a rule changed', [policy('x', 1, { capture: { maxCommandBytes: 100 } })], pods],
    ['an alert added', [policy('x', 1, { alerts: [{ name: 'rm', pattern: 'rm -rf' }] })], pods],
    ['another policy owns the containers', [policy('w', 0), policy('x', 1)], pods],
  ])('changes the version when %s', (_what, policies, p) => {
    expect(versionOf(policies, p)).not.toBe(versionOf([policy('x', 1)], pods));
  });

  it('keeps the version when a policy change touches no node', () => {
    const base = versionOf([policy('x', 1)], pods);
    expect(
      versionOf(
        [
          policy('x', 1),
          policy('elsewhere', 2, { selector: { containers: ['nothing'] }, capture: { execs: true } }),
        ],
        pods,
      ),
    ).toBe(base);
    // Only the spec matters, not when the policy was created (as long as it still wins).
    expect(versionOf([{ ...policy('x', 1), creationTimestamp: '2020-01-01T00:00:00Z' }], pods)).toBe(base);
  });

  it('versions the empty plan too, per node', () => {
    expect(emptyPlan('node-a').version).toMatch(/^[0-9a-f]{32}$/);
    expect(emptyPlan('node-a').version).toBe(emptyPlan('node-a').version);
    expect(emptyPlan('node-a').version).not.toBe(emptyPlan('node-b').version);
    expect(emptyPlan('node-a')).toMatchObject({ policies: {}, containers: [] });
  });

  it('defaults what the spec leaves out, as the server would', () => {
    expect(spec().capture).toEqual({ interactiveShells: true, execs: false, maxCommandBytes: 4096 });
  });
});
