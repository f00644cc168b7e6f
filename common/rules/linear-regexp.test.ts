import { RE2JS } from 're2js';
import {
  DFA_MAX_MEMORY,
  type LinearRegExp,
  MAX_PROGRAM_SIZE,
  compileLinear,
  patternFeatures,
} from './linear-regexp.js';

function linear(source: string): LinearRegExp {
  const compiled = compileLinear(source);
  if (!compiled.ok) throw new Error(compiled.message);
  return compiled.regexp;
}

function refusal(source: string): string {
  const compiled = compileLinear(source);
  if (compiled.ok) throw new Error(`${source} compiled`);
  return compiled.message;
}

/** The whole match and its first `count` groups, as text (undefined for a group that took no part). */
function groups(source: string, text: string, count: number): (string | undefined)[] | null {
  const match = linear(source).exec(text);
  if (match === null) return null;
  const spans = [match, ...Array.from({ length: count }, (_, i) => match.group(i + 1))];
  return spans.map((span) => (span === undefined ? undefined : text.slice(span.start, span.end)));
}

/**
 * The command as a String object that counts the characters the engine reads (re2js reads its input with
 * charCodeAt): how many times the input is read, independent of the machine's speed.
 */
function counted(text: string): { input: string; reads: () => number } {
  let reads = 0;
  // eslint-disable-next-line @typescript-eslint/no-wrapper-object-types
  const input: String = new String(text);
  Object.defineProperty(input, 'charCodeAt', {
    value: (i: number): number => {
      reads++;
      return text.charCodeAt(i);
    },
  });
  return { input: input as string, reads: () => reads };
}

describe('compileLinear: the engine is linear in the input', () => {
  // Under backtracking these take about 2^50000 steps: finishing at all shows the engine is not backtracking.
  it('runs (a+)+$ on 50,000 characters that almost match', () => {
    const regexp = linear('(a+)+$');
    expect(regexp.exec(`${'a'.repeat(50_000)}!`)).toBeNull();
    expect(regexp.exec(`!${'a'.repeat(50_000)}`)?.start).toBe(1);
    expect(regexp.test(`${'a'.repeat(50_000)}!`)).toBe(false);
  });

  it('runs (x+x+)+y on 50,000 characters without a y', () => {
    expect(linear('(x+x+)+y').test('x'.repeat(50_000))).toBe(false);
    expect(linear('(x+x+)+y').exec(`${'x'.repeat(50_000)}y`)?.end).toBe(50_001);
  });

  // A count, not a clock: a backtracking engine reads characters again and again (2^n times for (a+)+$ on
  // a^n!), this one a number of times per character that depends on the pattern but not on the input's
  // length, so ten times the input is about ten times the reads. Each input holds the pattern's required
  // literal, so that the engine cannot rule it out with indexOf. Should a new version of the engine read its
  // input some other way, the lower bound fails and this check has to be redone.
  it.each([
    ['(a+)+$', (n: number) => `${'a'.repeat(n)}!`],
    ['(a|aa)+c', (n: number) => `${'a'.repeat(n)}bc`],
    ['(.*a){12}x', (n: number) => `${'a'.repeat(n)}bx`],
    ['(?:[a-z]+\\s*)+=', (n: number) => `${'ab '.repeat(n / 3)}!=`],
  ])('reads its input a number of times proportional to its length: %s', (source, input) => {
    const regexp = linear(source);
    const reads = (n: number, run: (text: string) => unknown): number => {
      const text = counted(input(n));
      expect(run(text.input)).toBeFalsy();
      expect(text.reads()).toBeGreaterThanOrEqual(n);
      return text.reads();
    };
    for (const run of [(t: string) => regexp.exec(t), (t: string) => regexp.test(t)])
      expect(reads(12_000, run) / reads(1_200, run)).toBeLessThanOrEqual(11);
  });
});

describe('compileLinear: memory', () => {
  it(`gives each pattern's DFA a budget of ${DFA_MAX_MEMORY} bytes instead of re2js's default`, () => {
    expect(RE2JS.compile('a').re2().dfa.maxMem).toBeGreaterThan(DFA_MAX_MEMORY);
    const regexp = linear('[ab]*a[ab]{20}c');
    const dfa = (regexp as unknown as { re: RE2JS }).re.re2().dfa;
    expect(dfa.maxMem).toBe(DFA_MAX_MEMORY);
    // A walk through the pattern's million states stays within the budget, with the right answers.
    let seed = 7;
    const walk = Array.from({ length: 20_000 }, () =>
      (seed = (seed * 69_069 + 1) % 2 ** 32) < 2 ** 31 ? 'a' : 'b',
    ).join('');
    expect(regexp.test(`${walk}a${'b'.repeat(20)}c`)).toBe(true);
    expect(regexp.test(`${walk}${'b'.repeat(21)}c`)).toBe(false);
    expect(dfa.maxMem).toBe(DFA_MAX_MEMORY);
    expect(dfa.stateCount).toBeGreaterThan(100);
  });
});

