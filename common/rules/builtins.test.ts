import { BUILTIN_SHAPES, anyCase, oneOf } from './builtins.js';
import { builtinShapes, compileCommandRules } from './command-rules.js';
import { LinearRegExp } from './linear-regexp.js';

const compiled = compileCommandRules({ redact: { builtins: true, patterns: [] }, alerts: [] });
if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
const rules = compiled.rules;
const redact = (command: string): string => rules.apply(command).text;

/** [shape, command, what it becomes]. */
const positives: [string, string, string][] = [
  ['password-option', 'mysql --password=hunter2 -u root', 'mysql --password=[REDACTED] -u root'],
  ['password-option', 'mysql --password hunter2 -u root', 'mysql --password [REDACTED] -u root'],
  ['password-option', "mysql --password 'a b c' -u root", 'mysql --password [REDACTED] -u root'],
  ['password-option', 'mysql --password="a \\" b" -u root', 'mysql --password=[REDACTED] -u root'],
  ['password-option', 'mysql --password=-starts-with-dash', 'mysql --password=[REDACTED]'],
  // JavaScript's whitespace, as the shapes were written for, not RE2's ASCII \s.
  ['password-option', 'mysql --password\u00a0hunter2 -u root', 'mysql --password\u00a0[REDACTED] -u root'],
  [
    'password-option',
    'x --passwd p --pass q --passphrase r',
    'x --passwd [REDACTED] --pass [REDACTED] --passphrase [REDACTED]',
  ],
  ['password-option', 'vault login --token=s.abc', 'vault login --token=[REDACTED]'],
  [
    'password-option',
    'x --secret s --api-key k --apikey k --api_key k',
    'x --secret [REDACTED] --api-key [REDACTED] --apikey [REDACTED] --api_key [REDACTED]',
  ],
  ['password-option', 'az login --client-secret abc', 'az login --client-secret [REDACTED]'],
  [
    'password-option',
    'x --db-password p --access-token t',
    'x --db-password [REDACTED] --access-token [REDACTED]',
  ],
  ['password-option', 'x --aws-secret-access-key k', 'x --aws-secret-access-key [REDACTED]'],
  ['password-option', 'x --PASSWORD=p', 'x --PASSWORD=[REDACTED]'],
  ['password-option', 'x --token=$(cat /run/token) y', 'x --token=[REDACTED] y'],
  ['mysql-password', 'mysql -uroot -ps3cret db', 'mysql -uroot -p[REDACTED] db'],
  ['mysql-password', "mysqldump -h db -p'a b' x", 'mysqldump -h db -p[REDACTED] x'],
  ['mysql-password', 'mariadb -psecret', 'mariadb -p[REDACTED]'],
  [
    'registry-login',
    'docker login -u bob -p s3cret registry.io',
    'docker login -u bob -p [REDACTED] registry.io',
  ],
  ['registry-login', "podman login -p's 3' registry.io", 'podman login -p[REDACTED] registry.io'],
  ['sshpass-password', 'sshpass -p s3cret ssh host', 'sshpass -p [REDACTED] ssh host'],
  ['curl-user', 'curl -u bob:pw https://x', 'curl -u bob:[REDACTED] https://x'],
  ['curl-user', 'curl -s --user bob:pw https://x', 'curl -s --user bob:[REDACTED] https://x'],
  ['curl-user', 'curl --user=bob:pw https://x', 'curl --user=bob:[REDACTED] https://x'],
  ['curl-user', "curl -u 'bob:p w' https://x", "curl -u 'bob:[REDACTED]' https://x"],
  ['curl-user', 'curl -u "bob:p w" https://x', 'curl -u "bob:[REDACTED]" https://x'],
  ['curl-user', 'curl -x proxy -U bob:pw https://x', 'curl -x proxy -U bob:[REDACTED] https://x'],
  [
    'url-userinfo',
    'git clone https://bob:tok@github.com/x/y',
    'git clone https://bob:[REDACTED]@github.com/x/y',
  ],
  ['url-userinfo', 'redis-cli -u redis://:pw@host:6379', 'redis-cli -u redis://:[REDACTED]@host:6379'],
  ['url-userinfo', 'psql postgresql://app:p@ss@db/app', 'psql postgresql://app:[REDACTED]@db/app'],
  [
    'url-userinfo',
    'mongosh "mongodb+srv://u:pw@c.example.net/db"',
    'mongosh "mongodb+srv://u:[REDACTED]@c.example.net/db"',
  ],
  ['env-assignment', 'PASSWORD=hunter2 ./run', 'PASSWORD=[REDACTED] ./run'],
  ['env-assignment', 'export DB_PASSWORD="x y" && run', 'export DB_PASSWORD=[REDACTED] && run'],
  [
    'env-assignment',
    "env api_key='a b' GITHUB_TOKEN=t x",
    'env api_key=[REDACTED] GITHUB_TOKEN=[REDACTED] x',
  ],
  [
    'env-assignment',
    'docker run -e MYSQL_ROOT_PASSWORD=x -e AWS_SECRET_ACCESS_KEY=y img',
    'docker run -e MYSQL_ROOT_PASSWORD=[REDACTED] -e AWS_SECRET_ACCESS_KEY=[REDACTED] img',
  ],
  [
    'env-assignment',
    'A_PASSWD=1 B_SECRET=2 C_APIKEY=3 D_ACCESS_KEY=4 E_PRIVATE_KEY=5 F_CREDENTIALS=6',
    'A_PASSWD=[REDACTED] B_SECRET=[REDACTED] C_APIKEY=[REDACTED] D_ACCESS_KEY=[REDACTED] E_PRIVATE_KEY=[REDACTED] F_CREDENTIALS=[REDACTED]',
  ],
  ['env-assignment', 'MYSQL_PWD=abc mysql', 'MYSQL_PWD=[REDACTED] mysql'],
  ['env-assignment', "echo 'API_TOKEN=abc' >> .env", "echo 'API_TOKEN=[REDACTED]' >> .env"],
  [
    'env-assignment',
    'curl "https://x/?access_token=abc&x=1"',
    'curl "https://x/?access_token=[REDACTED]&x=1"',
  ],
  [
    'env-assignment',
    'kubectl create secret generic x --from-literal=password=abc',
    'kubectl create secret generic x --from-literal=password=[REDACTED]',
  ],
  ['key-value', 'curl -H "X-Auth-Token: abc def" https://x', 'curl -H "X-Auth-Token: [REDACTED]" https://x'],
  ['key-value', "curl -H 'X-Api-Key:abc' https://x", "curl -H 'X-Api-Key:[REDACTED]' https://x"],
  [
    'key-value',
    'echo \'{"password": "x y", "user": "u"}\'',
    'echo \'{"password": [REDACTED], "user": "u"}\'',
  ],
  ['key-value', 'echo \'{"client_secret":1234}\'', 'echo \'{"client_secret":[REDACTED]}\''],
  ['key-value', 'echo password: hunter2', 'echo password: [REDACTED]'],
  [
    'authorization',
    'curl -H "Authorization: Basic dXNlcjpwYXNz" x',
    'curl -H "Authorization: Basic [REDACTED]" x',
  ],
  ['authorization', "curl -H 'authorization: token ghx' x", "curl -H 'authorization: token [REDACTED]' x"],
  ['authorization', 'curl -H "Proxy-Authorization: abc" x', 'curl -H "Proxy-Authorization: [REDACTED]" x'],
  [
    'authorization',
    'echo \'{"Authorization": "Bearer abc"}\'',
    'echo \'{"Authorization": "Bearer [REDACTED]"}\'',
  ],
  ['bearer', 'http x "Bearer abcdefgh123"', 'http x "Bearer [REDACTED]"'],
  ['bearer', 'echo bearer abc.def-ghi_jkl==', 'echo bearer [REDACTED]'],
  [
    'aws-secret-key',
    'aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG',
    'aws configure set aws_secret_access_key [REDACTED]',
  ],
  [
    'aws-secret-key',
    "echo 'aws_secret_access_key = wJalr' >> ~/.aws/credentials",
    "echo 'aws_secret_access_key = [REDACTED]' >> ~/.aws/credentials",
  ],
  ['aws-access-key-id', 'echo AKIAIOSFODNN7EXAMPLE', 'echo [REDACTED]'],
  ['aws-access-key-id', 'x=ASIAIOSFODNN7EXAMPLE;', 'x=[REDACTED];'],
  [
    'google-api-key',
    'curl "https://x?key=AIzaSyA1234567890abcdefghijklmnopqrstuv"',
    'curl "https://x?key=[REDACTED]"',
  ],
  ['github-token', 'echo ghp_abcdefghijklmnopqrstuvwxyz0123456789', 'echo [REDACTED]'],
  [
    'github-token',
    'echo gho_abcdefghijklmnopqrstuvwxyz0123456789 ghs_abcdefghijklmnopqrst',
    'echo [REDACTED] [REDACTED]',
  ],
  ['github-token', 'echo github_pat_11ABCDEFG0123456789_abcdefghij', 'echo [REDACTED]'],
  ['slack-token', 'echo xoxb-1234567890-abcdef', 'echo [REDACTED]'],
  ['slack-token', 'echo xoxp-1234567890-ab xoxa-2-abcdefghijk', 'echo [REDACTED] [REDACTED]'],
  ['jwt', 'echo eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abc-1 | jq', 'echo [REDACTED] | jq'],
  ['jwt', 'echo eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.', 'echo [REDACTED]'],
  [
    'private-key',
    'echo "-----BEGIN RSA PRIVATE KEY-----MIIEabc\n+/x=\n-----END RSA PRIVATE KEY-----" > k',
    'echo "-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----" > k',
  ],
  [
    'private-key',
    "echo '-----BEGIN PRIVATE KEY----- MIIEvQIBADANBg",
    "echo '-----BEGIN PRIVATE KEY-----[REDACTED]",
  ],
  [
    'private-key',
    'printf -- "-----BEGIN PGP PRIVATE KEY BLOCK-----xyz-----END PGP PRIVATE KEY BLOCK-----"',
    'printf -- "-----BEGIN PGP PRIVATE KEY BLOCK-----[REDACTED]-----END PGP PRIVATE KEY BLOCK-----"',
  ],
  [
    'private-key',
    'echo "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----AAAA---- END SSH2 ENCRYPTED PRIVATE KEY ----"',
    'echo "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----[REDACTED]---- END SSH2 ENCRYPTED PRIVATE KEY ----"',
  ],
  [
    'authorization',
    'curl -H Authorization:\\ Bearer\\ abc x',
    'curl -H Authorization:\\ Bearer\\ [REDACTED] x',
  ],
  ['bearer', 'echo Bearer\\ abcdefgh123', 'echo Bearer\\ [REDACTED]'],
  ['short-name-assignment', 'export PASS=x DB_PW=y', 'export PASS=[REDACTED] DB_PW=[REDACTED]'],
  [
    'short-name-assignment',
    'STRIPE_KEY=x REDIS_AUTH=y app',
    'STRIPE_KEY=[REDACTED] REDIS_AUTH=[REDACTED] app',
  ],
  [
    'sql-password',
    `mysql -e "CREATE USER 'a'@'%' IDENTIFIED BY 'pw'"`,
    `mysql -e "CREATE USER 'a'@'%' IDENTIFIED BY [REDACTED]"`,
  ],
  ['sql-password', `psql -c "ALTER ROLE a PASSWORD 'pw'"`, `psql -c "ALTER ROLE a PASSWORD [REDACTED]"`],
  ['sql-password', `x "SET PASSWORD = PASSWORD('pw')"`, `x "SET PASSWORD = PASSWORD([REDACTED])"`],
  [
    'azure-storage-key',
    'x "AccountName=a;AccountKey=ab+/c==;E=x"',
    'x "AccountName=a;AccountKey=[REDACTED];E=x"',
  ],
  [
    'azure-storage-key',
    'curl "https://a/b?sv=1&sig=ab%2Bc&se=2"',
    'curl "https://a/b?sv=1&sig=[REDACTED]&se=2"',
  ],
  ['slack-token', 'echo xapp-1-A0123456789-abcdef0123', 'echo [REDACTED]'],
  [
    'slack-webhook',
    'curl https://hooks.slack.com/services/T0/B0/XXXX',
    'curl https://hooks.slack.com/services/[REDACTED]',
  ],
  ['gitlab-token', 'echo glpat-abcdefghij0123456789', 'echo [REDACTED]'],
  ['stripe-key', 'echo sk_live_4eC39HqLyjWDarjtT1zdp7dc rk_test_4eC39HqLyj', 'echo [REDACTED] [REDACTED]'],
  ['google-oauth', 'echo GOCSPX-abcdefghijklmnopqrstuvwxyz12', 'echo [REDACTED]'],
  ['openai-key', 'echo sk-proj-abcdefghijklmnopqrstuvwxyz', 'echo [REDACTED]'],
  ['openai-key', 'echo sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD', 'echo [REDACTED]'],
  ['anthropic-key', 'echo sk-ant-api03-abcdefghijklmnopqrstuvwxyz', 'echo [REDACTED]'],
  ['npm-token', 'echo npm_abcdefghijklmnopqrstuvwxyz0123456789', 'echo [REDACTED]'],
  ['pypi-token', `echo pypi-AgEIcHlwaS5vcmc${'a'.repeat(40)}`, 'echo [REDACTED]'],
  ['sendgrid-key', 'echo SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuv', 'echo [REDACTED]'],
  ['twilio-key', 'echo SK0123456789abcdef0123456789abcdef', 'echo [REDACTED]'],
  ['huggingface-token', 'echo hf_abcdefghijklmnopqrstuvwxyzABCDEFGH', 'echo [REDACTED]'],
  ['digitalocean-token', `echo dop_v1_${'0123456789abcdef'.repeat(4)}`, 'echo [REDACTED]'],
  [
    'service-token',
    'echo hvs.CAESIabcdefghijklmnopqrstuvwxyz dckr_pat_abcdefghijklmnopqrstu',
    'echo [REDACTED] [REDACTED]',
  ],
];

