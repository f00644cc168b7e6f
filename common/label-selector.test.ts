import { isEmptySelector, matchesSelector, selectorKeys } from './label-selector.js';

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front' };

  it('matches everything when empty', () => {
    expect(matchesSelector({}, {})).toBe(true);
    expect(isEmptySelector({ matchLabels: {}, matchExpressions: [] })).toBe(true);
  });

  it.each([
    [{ matchLabels: { app: 'web' } }, true],
    [{ matchLabels: { app: 'db' } }, false],
    [{ matchLabels: { app: 'web', env: 'prod' } }, false],
    [{ matchExpressions: [{ key: 'app', operator: 'In' as const, values: ['db', 'web'] }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'NotIn' as const, values: ['web'] }] }, false],
    [{ matchExpressions: [{ key: 'env', operator: 'NotIn' as const, values: ['prod'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'Exists' as const }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' as const }] }, false],
    [{ matchExpressions: [{ key: 'constructor', operator: 'Exists' as const }] }, false],
  ])('%j -> %s', (selector, expected) => {
    expect(matchesSelector(selector, labels)).toBe(expected);
  });

  it('lists the keys it reads', () => {
    expect(
      selectorKeys({ matchLabels: { a: '1' }, matchExpressions: [{ key: 'b', operator: 'Exists' }] }),
    ).toEqual(['a', 'b']);
  });
});
