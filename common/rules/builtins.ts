/**
 * The built-in secret shapes (`spec.redact.builtins`). Each shape is a regular expression in three parts:
 * `before` and `after` are kept as context, `secret` is replaced, so `--password=hunter2` becomes
 * `--password=[REDACTED]` and `https://bob:pw@host` becomes `https://bob:[REDACTED]@host`.
 *
 * The shapes, and what they deliberately leave alone:
 * - password-option: long options named password, passwd, pass, passphrase, token, secret, api-key (also
 *   apikey, api_key) or secret-access-key, alone or after prefixes (`--db-password`, `--client-secret`,
 *   `--access-token`; not `--no-password`), with `=` or whitespace. After whitespace the value must not start
 *   with `-` (`mysql --password -u root` prompts; `-u` is the next option). Not `--password-file PATH`,
 *   `--pass-through`, `--password-stdin`. Short options (`-p`) are ambiguous (port, path, prompt) and only
 *   handled for the commands below.
 * - mysql-password: `-pSECRET` (attached) after mysql, mysqldump, mysqladmin, mariadb... in the same command.
 * - registry-login: `docker login -p SECRET` (also podman, nerdctl, buildah, skopeo).
 * - sshpass-password: `sshpass -p SECRET`.
 * - curl-user: `curl ... -u user:SECRET` and `--user`/`--proxy-user`; curl only, since `docker run -u 0:0`
 *   is a uid and gid.
 * - url-userinfo: `scheme://user:SECRET@host` for any scheme; `https://user@host` has no password.
 * - env-assignment: `NAME=SECRET` where NAME (case-insensitive) contains PASSWORD, PASSWD, PASSPHRASE,
 *   SECRET, TOKEN, API_KEY, APIKEY, ACCESS_KEY, PRIVATE_KEY, CREDENTIAL or `_PWD` (MYSQL_PWD, not PWD), as in
 *   `export`, `env`, `-e`, `--env` and query strings (`?access_token=...`).
 * - key-value: `name: SECRET` with such a name, as in headers (`-H "X-Auth-Token: ..."`), YAML and JSON.
 * - authorization: `Authorization: SCHEME SECRET` (the scheme is kept), also Proxy-Authorization.
 * - bearer: `Bearer SECRET` anywhere, when SECRET is token-like and at least 8 characters.
 * - short-name-assignment: `PASS=`, `DB_PASS=`, `PW=`, `STRIPE_KEY=`, `REDIS_AUTH=` (a name part, so not
 *   `BYPASS=`).
 * - aws-secret-key: the value after `aws_secret_access_key` (`aws configure set aws_secret_access_key X`).
 * - sql-password: `IDENTIFIED [WITH plugin] BY 'x'`, `PASSWORD 'x'`, `PASSWORD = 'x'`, `PASSWORD('x')`
 *   (MySQL, PostgreSQL, SQL Server, Oracle), as given to `mysql -e` or `psql -c`.
 * - azure-storage-key: `AccountKey=` and `SharedAccessKey=` in connection strings, `sig=` in SAS URLs.
 * - cloud and service keys, replaced whole: AWS access key ids (AKIA, ASIA, ABIA, ACCA + 16), Google API keys
 *   (AIza + 35) and OAuth secrets and tokens (GOCSPX-, ya29.), GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_,
 *   github_pat_), GitLab tokens (glpat-, gldt-, glrt-, ...), Slack tokens (xoxb-, xoxa-, xoxp-, ..., xapp-)
 *   and webhook URLs, Stripe secret and restricted keys (sk_live_, rk_live_, _test_, whsec_), OpenAI keys
 *   (sk-..., sk-proj-, sk-svcacct-, sk-admin-), Anthropic keys (sk-ant-), npm (npm_), PyPI (pypi-AgE...),
 *   SendGrid (SG.x.y), Twilio API keys (SK + 32 hex), Hugging Face (hf_), DigitalOcean (dop_v1_, doo_v1_,
 *   dor_v1_), and others with a fixed prefix (Vault hvs./hvb./hvr., Docker Hub dckr_pat_, Grafana glsa_ and
 *   glc_, Shopify shpat_ ..., Databricks dapi, Postman PMAK-, Terraform .atlasv1., age AGE-SECRET-KEY-1,
 *   Linear lin_api_, Sentry sntrys_, Atlassian ATATT3, New Relic NRAK-, Mailgun key-, Square sq0atp-), JWTs
 *   (eyJ....eyJ....sig).
 * - private-key: the body of `-----BEGIN ... PRIVATE KEY-----` (PEM, OpenSSH, `PGP PRIVATE KEY BLOCK`, and
 *   `---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`) up to its END line, or to the end of the command when the
 *   END is not in it (the agent sees a shell's input line by line, so a key pasted into a heredoc arrives as
 *   separate commands: key-blocks.ts follows those).
 *
 * A value is one quoted string ('a b', "a \" b"), replaced whole with its quotes, or an unquoted run (with
 * backslash escapes and $(...)), which stops at whitespace, at quotes and at ; & | < > ( ) `. The shapes
 * cannot tell whether they are themselves inside quotes (`echo 'PASSWORD=x' > f`), so on the raw text they
 * do not join a run and a quoted part into one shell word the way a shell would: command-rules.ts also runs
 * them on the words as the shell sees them, where `PASSWORD=''x` reads `PASSWORD=x`.
 *
 * Every shape is ASCII case-insensitive where names are (written out as [Pp][Aa]...: RE2's `(?i)` folds
 * Unicode too, so that `ſ` and the Kelvin sign would count as `s` and `k`) and is compiled for the
 * linear-time engine like user patterns are (linear-regexp.ts). That engine's work per character grows with
 * the states a pattern has alive, so shapes start at their keyword rather than at the start of the name or
 * word that holds it (the rest is kept context anyway), keyword lists are factored by common prefixes, and a
 * shape runs only when its gate's keywords are in the command.
 */