/** Commands the built-ins leave alone. */
const negatives = [
  'echo password',
  'echo my password is long',
  'git clone https://github.com/x/y',
  'git clone git@github.com:x/y.git',
  'curl https://user@example.com/x',
  'curl http://example.com:8080/x',
  'ls --pass-through',
  'docker login --password-stdin -u bob',
  'kubectl create secret generic x --from-file=key=./file',
  'podman login --password-file /run/secret',
  'mysql --password -u root',
  'psql --no-password mydb',
  'mysql -u root -p mydb',
  'ssh -p 2222 host',
  'docker run -p 8080:80 img login',
  'kubeadm token create --print-join-command --ttl 1h',
  'docker run -u 1000:1000 -p 80:80 img',
  'cd $PWD && echo $OLDPWD',
  'PWD=/tmp ls',
  'read -s PASSWORD',
  'echo $DB_PASSWORD',
  'export PASSWORD',
  'export PASSWORD= x',
  'docker run secret:latest',
  'echo Bearer of bad news',
  'echo AKIA-not-a-key AKIAIOSFODNN7EXAMPL',
  'echo ghp_short',
  'echo eyJhbGciOiJIUzI1NiJ9',
  'cat <<EOF\n-----BEGIN OPENSSH PRIVATE KEY-----',
  'openssl genpkey -algorithm RSA -out key.pem',
  'kubectl get secrets -n prod -o wide',
  'grep -r token src/ | wc -l',
  'read -rsp "Password: " PASSWORD',
  "git commit -m 'fix password'",
  'kubectl logs sk-worker-7d9f8b6c5d-abcde',
  'echo BYPASS=1 COMPASS=2',
  'ls sk_live_ npm_ hf_ glpat-',
];