describe('compileLinear: what a match is', () => {
  it('keeps leftmost-first semantics: greedy and lazy quantifiers, alternatives in order, captures', () => {
    expect(groups('(a|ab)(c|bcd)(d*)', 'abcd', 3)).toEqual(['abcd', 'a', 'bcd', '']);
    expect(groups('<.+?>', '<a><b>', 0)).toEqual(['<a>']);
    expect(groups('(a)|(b)', 'b', 2)).toEqual(['b', undefined, 'b']);
    expect(linear('\\bfoo\\b').test('a foo.')).toBe(true);
  });

  it('names groups either way, and finds a group exactly', () => {
    const regexp = linear('(?<secret>\\d+)-(?P<other>\\d+)');
    expect(regexp.groupNames).toEqual({ secret: 1, other: 2 });
    expect(regexp.exec('x 12-12')?.group('secret')).toEqual({ start: 2, end: 4 });
    expect(regexp.exec('x 12-12')?.group('other')).toEqual({ start: 5, end: 7 });
  });

  it('searches from a position, with assertions seeing the text before it', () => {
    expect(linear('\\bfoo').exec('xfoo foo', 1)?.start).toBe(5);
    expect(linear('^a').exec('aa', 1)).toBeNull();
    expect(linear('a').exec('aa', 2)).toBeNull();
  });

  it('reads characters: a surrogate pair is one, a lone surrogate is one of its own', () => {
    expect(linear('x[\\x{DC80}-\\x{DCFF}]+y').exec('ax\uDCFF\uDC80yb')).toMatchObject({ start: 1, end: 5 });
    expect(linear('^.$').test('\u{1F600}')).toBe(true);
    expect(linear('\\x{D83D}').test('\u{1F600}')).toBe(false);
    expect(linear('\\x{D83D}').test('a\uD83D')).toBe(true);
    // Offsets are UTF-16 offsets, as String.prototype.slice takes.
    expect(linear('b').exec('\u{1F600}\u{1F600}b')).toMatchObject({ start: 4, end: 5 });
  });

  it('has ASCII classes: \\s is what separates words, not every Unicode space', () => {
    expect(linear('^\\s+$').test(' \t\n\f\r')).toBe(true);
    for (const space of ['\v', '\u00a0', '\u2028', '\ufeff']) expect(linear('\\s').test(space)).toBe(false);
    expect(linear('\\w').test('é')).toBe(false);
    expect(linear('^.$').test('\r')).toBe(true);
    expect(linear('.').test('\n')).toBe(false);
  });

  it('takes RE2 syntax: inline flags, POSIX and Unicode classes, \\Q...\\E, \\A and \\z, counts to 1000', () => {
    expect(linear('(?i)password').test('PassWord')).toBe(true);
    expect(linear('(?s)a.b').test('a\nb')).toBe(true);
    expect(linear('[[:digit:]]{3}').test('x123')).toBe(true);
    expect(linear('\\p{Greek}+').exec('abc αβγ')).toMatchObject({ start: 4, end: 7 });
    expect(linear('\\Qa.b\\E').test('axb')).toBe(false);
    expect(linear('\\Aroot\\z').test('root')).toBe(true);
    expect(linear('[]a]+').exec('x]a]')).toMatchObject({ start: 1, end: 4 });
    expect(linear('a{1000}').test('a'.repeat(1000))).toBe(true);
    expect(linear('(a{10}){100}').test('a'.repeat(999))).toBe(false);
  });
});

describe('compileLinear: what it refuses, and why', () => {
  it('refuses backreferences and lookaround', () => {
    for (const source of ['(a)\\1', '(?<n>a)\\k<n>', 'a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b'])
      expect(refusal(source)).toBe(
        'backreferences and lookaround are not supported: patterns are RE2 syntax',
      );
  });

  it('refuses counted repetition above 1000, nested counts multiplied, with a way out', () => {
    expect(refusal('a{1001}')).toBe(
      'counted repetition above 1000 is not supported, nested counts multiplied at `{1001}`: ' +
        'use + or * where the exact count does not matter',
    );
    expect(refusal('[0-9]{1,2000}')).toMatch(/^counted repetition above 1000/);
    expect(refusal('(a{100}){11}')).toMatch(/^counted repetition above 1000/);
  });

  it(`refuses programs of more than ${MAX_PROGRAM_SIZE} instructions`, () => {
    expect(compileLinear('[a-z]{1000}').ok).toBe(true);
    expect(refusal('[a-z]{1000}[0-9]{1000}')).toMatch(
      new RegExp(`^too large: it compiles to \\d+ instructions, at most ${MAX_PROGRAM_SIZE} are accepted`),
    );
  });

  it('refuses JavaScript-only syntax rather than reading it some other way, saying what to write', () => {
    expect(refusal('x\\uDC80')).toBe(
      'not a valid regular expression: \\uXXXX is JavaScript syntax, patterns are RE2 syntax: write \\x{XXXX}',
    );
    expect(refusal('\\cA')).toMatch(/^not a valid regular expression: \\cX is JavaScript syntax/);
    expect(refusal('\\e')).toBe('not a valid regular expression: invalid escape sequence at `\\e`');
    expect(refusal('(?<x>a)|(?<x>b)')).toBe(
      'not a valid regular expression: duplicate capture group name at `x`',
    );
  });

  it('refuses invalid patterns with RE2s reason and where', () => {
    expect(refusal('(a')).toBe('not a valid regular expression: missing closing ) at `(a`');
    expect(refusal('a**')).toBe('not a valid regular expression: invalid nested repetition operator at `**`');
    expect(refusal('[z-a]')).toBe('not a valid regular expression: invalid character class range at `z-a`');
  });
});

describe('patternFeatures', () => {
  it('reads escapes, classes and quoted text, so escaped or bracketed syntax is not mistaken', () => {
    expect(patternFeatures('\\(?=x\\)[(?=]\\\\1\\Q(?=\\1\\E[]\\1]')).toEqual({
      backreference: false,
      lookaround: false,
    });
    expect(patternFeatures('(a)\\1 (?<!x) \\u0041')).toEqual({
      backreference: true,
      lookaround: true,
      javaScriptEscape: '\\u',
    });
  });
});