export interface SecretShape {
  name: string;
  /**
   * Lower-case strings of which every match contains at least one from each list (compared with the
   * command in lower case): a shape whose gate is not met is not run, which keeps commands without
   * anything secret-looking cheap. Tests hold every shape's examples to its gate.
   */
  gate: string[][];
  /** Context kept before the secret. */
  before?: string;
  /** What is replaced. */
  secret: string;
  /** Context kept after the secret. */
  after?: string;
}

/** `word`, ASCII case-insensitive, as regexp source. */
export function anyCase(word: string): string {
  let out = '';
  for (const c of word) {
    const lower = c.toLowerCase();
    const upper = c.toUpperCase();
    if (/[a-z]/.test(lower) && lower !== upper) out += `[${upper}${lower}]`;
    else out += c.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
  }
  return out;
}

/**
 * Lower-case `words`, ASCII case-insensitive, as one alternation factored by common prefixes
 * (`pass(?:w(?:ord|d)|phrase)`): the linear engine's work per character grows with the states a pattern
 * has alive, and a shared prefix is one state rather than one per word.
 */
export function oneOf(words: readonly string[]): string {
  const byFirst = new Map<string, string[]>();
  let ends = false;
  for (const word of words) {
    if (word === '') ends = true;
    else byFirst.set(word[0]!, [...(byFirst.get(word[0]!) ?? []), word.slice(1)]);
  }
  const branches = [...byFirst].map(([first, rests]) => anyCase(first) + oneOf(rests));
  if (branches.length === 0) return '';
  if (ends) return `(?:${branches.join('|')})?`;
  return branches.length === 1 ? branches[0]! : `(?:${branches.join('|')})`;
}

/** `cls` exactly `count` times. */
const times = (cls: string, count: number): string => `${cls}{${count}}`;

/** `cls` at least `min` times. */
const atLeast = (cls: string, min: number): string => `${times(cls, min)}${cls}*`;

/**
 * What JavaScript's `\s` matches, as the inside of a class: the shapes were written for it, and RE2's `\s` is
 * ASCII (`[\t\n\f\r ]`). Written out, they find what they found before: a no-break space, say, still ends a
 * value and separates an option from its argument.
 */
const WS =
  '\\t\\n\\v\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}';

// A value: one quoted string (single quotes, or double quotes with backslash escapes), or an unquoted run
// of escaped characters, $(command)s and plain characters.
const SQ = "'[^']*'?";
const DQ = '"(?:[^"\\\\]|\\\\[\\s\\S])*"?';
const ESC = '\\\\[\\s\\S]';
const SUBST = '\\$\\([^()]*\\)?';
const PLAIN = `[^${WS}'"\\\\;&|<>()\`]`;
const PLAIN_NO_DASH = `[^${WS}'"\\\\;&|<>()\`-]`;
const UNQUOTED = `(?:${ESC}|${SUBST}|${PLAIN})`;
/** A value. */
const VALUE = `(?:${SQ}|${DQ}|${UNQUOTED}+)`;
/** A value that does not start with `-` (so it is not the next option). */
const ARGUMENT = `(?:${SQ}|${DQ}|(?:${ESC}|${SUBST}|${PLAIN_NO_DASH})${UNQUOTED}*)`;

