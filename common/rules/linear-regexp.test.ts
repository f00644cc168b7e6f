import { compileLinear, enableLinearRegExp, isLinear, patternFeatures } from './linear-regexp.js';

function linear(source: string, flags = ''): RegExp {
  const compiled = compileLinear(source, flags);
  if (!compiled.ok) throw new Error(compiled.message);
  return compiled.regexp;
}

function refusal(source: string): string {
  const compiled = compileLinear(source);
  if (compiled.ok) throw new Error(`${source} compiled`);
  return compiled.message;
}

describe('enableLinearRegExp', () => {
  it('makes the l flag available at run time, and may be called again', () => {
    enableLinearRegExp();
    enableLinearRegExp();
    const flag = 'l';
    expect(new RegExp('a+', flag).flags).toBe('l');
  });
});

describe('compileLinear', () => {
  it('compiles for the linear engine, with the flags asked for', () => {
    const regexp = linear('a+b', 'g');
    expect(isLinear(regexp)).toBe(true);
    expect(regexp.flags).toBe('gl');
    expect(isLinear(/a+b/g)).toBe(false);
  });

  // Under backtracking both take about 2^50000 steps: finishing at all shows the engine is not backtracking.
  it('runs (a+)+$ on 50,000 characters that almost match', () => {
    const regexp = linear('(a+)+$');
    expect(regexp.exec(`${'a'.repeat(50_000)}!`)).toBeNull();
    expect(regexp.exec(`!${'a'.repeat(50_000)}`)?.index).toBe(1);
  });

  it('runs (x+x+)+y on 50,000 characters without a y', () => {
    expect(linear('(x+x+)+y').test('x'.repeat(50_000))).toBe(false);
    expect(linear('(x+x+)+y').test(`${'x'.repeat(50_000)}y`)).toBe(true);
  });

  it('keeps JavaScript semantics: leftmost match, greedy and lazy quantifiers, captures', () => {
    expect(linear('(a|ab)(c|bcd)(d*)').exec('abcd')?.slice(0)).toEqual(['abcd', 'a', 'bcd', '']);
    expect(linear('<.+?>').exec('<a><b>')?.[0]).toBe('<a>');
    expect(linear('(?<secret>\\d+)').exec('x42')?.groups).toEqual({ secret: '42' });
    expect(linear('\\bfoo\\b').test('a foo.')).toBe(true);
  });

  it('refuses backreferences and lookaround, saying why', () => {
    for (const source of ['(a)\\1', '(?<n>a)\\k<n>', 'a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b'])
      expect(refusal(source)).toBe(
        'backreferences and lookaround are not supported: patterns are RE2 syntax',
      );
  });

  it('refuses counted repetition above 16, which this engine cannot run, with a way out', () => {
    expect(refusal('[0-9]{1,20}')).toMatch(/^counted repetition above 16 .* x\{16\}x\{16\} for x\{32\}/);
    expect(refusal('a{17}')).toMatch(/^counted repetition above 16/);
    expect(refusal('a{16,}')).toMatch(/^counted repetition above 16/);
    expect(isLinear(linear('a{15,}'))).toBe(true);
    expect(isLinear(linear('a{16}a{16}b{0,16}'))).toBe(true);
    // Nested counts multiply: each is small, the product is not.
    expect(refusal('(a{4}){5}')).toMatch(/^cannot be run in linear time/);
  });

  it('refuses invalid patterns with V8s reason', () => {
    expect(refusal('(a')).toBe('not a valid regular expression: Unterminated group');
    expect(refusal('a**')).toBe('not a valid regular expression: Nothing to repeat');
  });

  it('refuses RE2 syntax that JavaScript would read differently', () => {
    expect(refusal('(?i)password')).toMatch(
      /^inline flags \(\?i\) is RE2 syntax that JavaScript reads differently/,
    );
    expect(refusal('(?P<x>a)')).toMatch(/^\(\?P<name>\.\.\.\) groups is RE2 syntax/);
    expect(refusal('\\Aroot')).toMatch(/^\\A \(use \^\) is RE2 syntax/);
    expect(refusal('[[:digit:]]+')).toMatch(/^\[\[:name:\]\] classes is RE2 syntax/);
    expect(refusal('\\pL')).toMatch(/^\\p\{\.\.\.\} classes is RE2 syntax/);
    expect(refusal('[]a]')).toMatch(/^a \] first in a class is RE2 syntax/);
  });

  it('compiles patterns on lone surrogates, which it treats as characters', () => {
    const regexp = linear('x[\\uDC80-\\uDCFF]+y');
    expect(regexp.exec('ax\uDCFF\uDC80yb')?.[0]).toBe('x\uDCFF\uDC80y');
  });
});

describe('patternFeatures', () => {
  it('reads escapes and classes, so escaped or bracketed syntax is not mistaken', () => {
    expect(patternFeatures('\\(?=x\\)[(?=]\\\\1')).toEqual({
      backreference: false,
      lookaround: false,
      largestCount: 0,
      secretGroup: false,
    });
    expect(patternFeatures('token=(?<secret>\\S+){2,40}')).toMatchObject({
      secretGroup: true,
      largestCount: 40,
    });
  });
});
