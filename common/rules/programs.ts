/**
 * Programs that take a password, key or token on their command line, and how: which option or which
 * positional argument holds it, and which part of that value is secret. word-secrets.ts reads the words of
 * each command with this table; agent/README.md lists it for people.
 *
 * Options are spelled as typed (`-p`, `--user`, `-storepass`, `/p:`). A `getopt` program's short options
 * cluster (`curl -sSfu user:pw`) and take their value attached (`-ppw`) or as the next word, so every short
 * option that takes a value is listed in `valued`, or a cluster would be misread; letters not listed are
 * taken for flags, which errs towards redacting. A `single` program's options are words of their own
 * (`openssl`, `keytool`, Go's flag package): `-name value` or `-name=value`.
 */

/** Which part of a value is secret. */
export type Part =
  /** All of it. */
  | 'all'
  /** After the first `:` (`user:password`); nothing when there is none (curl then prompts). */
  | 'after-colon'
  /** After the first `%` (Samba's `user%password`). */
  | 'after-percent'
  /** After the first `,` (lftp's `user,password`). */
  | 'after-comma'
  /** Between the first `/` and the next `@` (Oracle's `user/password@db`). */
  | 'after-slash'
  /** After the first `=` (`--from-literal=key=value`). */
  | 'after-equals';

export interface SecretOption {
  part?: Part;
  /** The value must be attached (`mysql -pSECRET`): alone, the option prompts. */
  attached?: boolean;
  /** Alone, the option takes the next word only when it does not start with `-` (it prompts otherwise). */
  optional?: boolean;
}

export interface ProgramRule {
  /** Program names (the last part of the command word's path). */
  names: readonly string[];
  style: 'getopt' | 'single';
  /** getopt: every short option letter that takes a value. */
  valued?: string;
  /** Options, long or single, that take the next word as their value (to find positional arguments). */
  valuedWords?: readonly string[];
  /** Options whose value is secret. */
  options?: Readonly<Record<string, SecretOption>>;
  /** The rule holds only once this word has been seen among the positional arguments (`docker login`). */
  after?: string;
  /**
   * Positional arguments that are secret, given the positional arguments after the program (lower case)
   * and the short option letters seen: indices into that list.
   */
  positional?: (args: readonly string[], flags: ReadonlySet<string>) => { index: number; part?: Part }[];
  /** The program reads a secret from its standard input with these arguments, as typed (`echo pw | chpasswd`). */
  stdin?: (args: readonly string[]) => boolean;
}

const MYSQL = [
  'mysql',
  'mysqldump',
  'mysqladmin',
  'mysqlimport',
  'mysqlcheck',
  'mysqlshow',
  'mysqlslap',
  'mysqlpump',
  'mysqlbinlog',
  'mysql_upgrade',
  'mysqlsh',
  'mariadb',
  'mariadb-dump',
  'mariadb-admin',
  'mariadb-import',
  'mariadb-check',
  'mariadb-show',
  'mariadb-slap',
  'mariadb-binlog',
  'mariadb-upgrade',
];

const MONGO = [
  'mongo',
  'mongosh',
  'mongodump',
  'mongorestore',
  'mongoexport',
  'mongoimport',
  'mongostat',
  'mongotop',
  'mongofiles',
];

const LDAP = [
  'ldapsearch',
  'ldapmodify',
  'ldapadd',
  'ldapdelete',
  'ldapwhoami',
  'ldapcompare',
  'ldapmodrdn',
  'ldapexop',
  'ldapvc',
];

const SAMBA = ['smbclient', 'rpcclient', 'smbcacls', 'smbcquotas', 'smbget', 'smbtree', 'net', 'samba-tool'];

const SNMP = [
  'snmpwalk',
  'snmpbulkwalk',
  'snmpget',
  'snmpbulkget',
  'snmpgetnext',
  'snmpset',
  'snmptable',
  'snmptrap',
  'snmpinform',
  'snmpdelta',
  'snmpdf',
  'snmpstatus',
  'snmpnetstat',
  'snmpusm',
  'snmpvacm',
];

const REGISTRY_LOGIN = [
  'docker',
  'podman',
  'nerdctl',
  'buildah',
  'skopeo',
  'finch',
  'helm',
  'oras',
  'crane',
  'regctl',
  'notation',
  'cosign',
  'oc',
  'cf',
  'az',
  'glab',
  'argocd',
  'flux',
];

