import { Keywords } from './keywords.js';
import { PROGRAMS, programRules } from './programs.js';
import { lexShell } from './shell-words.js';
import { isSecretName, isSecretOption, programName, readCommands } from './word-secrets.js';

describe('isSecretName', () => {
  it.each([
    ['PASSWORD', 'strong'],
    ['db_password', 'strong'],
    ['keyStorePassword', 'strong'],
    ['GITHUB_TOKEN', 'strong'],
    ['client-secret', 'strong'],
    ['MYSQL_PWD', 'strong'],
    ['PASS', 'weak'],
    ['DB_PASS', 'weak'],
    ['PGPASS', 'weak'],
    ['requirepass', 'weak'],
    ['PW', 'weak'],
    ['STRIPE_KEY', 'weak'],
    ['REDIS_AUTH', 'weak'],
    ['sig', 'weak'],
    ['PWD', false],
    ['OLDPWD', false],
    ['BYPASS', false],
    ['COMPASS_URL', false],
    ['KEYBOARD', false],
    ['MONKEY', false],
    ['AUTHOR', false],
    ['PATH', false],
  ])('%s: %s', (name, expected) => {
    expect(isSecretName(name)).toBe(expected);
  });
});

describe('isSecretOption', () => {
  it.each([
    'password',
    'db-pass',
    'pass',
    'passphrase',
    'storepass',
    'client-secret',
    'api-key',
    'apikey',
    'secret-key',
    'access-token',
    'token',
    'auth',
    'basic-auth',
    'masterauth',
    'creds',
    'src-creds',
    'secret-string',
    'otp',
  ])('%s takes a secret', (name) => {
    expect(isSecretOption(name)).toBe(true);
  });

  it.each([
    'no-password',
    'ask-pass',
    'ask-become-pass',
    'password-stdin',
    'password-file',
    'pass-through',
    'token-ttl',
    'secret-name',
    'bypass',
    'key',
    'private-key',
    'with-token',
    'print-join-command',
    'name',
    'pwd',
  ])('%s does not', (name) => {
    expect(isSecretOption(name)).toBe(false);
  });
});

describe('programName', () => {
  it.each([
    ['mysql', 'mysql'],
    ['/usr/bin/mysql', 'mysql'],
    ['/usr/local/sbin/x', 'x'],
    ['./mysql', 'mysql'],
    ['/etc/htpasswd', ''],
    ['/var/lib/mysql', ''],
    ['-p', ''],
    ['A=b', ''],
  ])('%s names %j', (word, name) => {
    expect(programName(word)).toBe(name);
  });
});

describe('the program table', () => {
  it('spells options with their dashes, and valued letters are single letters not also secret', () => {
    for (const rule of PROGRAMS) {
      for (const option of Object.keys(rule.options ?? {})) expect(option).toMatch(/^(?:--?[A-Za-z0-9]|\/)/);
      for (const option of Object.keys(rule.options ?? {}))
        if (rule.style === 'getopt' && /^-[A-Za-z0-9]$/.test(option))
          expect({ names: rule.names, option, valued: rule.valued?.includes(option[1]!) ?? false }).toEqual({
            names: rule.names,
            option,
            valued: false,
          });
    }
  });

  it('finds rules by program name', () => {
    expect(programRules('mysql')).toHaveLength(1);
    expect(programRules('docker').length).toBeGreaterThan(1);
    expect(programRules('ls')).toEqual([]);
  });
});

describe('readCommands', () => {
  it('finds the words that are scripts', () => {
    const script = lexShell(`bash -lc 'a b'; ssh h "c d"; eval "e f"; sh <<< "g h"; curl -c jar x`);
    expect(readCommands(script.commands).scripts.map((w) => w.text)).toEqual([
      'a b',
      'h',
      'c d',
      'e f',
      'g h',
      'jar',
    ]);
  });

  it('reads a program from its next mention on, in bounded work', () => {
    const line = Array.from({ length: 2_000 }, (_, i) => `mysql -p${i}`).join(' ');
    const { spans } = readCommands(lexShell(line).commands);
    expect(spans).toHaveLength(2_000);
  });
});

describe('Keywords', () => {
  const keywords = new Keywords(['pass', 'password', 'sk_live_', 'private key', '://', 'asswo']);
  const found = (text: string): string[] =>
    ['pass', 'password', 'sk_live_', 'private key', '://', 'asswo'].filter((w) =>
      keywords.find(text).includes(keywords.id(w)),
    );

  it('finds every keyword, overlapping ones too, in either case', () => {
    expect(found('--PassWord=x')).toEqual(['pass', 'password', 'asswo']);
    expect(found('BEGIN RSA PRIVATE KEY https://x sk_live_1')).toEqual(['sk_live_', 'private key', '://']);
    expect(found('pas sword é pass')).toEqual(['pass']);
    expect(found('')).toEqual([]);
  });

  it('refuses keywords that are not ASCII', () => {
    expect(() => new Keywords(['mot de passe ü'])).toThrow(/ASCII/);
  });
});
