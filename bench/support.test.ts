import { alternating, median, parseOptionValues } from './support.js';

describe('parseOptionValues', () => {
  const parse = (argv: string[]) =>
    parseOptionValues(argv, ['baseline', 'rounds'] as const, 'usage', {
      flags: ['quick'],
      valueOptional: { baseline: 'HEAD~1' },
    });

  it('gives an option whose value may be left out that value when it stands alone', () => {
    expect(parse(['--baseline'])).toMatchObject({ baseline: 'HEAD~1' });
    expect(parse(['--baseline', '--rounds', '3'])).toMatchObject({ baseline: 'HEAD~1', rounds: '3' });
    expect(parse(['--baseline', '--quick'])).toMatchObject({ baseline: 'HEAD~1', quick: true });
  });

  it('takes the value given, either way it is written', () => {
    expect(parse(['--baseline', 'main~1', '--quick'])).toMatchObject({ baseline: 'main~1', quick: true });
    expect(parse(['--baseline=6124525'])).toMatchObject({ baseline: '6124525' });
  });

  it('leaves options out that were not given, and refuses unknown ones', () => {
    expect(parse(['--rounds', '2'])).toEqual({ rounds: '2' });
    expect(() => parse(['--baselin'])).toThrow();
    // Other options still need their value.
    expect(() => parse(['--rounds'])).toThrow();
  });
});

describe('alternating', () => {
  it('reverses every other round, so that what goes first in one round goes last in the next', () => {
    expect(alternating(['a', 'b'], 3)).toEqual(['a', 'b', 'b', 'a', 'a', 'b']);
    expect(alternating(['a', 'b', 'c'], 1)).toEqual(['a', 'b', 'c']);
  });
});

describe('median', () => {
  it('is the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1])).toBe(2.5);
    expect(median([10, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
