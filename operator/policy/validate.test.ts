import { labelKeyProblem, labelValueProblem, parseSpec, selectorProblems, specProblems } from './validate.js';
import { spec } from './testdata/fixtures.js';

describe('label syntax', () => {
  it.each([
    ['app', true],
    ['app.kubernetes.io/name', true],
    ['kubernetes.io/metadata.name', true],
    ['A_b-c.d', true],
    ['x'.repeat(63), true],
    ['x'.repeat(64), false],
    ['has space', false],
    ['-leading', false],
    ['trailing.', false],
    ['Upper.Case/name', false],
    ['/name', false],
    ['prefix/', false],
    ['a/b/c', false],
  ])('key %j valid: %s', (key, valid) => {
    expect(labelKeyProblem(key) === undefined).toBe(valid);
  });

  it.each([
    ['', true],
    ['v1.2_3-x', true],
    ['x'.repeat(63), true],
    ['x'.repeat(64), false],
    ['a b', false],
    ['-a', false],
    ['a/b', false],
  ])('value %j valid: %s', (value, valid) => {
    expect(labelValueProblem(value) === undefined).toBe(valid);
  });
});

describe('selectorProblems', () => {
  it('names each bad key and value by its field', () => {
    const problems = selectorProblems(
      {
        matchLabels: { 'bad key': 'ok', good: 'bad value!' },
        matchExpressions: [
          { key: 'fine', operator: 'In', values: ['ok', 'not ok'] },
          { key: 'bad/key/', operator: 'Exists' },
        ],
      },
      'spec.selector.podSelector',
    );
    expect(problems.map((p) => p.field)).toEqual([
      'spec.selector.podSelector.matchLabels["bad key"]',
      'spec.selector.podSelector.matchLabels["good"]',
      'spec.selector.podSelector.matchExpressions[0].values[1]',
      'spec.selector.podSelector.matchExpressions[1].key',
    ]);
    expect(problems[1]!.message).toContain('"bad value!"');
  });

  it('finds nothing wrong with an empty or a sound selector', () => {
    expect(selectorProblems({}, 's')).toEqual([]);
    expect(
      selectorProblems(
        {
          matchLabels: { app: 'web' },
          matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }],
        },
        's',
      ),
    ).toEqual([]);
  });
});

describe('specProblems', () => {
  it('accepts the defaults and sound rules', () => {
    expect(specProblems(spec({ redact: { patterns: ['acme_[A-Za-z0-9]{16}'] } }))).toEqual([]);
  });

  it('refuses what the agent cannot compile, naming the field (a backreference: RE2 has none)', () => {
    expect(specProblems(spec({ redact: { patterns: ['(a)\\1'] } }))).toEqual([
      { field: 'spec.redact.patterns[0]', message: expect.any(String) as string },
    ]);
  });

  it('refuses a namespace selector value the API server let through', () => {
    expect(
      specProblems(spec({ selector: { namespaceSelector: { matchLabels: { env: 'prod uction' } } } })),
    ).toEqual([
      { field: 'spec.selector.namespaceSelector.matchLabels["env"]', message: expect.any(String) as string },
    ]);
  });
});

describe('parseSpec', () => {
  it('fills in defaults', () => {
    const parsed = parseSpec({});
    expect(parsed.ok && parsed.spec.retention.maxAge).toBe('720h');
  });

  it.each([
    [{ capture: { maxCommandBytes: 0 } }, 'spec.capture.maxCommandBytes'],
    [{ alerts: [{ name: 'A B', pattern: 'x' }] }, 'spec.alerts[0].name'],
    [{ unknownField: true }, 'spec'],
    ['not an object', 'spec'],
  ])('names the field of a schema failure: %j', (raw, field) => {
    const parsed = parseSpec(raw);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problems.map((p) => p.field)).toContain(field);
  });
});