const SPACE = '[ \\t]';
/** A blank, or a space escaped with a backslash (`Authorization:\\ Bearer\\ x` is one word). */
const BLANK = '(?:[ \\t]|\\\\ )';

// --password, --db-password, --client-secret: any prefix but `no-`.
const OPTION_WORDS = [
  'password',
  'passwd',
  'passphrase',
  'pass',
  'token',
  'secret',
  'api-key',
  'apikey',
  'api_key',
];
const NOT_NO = '(?:[A-Za-z0-9]{3,}|[A-Za-z0-9]|[A-MO-Za-mo-z0-9][A-Za-z0-9]|[Nn][A-NP-Za-np-z0-9])';
const OPTION = `--(?:${NOT_NO}-(?:[A-Za-z0-9]+-)*)?${oneOf([...OPTION_WORDS, 'secret-access-key'])}`;
// `pass` covers password, passwd and passphrase in lower case.
const OPTION_GATE = [['--'], ['pass', 'token', 'secret', 'api-key', 'apikey', 'api_key']];

// Names of variables and parameters (NAME=...) and of keys (name: ...) that hold secrets.
const NAME_WORDS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'api_key',
  'apikey',
  'access_key',
  'private_key',
  'credential',
  '_pwd',
];
const KEY_WORDS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'api-key',
  'api_key',
  'apikey',
  'access-key',
  'access_key',
  'private-key',
  'private_key',
];
const KEY_NAME = `[A-Za-z0-9_-]*${oneOf(KEY_WORDS)}[A-Za-z0-9_-]*`;

/** An SQL string or an unquoted word (Oracle's IDENTIFIED BY x). */
const SQL_STRING = `'[^']*'?|"[^"]*"?|[^${WS};'"]+`;

/** Lower-case prefixes of the service tokens in the shape of that name. */
const SERVICE_PREFIXES = [
  'hvs.',
  'hvb.',
  'hvr.',
  'dckr_pat_',
  'glsa_',
  'glc_',
  'shpat_',
  'shpca_',
  'shppa_',
  'shpss_',
  'dapi',
  'pmak-',
  '.atlasv1.',
  'age-secret-key-1',
  'lin_api_',
  'sntrys_',
  'sntryu_',
  'atatt3',
  'nrak-',
  'key-',
  'sq0atp-',
  'sq0csp-',
];

const TOKEN_CHARS = '[A-Za-z0-9._~+/-]';
const IN_COMMAND = `(?:[^|;&\\n]*?${SPACE})?`;