const ORACLE = ['sqlplus', 'sql', 'rman', 'expdp', 'impdp', 'exp', 'imp', 'sqlldr', 'dgmgrl'];

export const PROGRAMS: readonly ProgramRule[] = [
  {
    names: ['curl'],
    style: 'getopt',
    valued: 'AcCdDeFHKmoPQrtTwxXYyz',
    options: {
      '-u': { part: 'after-colon' },
      '--user': { part: 'after-colon' },
      '-U': { part: 'after-colon' },
      '--proxy-user': { part: 'after-colon' },
      '-E': { part: 'after-colon' },
      '--cert': { part: 'after-colon' },
      '--proxy-cert': { part: 'after-colon' },
      '--oauth2-bearer': {},
      '-b': { part: 'after-equals' },
      '--cookie': { part: 'after-equals' },
    },
  },
  {
    names: ['http', 'https', 'xh', 'xhs'],
    style: 'getopt',
    valued: 'Aovpb',
    options: { '-a': { part: 'after-colon' }, '--auth': { part: 'after-colon' } },
  },
  { names: MYSQL, style: 'getopt', valued: 'DehPSurwTciO', options: { '-p': { attached: true } } },
  { names: ['mycli'], style: 'getopt', valued: 'hPuSDRl', options: { '-p': {} } },
  { names: MONGO, style: 'getopt', valued: 'uhdcoqf', options: { '-p': { optional: true } } },
  {
    names: ['redis-cli', 'valkey-cli', 'keydb-cli'],
    style: 'getopt',
    valued: 'hpsurindDt',
    options: { '-a': {} },
    // AUTH [user] password, as a command given to redis-cli.
    positional: (args) => {
      const at = args.indexOf('auth');
      return at >= 0 && at + 1 < args.length ? [{ index: args.length - 1 }] : [];
    },
  },
  {
    names: ['sqlcmd', 'bcp', 'osql', 'mssql-cli', 'tsql'],
    style: 'getopt',
    valued: 'SUdQqiotlhswaHcvyYkrDIp',
    options: { '-P': {} },
  },
  // unixODBC: isql DSN USER PASSWORD.
  { names: ['isql', 'iusql'], style: 'getopt', valued: 'dwmnsk', positional: () => [{ index: 2 }] },
  { names: LDAP, style: 'getopt', valued: 'abDdeEfhHlopPRsSTUXyYz', options: { '-w': {} } },
  {
    names: ['ldappasswd'],
    style: 'getopt',
    valued: 'DdeEhHoOpRTtUXyYz',
    options: { '-w': {}, '-a': {}, '-s': {} },
  },
  {
    names: SAMBA,
    style: 'getopt',
    valued: 'WIpmnslidOTDcbARML',
    options: { '-U': { part: 'after-percent' }, '--user': { part: 'after-percent' } },
    // smbclient //server/share PASSWORD.
    positional: (args) => (args[0]?.startsWith('//') ? [{ index: 1 }] : []),
  },
  {
    names: ['wbinfo'],
    style: 'getopt',
    valued: 'UusngSDmNtK',
    options: { '-a': { part: 'after-percent' }, '--authenticate': { part: 'after-percent' } },
  },
  {
    names: ['smbmap', 'crackmapexec', 'netexec', 'nxc', 'cme', 'enum4linux', 'enum4linux-ng', 'evil-winrm'],
    style: 'getopt',
    valued: 'udiPsrxLUo',
    options: { '-p': {}, '-H': {} },
  },
  { names: ['sshpass'], style: 'getopt', valued: 'fdP', options: { '-p': {} } },
  {
    names: REGISTRY_LOGIN,
    style: 'getopt',
    valued: 'cHlus',
    after: 'login',
    options: { '-p': {} },
  },
  {
    names: ['kubectl', 'oc'],
    style: 'getopt',
    valued: 'nclos',
    after: 'secret',
    options: { '--from-literal': { part: 'after-equals' } },
  },
  // gh secret set NAME --body VALUE; az keyvault secret set --value VALUE.
  {
    names: ['gh', 'az'],
    style: 'getopt',
    valued: 'reRaon',
    after: 'secret',
    options: { '-b': {}, '--body': {}, '--value': {} },
  },
  // fly secrets set KEY=VALUE, doppler secrets set KEY=VALUE, heroku config:set KEY=VALUE.
  ...[
    { names: ['fly', 'flyctl', 'doppler'], after: 'secrets' },
    { names: ['heroku'], after: 'config:set' },
    { names: ['vault'], after: 'put' },
    { names: ['vault'], after: 'write' },
  ].map(({ names, after }): ProgramRule => ({
    names,
    style: 'getopt',
    after,
    positional: (args) =>
      args.flatMap((arg, index) =>
        index > args.indexOf(after) && arg.includes('=') ? [{ index, part: 'after-equals' as const }] : [],
      ),
  })),
  // vault login TOKEN (vault login -method=userpass username=x password=y is left to the assignments).
  {
    names: ['vault'],
    style: 'single',
    positional: (args) =>
      args[0] === 'login' && args.length > 1 && !args[1]!.includes('=') && args[1] !== '-'
        ? [{ index: 1 }]
        : [],
    stdin: (args) => args[0]?.toLowerCase() === 'login' && args.includes('-'),
  },
  { names: ['doctl'], style: 'getopt', valued: 'couv', options: { '-t': {} } },
  { names: ['twine'], style: 'getopt', valued: 'rucis', options: { '-p': {} } },
  { names: ['poetry'], style: 'getopt', valued: 'ruC', after: 'publish', options: { '-p': {} } },
  { names: ['rabbitmqadmin'], style: 'getopt', valued: 'cNHPVuUqf', options: { '-p': {} } },
  {
    names: ['rabbitmqctl'],
    style: 'getopt',
    valued: 'nlqt',
    positional: (args) =>
      ['add_user', 'change_password', 'authenticate_user'].includes(args[0] ?? '') ? [{ index: 2 }] : [],
  },
  { names: ['cqlsh'], style: 'getopt', valued: 'ukfe', options: { '-p': {} } },
  {
    names: ['mosquitto_pub', 'mosquitto_sub', 'mosquitto_rr'],
    style: 'getopt',
    valued: 'hpuitmfqAkLMTWCIeE',
    options: { '-P': {} },
  },
  {
    names: ['ipmitool'],
    style: 'getopt',
    valued: 'IHUpLtbBTmfoOCRNezSY',
    options: { '-P': {}, '-k': {}, '-y': {} },
  },
  {
    names: SNMP,
    style: 'getopt',
    valued: 'aDeEIlLmMnOrtuvxYZTP',
    options: { '-c': {}, '-A': {}, '-X': {} },
  },
  {
    names: ['zip', 'unzip', 'zipcloak', 'funzip'],
    style: 'getopt',
    valued: 'bdnOstZx',
    options: { '-P': {} },
  },
  { names: ['7z', '7za', '7zr', '7zz'], style: 'single', options: { '-p': { attached: true } } },
  {
    names: ['rar', 'unrar'],
    style: 'single',
    options: { '-p': { attached: true }, '-hp': { attached: true } },
  },
  {
    names: ['ssh-keygen'],
    style: 'getopt',
    valued: 'abCDEfFIJjKmMnOrsStTVwYzZ',
    options: { '-N': {}, '-P': {} },
  },
  {
    names: ['useradd', 'usermod', 'adduser'],
    style: 'getopt',
    valued: 'bcdefgGkKsuUZ',
    options: { '-p': {} },
  },
  // htpasswd -b FILE USER PASSWORD, htpasswd -nb USER PASSWORD.
  {
    names: ['htpasswd'],
    style: 'getopt',
    valued: 'Cr',
    positional: (_args, flags) => (flags.has('b') ? [{ index: flags.has('n') ? 1 : 2 }] : []),
    stdin: (args) => args.some((a) => /^-[a-z]*i/i.test(a)),
  },
  {
    names: ['openssl'],
    style: 'single',
    valuedWords: ['-salt', '-in', '-out', '-passin', '-passout', '-pass', '-key', '-k', '-K', '-iv', '-md'],
    options: { '-k': {}, '-K': {} },
    // openssl passwd [options] PASSWORD...
    positional: (args) => (args[0] === 'passwd' ? args.slice(1).map((_, i) => ({ index: i + 1 })) : []),
    stdin: (args) => args.includes('stdin'),
  },
  { names: ['mkpasswd'], style: 'getopt', valued: 'mSRP', positional: () => [{ index: 0 }] },
  // wpa_passphrase SSID PASSPHRASE.
  { names: ['wpa_passphrase'], style: 'getopt', positional: () => [{ index: 1 }] },
  // nmcli device wifi connect SSID password PW; nmcli connection modify x wifi-sec.psk PW.
  {
    names: ['nmcli'],
    style: 'getopt',
    valued: 'fgemw',
    positional: (args) =>
      args.flatMap((arg, i) =>
        i + 1 < args.length && (arg === 'password' || arg.endsWith('psk') || arg.endsWith('.password'))
          ? [{ index: i + 1 }]
          : [],
      ),
  },
  // Oracle: sqlplus USER/PASSWORD@DB.
  {
    names: ORACLE,
    style: 'single',
    positional: (args) =>
      args.flatMap((arg, index) =>
        /^(?:userid=)?[^/@=\s]+\/[^/]/.test(arg) ? [{ index, part: 'after-slash' as const }] : [],
      ),
  },
  // lftp -u USER,PASSWORD.
  {
    names: ['lftp'],
    style: 'getopt',
    valued: 'ecfp',
    options: { '-u': { part: 'after-comma' }, '--user': { part: 'after-comma' } },
  },
  {
    names: ['ncftp', 'ncftpput', 'ncftpget', 'ncftpls'],
    style: 'getopt',
    valued: 'uPjmtrW',
    options: { '-p': {} },
  },
  { names: ['rdesktop'], style: 'getopt', valued: 'udsckgaxrTnNPBD', options: { '-p': {} } },
  {
    names: ['xfreerdp', 'xfreerdp3', 'wlfreerdp', 'sdl-freerdp', 'sdl-freerdp3'],
    style: 'single',
    options: {
      '/p:': { attached: true },
      '/password:': { attached: true },
      '/pth:': { attached: true },
      '/gp:': { attached: true },
      '/gat:': { attached: true },
    },
  },
  // PuTTY's command-line tools.
  { names: ['plink', 'pscp', 'psftp'], style: 'single', options: { '-pw': {} } },
  {
    names: ['keytool', 'jarsigner'],
    style: 'single',
    options: {
      '-storepass': {},
      '-keypass': {},
      '-srcstorepass': {},
      '-deststorepass': {},
      '-srckeypass': {},
      '-destkeypass': {},
      '-new': {},
    },
  },
  // mc alias set NAME URL ACCESS_KEY SECRET_KEY (MinIO's client).
  {
    names: ['mc', 'mcli'],
    style: 'getopt',
    positional: (args) =>
      args[0] === 'alias' && args[1] === 'set'
        ? [{ index: 5 }]
        : args[0] === 'config' && args[1] === 'host'
          ? [{ index: 6 }]
          : [],
  },
  { names: ['aws'], style: 'getopt', after: 'put-parameter', options: { '--value': {} } },
  // Programs that read a password from their standard input.
  { names: ['chpasswd', 'passwd', 'cryptsetup', 'smbpasswd', 'pdbedit'], style: 'getopt', stdin: () => true },
  {
    names: ['sudo'],
    style: 'getopt',
    valued: 'CghpUurTDRt',
    stdin: (args) => args.some((a) => a === '--stdin' || /^-[A-Za-z]*S/.test(a)),
  },
  {
    names: ['docker', 'podman'],
    style: 'getopt',
    stdin: (args) => args[0]?.toLowerCase() === 'secret' && args.includes('-'),
  },
];

/** The rules for a program, by name; none for most. */
export function programRules(name: string): readonly ProgramRule[] {
  return BY_NAME.get(name) ?? [];
}

const BY_NAME = new Map<string, ProgramRule[]>();
for (const rule of PROGRAMS)
  for (const name of rule.names) BY_NAME.set(name, [...(BY_NAME.get(name) ?? []), rule]);

/** Words that make any program read a secret from its standard input. */
export const STDIN_WORDS: ReadonlySet<string> = new Set([
  '--password-stdin',
  '--pass-stdin',
  '--passwd-on-stdin',
  '--password-from-stdin',
  '--with-token',
  '--passphrase-fd',
]);