describe('built-in redaction', () => {
  it('compiles every shape for the linear engine', () => {
    const shapes = builtinShapes();
    expect(shapes).toHaveLength(BUILTIN_SHAPES.length);
    for (const { regexp } of shapes) expect(regexp).toBeInstanceOf(LinearRegExp);
  });

  it.each(positives)('%s: %j', (_shape, command, expected) => {
    expect(rules.apply(command)).toEqual({ text: expected, redacted: true, alerts: [] });
  });

  it.each(negatives)('leaves %j alone', (command) => {
    expect(rules.apply(command)).toEqual({ text: command, redacted: false, alerts: [] });
  });

  it("holds every example to its shape's gate, and the shape alone finds it", () => {
    const shapes = builtinShapes();
    for (const [name, command] of positives) {
      const own = shapes.filter((s) => s.shape.name === name);
      expect(own.length).toBeGreaterThan(0);
      const found = own.filter(({ shape, regexp }) => {
        return (
          regexp.test(command) &&
          shape.gate.every((any) => any.some((w) => command.toLowerCase().includes(w)))
        );
      });
      expect({ name, command, found: found.length > 0 }).toEqual({ name, command, found: true });
    }
  });

  it('replaces several secrets in one command, each keeping its context', () => {
    expect(
      redact(
        'PGPASSWORD=pw psql postgres://app:pw2@db/app -c "select 1" && curl -H "Authorization: Bearer eyJa.eyJb.c" --token t https://x',
      ),
    ).toBe(
      'PGPASSWORD=[REDACTED] psql postgres://app:[REDACTED]@db/app -c "select 1" && curl -H "Authorization: Bearer [REDACTED]" --token [REDACTED] https://x',
    );
  });

  it('merges overlapping shapes into one replacement', () => {
    // password-option and env-assignment both see `password=x`; bearer and jwt both see the token.
    expect(redact('x --db-password=x')).toBe('x --db-password=[REDACTED]');
    expect(redact('Authorization: Bearer eyJhbGci.eyJzdWIi.sig')).toBe('Authorization: Bearer [REDACTED]');
  });

  it('is not fooled by letter case in names, and keeps case-sensitive key shapes exact', () => {
    expect(redact('Password=x PaSsWoRd=y')).toBe('Password=[REDACTED] PaSsWoRd=[REDACTED]');
    expect(redact('echo akiaiosfodnn7example')).toBe('echo akiaiosfodnn7example');
  });

  it('spells names in either case without the i flag', () => {
    expect(anyCase('api-key.x')).toBe('[Aa][Pp][Ii]-[Kk][Ee][Yy]\\.[Xx]');
  });

  it('factors word lists by common prefixes, matching exactly the words in either case', () => {
    const words = ['pass', 'password', 'passwd', 'passphrase', 'token', 'api-key', 'api_key'];
    expect(oneOf(['pass', 'password', 'passwd'])).toBe('[Pp][Aa][Ss][Ss](?:[Ww](?:[Oo][Rr][Dd]|[Dd]))?');
    const exactly = new RegExp(`^${oneOf(words)}$`);
    for (const word of words)
      expect([word, word.toUpperCase()].map((w) => exactly.test(w))).toEqual([true, true]);
    for (const other of ['pas', 'passw', 'passwords', 'tokens', 'api.key', 'apikey', ''])
      expect(exactly.test(other)).toBe(false);
  });

  it('redacts nothing when builtins are off', () => {
    const off = compileCommandRules({ redact: { builtins: false, patterns: [] }, alerts: [] });
    expect(off.ok && off.rules.apply('PASSWORD=x')).toEqual({
      text: 'PASSWORD=x',
      redacted: false,
      alerts: [],
    });
  });
});