export const BUILTIN_SHAPES: readonly SecretShape[] = [
  { name: 'password-option', gate: OPTION_GATE, before: `${OPTION}=`, secret: VALUE },
  { name: 'password-option', gate: OPTION_GATE, before: `${OPTION}[${WS}]+`, secret: ARGUMENT },
  {
    name: 'mysql-password',
    gate: [['mysql', 'mariadb'], ['-p']],
    before: `\\b${oneOf(['mysql', 'mariadb'])}[A-Za-z_-]*${SPACE}${IN_COMMAND}-p`,
    secret: VALUE,
  },
  {
    name: 'registry-login',
    gate: [['login'], ['-p']],
    before: `\\b(?:docker|podman|nerdctl|buildah|skopeo)${SPACE}+login${SPACE}${IN_COMMAND}-p${SPACE}*`,
    secret: VALUE,
  },
  {
    name: 'sshpass-password',
    gate: [['sshpass']],
    before: `\\b${anyCase('sshpass')}${SPACE}+-p${SPACE}*`,
    secret: VALUE,
  },
  ...[
    { user: "'[^':]*:", secret: "[^']+" },
    { user: '"[^":]*:', secret: '(?:[^"\\\\]|\\\\[\\s\\S])+' },
    { user: `[^${WS}'":]+:`, secret: VALUE },
  ].map(({ user, secret }) => ({
    name: 'curl-user',
    gate: [['curl'], ['-u']],
    before: `\\b${anyCase('curl')}${SPACE}${IN_COMMAND}(?:-[uU]${SPACE}*|--(?:proxy-)?user(?:=|${SPACE}+))${user}`,
    secret,
  })),
  {
    name: 'url-userinfo',
    gate: [['://'], ['@']],
    // From `://` on (the scheme is kept anyway), so that not every word of a command starts an attempt.
    before: `://[^${WS}/?#@:'"]*:`,
    secret: `[^${WS}/?#]+`,
    after: '@',
  },
  {
    name: 'env-assignment',
    gate: [NAME_WORDS, ['=']],
    // From the word on: what precedes it in the name is kept anyway, and a leading [A-Za-z0-9_]* would be
    // alive on every letter of every command.
    before: `${oneOf(NAME_WORDS)}[A-Za-z0-9_]*=`,
    secret: VALUE,
  },
  // Inside a quoted header (-H "X-Auth-Token: a b") the value runs to the closing quote.
  { name: 'key-value', gate: [KEY_WORDS, [':']], before: `"${KEY_NAME}:${SPACE}*`, secret: `[^"${WS}][^"]*` },
  { name: 'key-value', gate: [KEY_WORDS, [':']], before: `'${KEY_NAME}:${SPACE}*`, secret: `[^'${WS}][^']*` },
  // Quoted keys, as in JSON: "password": "x".
  {
    name: 'key-value',
    gate: [KEY_WORDS, [':']],
    before: `["']${KEY_NAME}["']${SPACE}*:${SPACE}*`,
    secret: `${DQ}|${SQ}|[^${WS},}\\]'"]+`,
  },
  // Bare keys need a space after the colon, so that `secret:latest` (an image) is left alone; a quote right
  // after that space must be followed by the value (in `read -p "Password: " pw` it closes the prompt).
  {
    name: 'key-value',
    gate: [KEY_WORDS, [':']],
    before: `${oneOf(KEY_WORDS)}[A-Za-z0-9_-]*:${SPACE}+`,
    secret: `'[^'${WS}][^']*'?|"[^"${WS}](?:[^"\\\\]|\\\\[\\s\\S])*"?|${UNQUOTED}+`,
  },
  {
    name: 'authorization',
    gate: [['authorization']],
    before: `\\b${anyCase('authorization')}["']?${BLANK}*:${BLANK}*["']?(?:[A-Za-z][A-Za-z0-9_-]*${BLANK}+)?`,
    secret: `[^${WS}'"]+`,
  },
  {
    name: 'bearer',
    gate: [['bearer']],
    before: `\\b${anyCase('bearer')}${BLANK}+`,
    secret: `${atLeast(TOKEN_CHARS, 8)}=*`,
  },
  {
    name: 'aws-secret-key',
    gate: [['aws_secret_access_key']],
    before: `\\b${anyCase('aws_secret_access_key')}["']?(?:${SPACE}*[=:]${SPACE}*|${SPACE}+)`,
    secret: VALUE,
  },
  {
    name: 'short-name-assignment',
    gate: [['pass', 'pw', '_key', '_auth'], ['=']],
    before: `(?:(?:\\b|_)${oneOf(['pass', 'pw'])}|_${oneOf(['key', 'auth'])})=`,
    secret: VALUE,
  },
  {
    name: 'sql-password',
    gate: [['identified'], ['by']],
    before: `\\b${anyCase('identified')}${SPACE}+(?:${anyCase('with')}${SPACE}+[A-Za-z0-9_'"]+${SPACE}+)?${anyCase('by')}${SPACE}+`,
    secret: SQL_STRING,
  },
  {
    name: 'sql-password',
    gate: [['password'], ["'", '"']],
    before: `\\b${anyCase('password')}(?:${SPACE}+${anyCase('for')}${SPACE}+[^=;]*)?(?:${SPACE}+|${SPACE}*[=(]${SPACE}*|${SPACE}*=${SPACE}*${anyCase('password')}${SPACE}*\\(${SPACE}*)`,
    secret: `'[^']*'?|"[^"]*"?`,
  },
  {
    name: 'azure-storage-key',
    gate: [['accountkey=', 'sharedaccesskey=', 'sharedaccesssignature=']],
    before: oneOf(['accountkey=', 'sharedaccesskey=', 'sharedaccesssignature=']),
    secret: `[^;${WS}'"]+`,
  },
  { name: 'azure-storage-key', gate: [['sig=']], before: '[?&]sig=', secret: '[A-Za-z0-9%+/=_-]+' },
  {
    name: 'aws-access-key-id',
    gate: [['akia', 'asia', 'abia', 'acca']],
    secret: '\\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\\b',
  },
  { name: 'google-api-key', gate: [['aiza']], secret: `\\bAIza${times('[0-9A-Za-z_-]', 35)}` },
  {
    name: 'github-token',
    gate: [['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_']],
    secret: `\\b(?:gh[pousr]_${atLeast('[A-Za-z0-9]', 20)}|github_pat_${atLeast('[A-Za-z0-9_]', 20)})`,
  },
  { name: 'slack-token', gate: [['xox']], secret: '\\bxox[abeoprs]-[A-Za-z0-9-]{10}[A-Za-z0-9-]*' },
  { name: 'slack-token', gate: [['xapp-']], secret: '\\bxapp-[0-9]+-[A-Za-z0-9-]{10}[A-Za-z0-9-]*' },
  {
    name: 'slack-webhook',
    gate: [['hooks.slack.com/']],
    before: 'hooks\\.slack\\.com/(?:services|workflows|triggers)/',
    secret: '[A-Za-z0-9/_-]+',
  },
  {
    name: 'gitlab-token',
    gate: [
      ['glpat-', 'gldt-', 'glrt-', 'glptt-', 'glft-', 'glimt-', 'gloas-', 'glcbt-', 'glsoat-', 'glagent-'],
    ],
    secret: `\\bgl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|agent)-${atLeast('[A-Za-z0-9_-]', 20)}`,
  },
  {
    name: 'stripe-key',
    gate: [['sk_live_', 'rk_live_', 'sk_test_', 'rk_test_', 'whsec_']],
    secret: `\\b(?:[sr]k_(?:live|test)_${atLeast('[A-Za-z0-9]', 10)}|whsec_${atLeast('[A-Za-z0-9]', 20)})`,
  },
  {
    name: 'google-oauth',
    gate: [['gocspx-', 'ya29.']],
    secret: `\\b(?:GOCSPX-|ya29\\.)${atLeast('[A-Za-z0-9_-]', 20)}`,
  },
  {
    name: 'openai-key',
    gate: [['sk-']],
    secret: `\\bsk-(?:${atLeast('[A-Za-z0-9]', 32)}|(?:proj|svcacct|admin|None)-${atLeast('[A-Za-z0-9_-]', 20)})`,
  },
  { name: 'anthropic-key', gate: [['sk-ant-']], secret: `\\bsk-ant-${atLeast('[A-Za-z0-9_-]', 20)}` },
  { name: 'npm-token', gate: [['npm_']], secret: `\\bnpm_${atLeast('[A-Za-z0-9]', 30)}` },
  { name: 'pypi-token', gate: [['pypi-ag']], secret: `\\bpypi-Ag${atLeast('[A-Za-z0-9_-]', 40)}` },
  {
    name: 'sendgrid-key',
    gate: [['sg.']],
    secret: `\\bSG\\.${atLeast('[A-Za-z0-9_-]', 16)}\\.${atLeast('[A-Za-z0-9_-]', 16)}`,
  },
  { name: 'twilio-key', gate: [['sk']], secret: `\\bSK${times('[0-9a-fA-F]', 32)}\\b` },
  { name: 'huggingface-token', gate: [['hf_']], secret: `\\bhf_${atLeast('[A-Za-z0-9]', 30)}` },
  { name: 'digitalocean-token', gate: [['_v1_']], secret: `\\bdo[opr]_v1_${times('[a-f0-9]', 64)}` },
  {
    name: 'service-token',
    gate: [SERVICE_PREFIXES],
    secret: `\\b(?:${[
      `hv[sbr]\\.${atLeast('[A-Za-z0-9_-]', 20)}`,
      `dckr_pat_${atLeast('[A-Za-z0-9_-]', 20)}`,
      `gl(?:sa|c)_${atLeast('[A-Za-z0-9_=+/-]', 20)}`,
      `shp(?:at|ca|pa|ss)_${times('[a-fA-F0-9]', 32)}`,
      `dapi${times('[a-f0-9]', 32)}`,
      `PMAK-${times('[A-Za-z0-9]', 16)}[A-Za-z0-9-]*`,
      `[A-Za-z0-9]{14}\\.atlasv1\\.${atLeast('[A-Za-z0-9_-]', 32)}`,
      `AGE-SECRET-KEY-1${atLeast('[0-9A-Z]', 32)}`,
      `lin_api_${atLeast('[A-Za-z0-9]', 32)}`,
      `sntry[su]_${atLeast('[A-Za-z0-9+/=_-]', 20)}`,
      `ATATT3${atLeast('[A-Za-z0-9_=-]', 20)}`,
      `NRAK-${atLeast('[A-Z0-9]', 16)}`,
      `key-${times('[0-9a-f]', 32)}`,
      `sq0(?:atp|csp)-${atLeast('[A-Za-z0-9_-]', 16)}`,
    ].join('|')})`,
  },
  { name: 'jwt', gate: [['eyj']], secret: '\\beyJ[A-Za-z0-9_-]+\\.eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*' },
  {
    name: 'private-key',
    gate: [['---- begin', '-----begin'], ['private key']],
    before: '-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|---- BEGIN[A-Z0-9 ]*PRIVATE KEY ----',
    secret: '[\\s\\S]*?',
    after: '-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|---- END[A-Z0-9 ]*PRIVATE KEY ----|$',
  },
];
