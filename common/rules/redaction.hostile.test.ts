/**
 * Secrets typed in many shapes must not leave the node (issue 12, fault 4). Each table row is a line as typed
 * and the line as recorded; `{S}` rows are run with the secret spelled every way a shell accepts (quoted,
 * half-quoted, ANSI-C escaped, backslashed, next to empty quotes), and each must come out as the row says
 * with `{S}` replaced by [REDACTED]. Lines without a secret must come out byte for byte as typed.
 *
 * Besides the exact text, every redacted line is checked for leftovers: none of its words, as the shell
 * would read them, may hold the secret or any 4 characters of it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileCommandRules } from './command-rules.js';
import { PrivateKeyBlocks } from './key-blocks.js';
import { lexShell } from './shell-words.js';

const compiled = compileCommandRules({ redact: { builtins: true, patterns: [] }, alerts: [] });
if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
const rules = compiled.rules;

const SECRET = 'hunter2';

/** `hunter2` as the shell reads it, written in every way the shell accepts. */
const SPELLINGS = [
  'hunter2',
  "'hunter2'",
  '"hunter2"',
  "hun'ter2'",
  'hun"ter2"',
  '\'hun\'"ter"2',
  "$'hunter2'",
  "$'\\x68unter2'",
  "$'\\150\\165nter2'",
  "$'\\u0068unter2'",
  "$'hun\\x74er\\x32'",
  '$"hunter2"',
  'h\\unter2',
  'hunte\\r2',
  "''hunter2",
  'hunter2""',
  "''h''u''n''t''e''r''2''",
];

/** Every 4 characters of the secret: none may be left in any word of what is recorded. */
const FRAGMENTS = Array.from({ length: SECRET.length - 3 }, (_, i) => SECRET.slice(i, i + 4));

function words(line: string): string[] {
  const out: string[] = [];
  const walk = (script: ReturnType<typeof lexShell>): void => {
    for (const c of script.commands)
      out.push(...c.words.map((w) => w.text), ...c.redirections.map((r) => r.target?.text ?? ''));
    script.subs.forEach(walk);
  };
  walk(lexShell(line));
  return out;
}

function expectNoLeftover(recorded: string): void {
  for (const text of [recorded, ...words(recorded)])
    for (const fragment of FRAGMENTS)
      expect({ recorded, fragment, found: text.includes(fragment) }).toEqual({
        recorded,
        fragment,
        found: false,
      });
}

/** [class, typed, recorded]: `{S}` is the secret in every spelling; in `recorded`, [REDACTED]. */
const TEMPLATES: [string, string, string][] = [
  // The shapes of the issue.
  ['quoting: NAME=value', 'PASSWORD={S} ./run', 'PASSWORD=[REDACTED] ./run'],
  ['quoting: --option=value', 'mysql --password={S} -h db', 'mysql --password=[REDACTED] -h db'],
  ['quoting: --option value', 'mysql --password {S} -h db', 'mysql --password [REDACTED] -h db'],
  ['short names: PASS=', 'export PASS={S}', 'export PASS=[REDACTED]'],
  ['short names: DB_PASS=', 'DB_PASS={S} ./migrate', 'DB_PASS=[REDACTED] ./migrate'],
  [
    'short names: PW=, _KEY=, _AUTH=',
    'env PW={S} STRIPE_KEY={S} REDIS_AUTH={S} app',
    'env PW=[REDACTED] STRIPE_KEY=[REDACTED] REDIS_AUTH=[REDACTED] app',
  ],
  ['combined short flags: curl -sSfu', 'curl -sSfu bob:{S} https://x', 'curl -sSfu bob:[REDACTED] https://x'],
  [
    'combined short flags: curl -sSfubob:',
    'curl -sSfubob:{S} https://x',
    'curl -sSfubob:[REDACTED] https://x',
  ],
  [
    'combined short flags: curl -u after valued -o',
    'curl -o out -su bob:{S} x',
    'curl -o out -su bob:[REDACTED] x',
  ],
  [
    'openssl pass:',
    'openssl pkcs12 -export -in c.pem -passout pass:{S} -out c.p12',
    'openssl pkcs12 -export -in c.pem -passout pass:[REDACTED] -out c.p12',
  ],
  ['openssl -k', 'openssl enc -aes-256-cbc -k {S} -in f', 'openssl enc -aes-256-cbc -k [REDACTED] -in f'],
  ['openssl passwd', 'openssl passwd -6 -salt abc {S}', 'openssl passwd -6 -salt abc [REDACTED]'],
  ['redis-cli -a', 'redis-cli -h cache -a {S} ping', 'redis-cli -h cache -a [REDACTED] ping'],
  ['redis-cli AUTH', 'redis-cli -h cache AUTH default {S}', 'redis-cli -h cache AUTH default [REDACTED]'],
  [
    'redis-cli CONFIG SET',
    'redis-cli CONFIG SET requirepass {S}',
    'redis-cli CONFIG SET requirepass [REDACTED]',
  ],
  ['sqlcmd -P', 'sqlcmd -S db -U sa -P {S} -Q "select 1"', 'sqlcmd -S db -U sa -P [REDACTED] -Q "select 1"'],
  ['sqlcmd -P attached', 'sqlcmd -S db -U sa -P{S}', 'sqlcmd -S db -U sa -P[REDACTED]'],
  [
    'ldapsearch -w',
    'ldapsearch -x -D cn=admin,dc=x -w {S} -b dc=x',
    'ldapsearch -x -D cn=admin,dc=x -w [REDACTED] -b dc=x',
  ],
  ['ldapsearch -xw (cluster)', 'ldapsearch -xw {S} -b dc=x', 'ldapsearch -xw [REDACTED] -b dc=x'],
  [
    'ldappasswd -s',
    'ldappasswd -x -D cn=admin -w {S} -s {S} uid=bob',
    'ldappasswd -x -D cn=admin -w [REDACTED] -s [REDACTED] uid=bob',
  ],
  ['smbclient -U user%pw', 'smbclient //srv/share -U bob%{S}', 'smbclient //srv/share -U bob%[REDACTED]'],
  ['smbclient --user=user%pw', 'smbclient -L srv --user=bob%{S}', 'smbclient -L srv --user=bob%[REDACTED]'],
  [
    'smbclient password argument',
    'smbclient //srv/share {S} -U bob',
    'smbclient //srv/share [REDACTED] -U bob',
  ],
  ['samba net -U', 'net rpc user -S dc -U admin%{S}', 'net rpc user -S dc -U admin%[REDACTED]'],
  // Programs that take a password.
  ['mysql -p', 'mysql -h db -uroot -p{S} shop', 'mysql -h db -uroot -p[REDACTED] shop'],
  ['mysqldump -p', 'mysqldump -p{S} --all-databases', 'mysqldump -p[REDACTED] --all-databases'],
  ['mariadb -p in a cluster', 'mariadb -vp{S}', 'mariadb -vp[REDACTED]'],
  ['mycli -p', 'mycli -u root -p {S} shop', 'mycli -u root -p [REDACTED] shop'],
  ['mongosh -p', 'mongosh -u admin -p {S} --host db', 'mongosh -u admin -p [REDACTED] --host db'],
  [
    'mongodump --password',
    'mongodump --username admin --password {S}',
    'mongodump --username admin --password [REDACTED]',
  ],
  ['psql conninfo', 'psql "host=db user=app password={S}"', 'psql "host=db user=app password=[REDACTED]"'],
  ['curl -u', 'curl -u bob:{S} https://x', 'curl -u bob:[REDACTED] https://x'],
  ['curl --user=', 'curl --user=bob:{S} https://x', 'curl --user=bob:[REDACTED] https://x'],
  [
    'curl -U (proxy)',
    'curl -x proxy:3128 -U bob:{S} https://x',
    'curl -x proxy:3128 -U bob:[REDACTED] https://x',
  ],
  [
    'curl --cert file:password',
    'curl --cert client.pem:{S} https://x',
    'curl --cert client.pem:[REDACTED] https://x',
  ],
  ['curl --oauth2-bearer', 'curl --oauth2-bearer {S} https://x', 'curl --oauth2-bearer [REDACTED] https://x'],
  ['httpie -a', 'http -a bob:{S} GET https://x', 'http -a bob:[REDACTED] GET https://x'],
  [
    'wget --http-password',
    'wget --http-user=bob --http-password={S} https://x',
    'wget --http-user=bob --http-password=[REDACTED] https://x',
  ],
  ['sshpass -p', 'sshpass -p {S} ssh root@host', 'sshpass -p [REDACTED] ssh root@host'],
  ['sshpass -p attached', 'sshpass -p{S} scp f root@host:', 'sshpass -p[REDACTED] scp f root@host:'],
  [
    'docker login -p',
    'docker login -u bob -p {S} registry.example.com',
    'docker login -u bob -p [REDACTED] registry.example.com',
  ],
  [
    'docker login --password',
    'docker login --username bob --password {S} r.io',
    'docker login --username bob --password [REDACTED] r.io',
  ],
  ['podman login -p attached', 'podman login -ubob -p{S} r.io', 'podman login -ubob -p[REDACTED] r.io'],
  [
    'helm registry login -p',
    'helm registry login r.io -u bob -p {S}',
    'helm registry login r.io -u bob -p [REDACTED]',
  ],
  [
    'helm repo add --password',
    'helm repo add x https://c.io --username bob --password {S}',
    'helm repo add x https://c.io --username bob --password [REDACTED]',
  ],
  [
    'oc login -p',
    'oc login https://api:6443 -u dev -p {S}',
    'oc login https://api:6443 -u dev -p [REDACTED]',
  ],
  [
    'az login -p',
    'az login --service-principal -u app-id -p {S} --tenant t',
    'az login --service-principal -u app-id -p [REDACTED] --tenant t',
  ],
  [
    'skopeo --creds',
    'skopeo copy --src-creds bob:{S} docker://a docker://b',
    'skopeo copy --src-creds [REDACTED] docker://a docker://b',
  ],
  ['kubectl --token', 'kubectl --token={S} get pods', 'kubectl --token=[REDACTED] get pods'],
  [
    'kubectl create secret --from-literal',
    'kubectl create secret generic db --from-literal=pw={S}',
    'kubectl create secret generic db --from-literal=pw=[REDACTED]',
  ],
  [
    'kubectl create secret docker-registry',
    'kubectl create secret docker-registry r --docker-password={S}',
    'kubectl create secret docker-registry r --docker-password=[REDACTED]',
  ],
  [
    'gh secret set --body',
    'gh secret set DEPLOY_KEY --body {S}',
    'gh secret set DEPLOY_KEY --body [REDACTED]',
  ],
  [
    'az keyvault secret set --value',
    'az keyvault secret set --vault-name v -n db --value {S}',
    'az keyvault secret set --vault-name v -n db --value [REDACTED]',
  ],
  ['fly secrets set', 'fly secrets set DATABASE={S}', 'fly secrets set DATABASE=[REDACTED]'],
  ['vault login TOKEN', 'vault login {S}', 'vault login [REDACTED]'],
  ['vault kv put', 'vault kv put secret/app db={S}', 'vault kv put secret/app db=[REDACTED]'],
  [
    'aws secretsmanager --secret-string',
    'aws secretsmanager create-secret --name x --secret-string {S}',
    'aws secretsmanager create-secret --name x --secret-string [REDACTED]',
  ],
  [
    'aws ssm put-parameter --value',
    'aws ssm put-parameter --name /db --type SecureString --value {S}',
    'aws ssm put-parameter --name /db --type SecureString --value [REDACTED]',
  ],
  [
    'aws configure set',
    'aws configure set aws_secret_access_key {S}',
    'aws configure set aws_secret_access_key [REDACTED]',
  ],
  ['doctl -t', 'doctl auth init -t {S}', 'doctl auth init -t [REDACTED]'],
  ['twine -p', 'twine upload -u __token__ -p {S} dist/*', 'twine upload -u __token__ -p [REDACTED] dist/*'],
  ['rabbitmqctl add_user', 'rabbitmqctl add_user bob {S}', 'rabbitmqctl add_user bob [REDACTED]'],
  [
    'rabbitmqadmin -p',
    'rabbitmqadmin -u admin -p {S} list queues',
    'rabbitmqadmin -u admin -p [REDACTED] list queues',
  ],
  ['cqlsh -p', 'cqlsh -u cassandra -p {S} db', 'cqlsh -u cassandra -p [REDACTED] db'],
  [
    'mosquitto_pub -P',
    'mosquitto_pub -h b -u bob -P {S} -t t -m x',
    'mosquitto_pub -h b -u bob -P [REDACTED] -t t -m x',
  ],
  [
    'ipmitool -P',
    'ipmitool -I lanplus -H bmc -U admin -P {S} power status',
    'ipmitool -I lanplus -H bmc -U admin -P [REDACTED] power status',
  ],
  ['snmpwalk -c', 'snmpwalk -v2c -c {S} 10.0.0.1', 'snmpwalk -v2c -c [REDACTED] 10.0.0.1'],
  [
    'snmpget -A -X',
    'snmpget -v3 -u u -A {S} -X {S} h sysName.0',
    'snmpget -v3 -u u -A [REDACTED] -X [REDACTED] h sysName.0',
  ],
  ['zip -P', 'zip -P {S} -r out.zip dir', 'zip -P [REDACTED] -r out.zip dir'],
  ['unzip -P', 'unzip -P{S} out.zip', 'unzip -P[REDACTED] out.zip'],
  ['7z -p', '7z a -p{S} -mhe=on out.7z dir', '7z a -p[REDACTED] -mhe=on out.7z dir'],
  ['ssh-keygen -N', 'ssh-keygen -t ed25519 -N {S} -f key', 'ssh-keygen -t ed25519 -N [REDACTED] -f key'],
  ['useradd -p', 'useradd -m -p {S} bob', 'useradd -m -p [REDACTED] bob'],
  [
    'htpasswd -b',
    'htpasswd -bc /etc/nginx/htpasswd bob {S}',
    'htpasswd -bc /etc/nginx/htpasswd bob [REDACTED]',
  ],
  ['htpasswd -nb', 'htpasswd -nbB bob {S}', 'htpasswd -nbB bob [REDACTED]'],
  [
    'keytool -storepass',
    'keytool -list -keystore ks.jks -storepass {S}',
    'keytool -list -keystore ks.jks -storepass [REDACTED]',
  ],
  [
    'single-dash -password',
    'influx -username admin -password {S}',
    'influx -username admin -password [REDACTED]',
  ],
  [
    'java -D...Password=',
    'java -Djavax.net.ssl.keyStorePassword={S} -jar app.jar',
    'java -Djavax.net.ssl.keyStorePassword=[REDACTED] -jar app.jar',
  ],
  ['sqlplus user/password@db', 'sqlplus -s scott/{S}@orcl', 'sqlplus -s scott/[REDACTED]@orcl'],
  ['isql DSN user password', 'isql prod sa {S}', 'isql prod sa [REDACTED]'],
  ['lftp -u user,password', 'lftp -u bob,{S} ftp.example.com', 'lftp -u bob,[REDACTED] ftp.example.com'],
  ['xfreerdp /p:', 'xfreerdp /v:host /u:bob /p:{S}', 'xfreerdp /v:host /u:bob /p:[REDACTED]'],
  ['plink -pw', 'plink -ssh bob@host -pw {S}', 'plink -ssh bob@host -pw [REDACTED]'],
  ['wpa_passphrase', 'wpa_passphrase home {S}', 'wpa_passphrase home [REDACTED]'],
  [
    'nmcli password',
    'nmcli dev wifi connect home password {S}',
    'nmcli dev wifi connect home password [REDACTED]',
  ],
  ['mc alias set', 'mc alias set s3 https://s3 AKID {S}', 'mc alias set s3 https://s3 AKID [REDACTED]'],
  [
    'git config credential',
    'git config --global github.token {S}',
    'git config --global github.token [REDACTED]',
  ],
  [
    'npm config set _authToken',
    'npm config set //registry.example.com/:_authToken {S}',
    'npm config set //registry.example.com/:_authToken [REDACTED]',
  ],
  [
    'helm --set x.password=',
    'helm install db bitnami/mysql --set auth.rootPassword={S}',
    'helm install db bitnami/mysql --set auth.rootPassword=[REDACTED]',
  ],
  [
    'mount -o password=',
    'mount -t cifs -o username=bob,password={S} //s/x /mnt',
    'mount -t cifs -o username=bob,password=[REDACTED] //s/x /mnt',
  ],
  [
    'impacket user:password@host',
    'psexec.py corp/admin:{S}@10.0.0.5',
    'psexec.py corp/admin:[REDACTED]@10.0.0.5',
  ],
  // URLs.
  [
    'URL user:password@',
    'git clone https://bob:{S}@github.com/o/r',
    'git clone https://bob:[REDACTED]@github.com/o/r',
  ],
  [
    'URL user:password@ (redis)',
    'redis-cli -u redis://:{S}@cache:6379',
    'redis-cli -u redis://:[REDACTED]@cache:6379',
  ],
  ['URL ?access_token=', 'curl https://api/x?access_token={S}', 'curl https://api/x?access_token=[REDACTED]'],
  // Headers.
  ['header X-Api-Key:', 'curl -H X-Api-Key:{S} https://x', 'curl -H X-Api-Key:[REDACTED] https://x'],
  ['header Cookie', 'curl -b session={S} https://x', 'curl -b session=[REDACTED] https://x'],
  // Pipelines into a program that reads a password on its input.
  [
    'echo | docker login --password-stdin',
    'echo {S} | docker login -u bob --password-stdin r.io',
    'echo [REDACTED] | docker login -u bob --password-stdin r.io',
  ],
  ['echo -n | chpasswd', 'echo -n bob:{S} | chpasswd', 'echo -n [REDACTED] | chpasswd'],
  ['printf | sudo -S', 'printf {S} | sudo -S apt update', 'printf [REDACTED] | sudo -S apt update'],
  [
    'here-string to --password-stdin',
    'podman login -u bob --password-stdin r.io <<< {S}',
    'podman login -u bob --password-stdin r.io <<< [REDACTED]',
  ],
  // Scripts in scripts.
  ['bash -c', 'bash -c "mysql -p{S}"', 'bash -c "mysql -p[REDACTED]"'],
  ['ssh remote command', 'ssh db "mysql -uroot -p{S} shop"', 'ssh db "mysql -uroot -p[REDACTED] shop"'],
  ['command substitution', 'x=$(curl -su bob:{S} https://x)', 'x=$(curl -su bob:[REDACTED] https://x)'],
  [
    'after ; && |',
    'ls; cd /; sshpass -p {S} ssh h | tee log',
    'ls; cd /; sshpass -p [REDACTED] ssh h | tee log',
  ],
];

/**
 * Spellings that cannot stand inside a double-quoted string unchanged (they hold `"` or `$'` or `$"`).
 * Inside one, the secret is spelled with backslashes instead.
 */
const IN_DOUBLE_QUOTES = new Set(['bash -c', 'ssh remote command', 'psql conninfo']);
const spellingsFor = (name: string): string[] =>
  IN_DOUBLE_QUOTES.has(name)
    ? ['hunter2', "'hunter2'", "hun'ter2'", 'hun\\"\\"ter2', 'h\\\\unter2']
    : SPELLINGS;

describe('a secret in every spelling is replaced whole', () => {
  const rows = TEMPLATES.flatMap(([name, typed, recorded]) =>
    spellingsFor(name).map(
      (spelling) => [name, spelling, typed.replaceAll('{S}', () => spelling), recorded] as const,
    ),
  );

  it.each(rows)('%s, spelled %s: %s', (_name, _spelling, typed, recorded) => {
    const outcome = rules.apply(typed);
    expect(outcome.text).toBe(recorded);
    expect(outcome.redacted).toBe(true);
    expectNoLeftover(outcome.text);
  });

  it('each spelling spells the secret, as the shell reads it', () => {
    for (const spelling of SPELLINGS) expect(words(`x ${spelling}`)).toEqual(['x', SECRET]);
  });
});

/** [class, typed, recorded]: rows where the secret is in context that the spellings above do not fit. */
const ROWS: [string, string, string][] = [
  [
    'quoting: escaped spaces',
    'curl -H Authorization:\\ Bearer\\ abc123def456 https://x',
    'curl -H Authorization:\\ Bearer\\ [REDACTED] https://x',
  ],
  [
    'quoting: escaped spaces, Basic',
    'curl -H Authorization:\\ Basic\\ dXNlcjpwYXNz x',
    'curl -H Authorization:\\ Basic\\ [REDACTED] x',
  ],
  [
    "quoting: header in $'...'",
    "curl -H $'Authorization: Bearer abc\\x31def' x",
    "curl -H $'Authorization: Bearer [REDACTED]' x",
  ],
  [
    'quoting: header split over quotes',
    'curl -H "Authorization: Bearer "abc\'def\' x',
    // The raw text reads `Bearer` as the credential (a quote follows it): more is replaced, nothing leaks.
    'curl -H "Authorization: [REDACTED] "[REDACTED] x',
  ],
  ['quoting: a value with a space', 'mysql --password="a b" -h db', 'mysql --password=[REDACTED] -h db'],
  ['quoting: a value with spaces in pieces', "PASSWORD=a' 'b' 'c ./run", 'PASSWORD=[REDACTED] ./run'],
  [
    "quoting: a value with a space in $'...'",
    "mysql --password $'a\\x20b' -h db",
    'mysql --password [REDACTED] -h db',
  ],
  ['quoting: backslash-newline', 'mysql -phun\\\nter2', 'mysql -p[REDACTED]'],
  ['quoting: unterminated', "mysql -p'hunter2", 'mysql -p[REDACTED]'],
  ['quoting: user part quoted', "curl -u 'bob:hunter2' https://x", "curl -u 'bob:[REDACTED]' https://x"],
  [
    'quoting: JSON body',
    'curl -d \'{"password": "hunter2", "user": "bob"}\' x',
    'curl -d \'{"password": [REDACTED], "user": "bob"}\' x',
  ],
  [
    'quoting: JSON body, escaped',
    'curl -d "{\\"password\\": \\"hunter2\\"}" x',
    'curl -d "{\\"password\\": [REDACTED]}" x',
  ],
  [
    'URL password in quotes',
    "git clone https://bob:'hunter2'@github.com/o/r",
    'git clone https://bob:[REDACTED]@github.com/o/r',
  ],
  [
    'URL password with a space',
    "git clone https://bob:'hun ter2'@github.com/o/r",
    'git clone https://bob:[REDACTED]@github.com/o/r',
  ],
  [
    'URL password with an escaped space',
    'psql postgresql://app:hun\\ ter2@db/shop',
    'psql postgresql://app:[REDACTED]@db/shop',
  ],
  [
    'URL ?access_token= in quotes',
    'curl "https://api/x?access_token=hunter2&page=2"',
    'curl "https://api/x?access_token=[REDACTED]&page=2"',
  ],
  ['header Cookie:', 'curl -H "Cookie: session=hunter2; theme=dark" x', 'curl -H "Cookie: [REDACTED]" x'],
  [
    'header X-Auth-Token',
    'curl -H "X-Auth-Token: abc def" https://x',
    'curl -H "X-Auth-Token: [REDACTED]" https://x',
  ],
  [
    'SQL IDENTIFIED BY',
    `mysql -e "CREATE USER 'app'@'%' IDENTIFIED BY 'hunter2'"`,
    `mysql -e "CREATE USER 'app'@'%' IDENTIFIED BY [REDACTED]"`,
  ],
  [
    'SQL IDENTIFIED WITH ... BY',
    `mysql -e "ALTER USER app IDENTIFIED WITH caching_sha2_password BY 'hunter2'"`,
    `mysql -e "ALTER USER app IDENTIFIED WITH caching_sha2_password BY [REDACTED]"`,
  ],
  [
    'SQL PASSWORD',
    `psql -c "ALTER ROLE app WITH LOGIN PASSWORD 'hunter2'"`,
    `psql -c "ALTER ROLE app WITH LOGIN PASSWORD [REDACTED]"`,
  ],
  [
    'SQL PASSWORD =',
    `sqlcmd -Q "CREATE LOGIN app WITH PASSWORD = 'hunter2'"`,
    `sqlcmd -Q "CREATE LOGIN app WITH PASSWORD = [REDACTED]"`,
  ],
  [
    'SQL Oracle',
    'sqlplus / as sysdba <<< "ALTER USER app IDENTIFIED BY hunter2;"',
    'sqlplus / as sysdba <<< "ALTER USER app IDENTIFIED BY [REDACTED];"',
  ],
  [
    'Azure connection string',
    'export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc+/def==;EndpointSuffix=core.windows.net"',
    'export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=a;AccountKey=[REDACTED];EndpointSuffix=core.windows.net"',
  ],
  [
    'Azure connection string argument',
    'az storage blob list --connection-string "AccountName=a;AccountKey=abc+/def==;EndpointSuffix=x"',
    'az storage blob list --connection-string "AccountName=a;AccountKey=[REDACTED];EndpointSuffix=x"',
  ],
  [
    'Azure SAS',
    "curl 'https://a.blob.core.windows.net/c/f?sv=2022&sig=abc%2Bdef%3D&se=x'",
    "curl 'https://a.blob.core.windows.net/c/f?sv=2022&sig=[REDACTED]&se=x'",
  ],
  ['echo | passwd', 'echo -e "hunter2\\nhunter2" | passwd bob', 'echo -e [REDACTED] | passwd bob'],
  ['nested twice', `bash -c "ssh h 'mysql -p\\"hunter2\\"'"`, `bash -c "ssh h 'mysql -p[REDACTED]'"`],
  [
    'kubectl exec ... sh -c',
    `kubectl exec -it db -- sh -c 'redis-cli -a "hunter2" info'`,
    `kubectl exec -it db -- sh -c 'redis-cli -a [REDACTED] info'`,
  ],
  ['eval', `eval "export DB_PASS='hunter2'"`, `eval "export DB_PASS=[REDACTED]"`],
];

describe('secrets in context', () => {
  it.each(ROWS)('%s: %s', (_name, typed, recorded) => {
    const outcome = rules.apply(typed);
    expect(outcome.text).toBe(recorded);
    expect(outcome.redacted).toBe(true);
  });
});

/** Keys of the big providers: [provider, key]. Each is checked bare, quoted and split by quotes. */
const KEYS: [string, string][] = [
  ['AWS access key id', 'AKIAIOSFODNN7EXAMPLE'],
  ['AWS temporary access key id', 'ASIAIOSFODNN7EXAMPLE'],
  ['GitHub personal token', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['GitHub OAuth token', 'gho_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['GitHub user-to-server token', 'ghu_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['GitHub server-to-server token', 'ghs_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['GitHub refresh token', 'ghr_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['GitHub fine-grained token', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz'],
  ['GitLab personal token', 'glpat-abcdefghij0123456789'],
  ['GitLab deploy token', 'gldt-abcdefghij0123456789xyz'],
  ['Slack bot token', 'xoxb-1234567890-0987654321-abcdefghijklmnop'],
  ['Slack user token', 'xoxp-1234567890-0987654321-abcdefghijklmnop'],
  ['Slack app token', 'xapp-1-A0123456789-1234567890123-abcdef0123'],
  ['Stripe live secret key', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'],
  ['Stripe restricted key', 'rk_live_4eC39HqLyjWDarjtT1zdp7dc'],
  ['Stripe test secret key', 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'],
  ['Stripe webhook secret', 'whsec_abcdefghijklmnopqrstuvwxyz012345'],
  ['Google API key', 'AIzaSyA1234567890abcdefghijklmnopqrstuv'],
  ['Google OAuth client secret', 'GOCSPX-abcdefghijklmnopqrstuvwxyz12'],
  ['Google OAuth access token', 'ya29.a0AfH6SMBabcdefghijklmnopqrstuvwxyz'],
  ['OpenAI key', 'sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ'],
  ['OpenAI project key', 'sk-proj-abcdefghijklmnopqrstuvwxyz_0123456789-ABCD'],
  ['OpenAI service account key', 'sk-svcacct-abcdefghijklmnopqrstuvwxyz0123'],
  ['Anthropic key', 'sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789-ABCD'],
  ['npm token', 'npm_abcdefghijklmnopqrstuvwxyz0123456789'],
  ['PyPI token', 'pypi-AgEIcHlwaS5vcmcCJDU5YTRiZWVlLWE0ZjctNGI3Zi05NzQ3LTVhNjY5ZGI2YjE5NgACKlszLCJlZjc'],
  ['SendGrid key', 'SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'],
  ['Twilio API key', 'SK0123456789abcdef0123456789abcdef'],
  ['Hugging Face token', 'hf_abcdefghijklmnopqrstuvwxyzABCDEFGH'],
  ['DigitalOcean token', `dop_v1_${'0123456789abcdef'.repeat(4)}`],
  ['DigitalOcean OAuth token', `doo_v1_${'0123456789abcdef'.repeat(4)}`],
  ['JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'],
  ['HashiCorp Vault token', 'hvs.CAESIJlU7mXw0abcdefghijklmnopqrstuvwxyz'],
  ['Docker Hub token', 'dckr_pat_abcdefghijklmnopqrstuvwxyz0'],
  ['Grafana service account token', 'glsa_abcdefghijklmnopqrstuvwxyz012345_0123abcd'],
  ['Shopify access token', `shpat_${'0123456789abcdef'.repeat(2)}`],
  ['Databricks token', `dapi${'0123456789abcdef'.repeat(2)}`],
  ['Postman key', 'PMAK-0123456789abcdef01234567-0123456789abcdef0123456789abcdef01'],
  ['Terraform Cloud token', `abcdefghijklmn.atlasv1.${'abcdefghijklmnop'.repeat(4)}`],
  ['age secret key', 'AGE-SECRET-KEY-1QQPQZQYQZQPQZQYQZQPQZQYQZQPQZQYQZQPQZQYQZQPQZQYQZQPQZQYQZQ'],
  ['Linear key', 'lin_api_abcdefghijklmnopqrstuvwxyz0123456789ABCD'],
  ['Sentry token', 'sntrys_eyJpYXQiOjE2ODQ4NzM0NjguMjg4MTk2'],
  ['Atlassian token', 'ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz'],
  ['New Relic key', 'NRAK-ABCDEFGHIJKLMNOPQRSTUVWXYZ0'],
  ['Mailgun key', `key-${'0123456789abcdef'.repeat(2)}`],
  ['Square token', 'sq0atp-abcdefghijklmnopqrstuv'],
];

describe('keys of the big providers', () => {
  const spellings = (key: string): string[] => {
    const middle = key.length >> 1;
    return [
      key,
      `'${key}'`,
      `"${key}"`,
      `${key.slice(0, middle)}'${key.slice(middle)}'`,
      `${key.slice(0, 4)}""${key.slice(4)}`,
      `$'\\x${key.charCodeAt(0).toString(16)}${key.slice(1)}'`,
      `${key.slice(0, 3)}\\${key.slice(3)}`,
    ];
  };
  const rows = KEYS.flatMap(([provider, key]) => spellings(key).map((s) => [provider, s, key] as const));

  it.each(rows)('%s: %s', (_provider, spelled, key) => {
    for (const [typed, recorded] of [
      [`echo ${spelled}`, 'echo [REDACTED]'],
      [`curl -H x ${spelled} | jq`, 'curl -H x [REDACTED] | jq'],
    ]) {
      const outcome = rules.apply(typed!);
      expect(outcome.text).toBe(recorded);
      expect(outcome.text.includes(key.slice(6, 14))).toBe(false);
    }
  });

  it('Slack webhooks keep their host, not their path', () => {
    expect(
      rules.apply("curl -X POST -d '{}' https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX").text,
    ).toBe("curl -X POST -d '{}' https://hooks.slack.com/services/[REDACTED]");
  });
});

describe('private key blocks', () => {
  it.each([
    [
      'PGP, on one line',
      'echo "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF0abc\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----" | gpg --import',
      'echo "-----BEGIN PGP PRIVATE KEY BLOCK-----[REDACTED]-----END PGP PRIVATE KEY BLOCK-----" | gpg --import',
    ],
    [
      'PGP, BEGIN line with the key after it',
      "printf '-----BEGIN PGP PRIVATE KEY BLOCK----- lQOYBF0abc' > k",
      "printf '-----BEGIN PGP PRIVATE KEY BLOCK-----[REDACTED]",
    ],
    [
      'SSH2 (RFC 4716)',
      'echo "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----AAAAB3NzaC1yc2E---- END SSH2 ENCRYPTED PRIVATE KEY ----"',
      'echo "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----[REDACTED]---- END SSH2 ENCRYPTED PRIVATE KEY ----"',
    ],
    [
      'OpenSSH, quoted in pieces',
      "echo '-----BEGIN OPENSSH PRIVATE KEY-----'b3BlbnNzaC1rZXk'-----END OPENSSH PRIVATE KEY-----'",
      "echo '-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----'",
    ],
  ])('%s', (_name, typed, recorded) => {
    expect(rules.apply(typed).text).toBe(recorded);
  });

  it('a PGP block typed line by line is replaced line by line, header lines included', () => {
    const blocks = new PrivateKeyBlocks();
    const typed = [
      'gpg --import <<EOF',
      '-----BEGIN PGP PRIVATE KEY BLOCK-----',
      'Comment: bob',
      '',
      'lQOYBF0abcdefghijklmnop',
      '=AbCd',
      '-----END PGP PRIVATE KEY BLOCK-----',
      'EOF',
    ];
    expect(typed.map((line) => blocks.inside('a', line))).toEqual([
      false,
      false,
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
  });

  it('an SSH2 block typed line by line too', () => {
    const blocks = new PrivateKeyBlocks();
    const typed = [
      '---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----',
      'AAAA',
      '---- END SSH2 ENCRYPTED PRIVATE KEY ----',
    ];
    expect(typed.map((line) => blocks.inside('a', line))).toEqual([false, true, false]);
  });
});

/** Commands with nothing secret in them: recorded byte for byte, quotes and escapes as typed. */
const UNTOUCHED = [
  'ls -la',
  "awk '{print $1}' access.log | sort | uniq -c | sort -rn | head",
  'echo "hello from $(hostname)" > /tmp/note && cat /tmp/note',
  'find / -name "*.conf" -mtime -1 2>/dev/null | head',
  "git commit -m 'fix: password reset emails went to the wrong user'",
  'git commit -m "rotate the api token weekly"',
  'grep -rn "token" src/ | wc -l',
  "grep -i 'password' /var/log/auth.log",
  'docker run -p 8080:80 -e DEBUG=1 nginx:1.25@sha256:0123456789abcdef',
  'docker run --rm -it -u 1000:1000 -v "$PWD:/src" node:20 npm test',
  'ssh -p 2222 bob@host',
  'scp -P 2222 file bob@host:/tmp/',
  'mysql -u root -p shop',
  'mysql -h db -u app -p',
  'psql -h db -U app -W shop',
  'redis-cli -h cache -p 6379 info',
  'curl -sSfL -o out.tgz https://example.com/x.tgz',
  "curl -H 'Accept: application/json' https://api.example.com/items?page=2",
  'kubectl get secret db -o jsonpath="{.data.password}" | base64 -d | wc -c',
  'kubectl create secret generic x --from-file=key=./file',
  'kubectl create secret tls web --cert=tls.crt --key=tls.key',
  'openssl genpkey -algorithm ed25519 -out key.pem',
  'openssl req -new -key key.pem -passin env:KEY_PASS -out req.csr',
  'openssl s_client -connect example.com:443 -servername example.com </dev/null',
  'ssh-keygen -t ed25519 -f ~/.ssh/id -C "bob@laptop"',
  'tar -czf backup.tgz --exclude="*.log" /srv',
  'export PATH="$PATH:/usr/local/go/bin"',
  'export EDITOR=vim PAGER=less',
  'cd "$OLDPWD" && echo $PWD',
  'read -rsp "Password: " PASSWORD && export PASSWORD',
  'echo "$DB_PASSWORD" | wc -c',
  'sudo -u postgres psql -c "select 1"',
  'helm upgrade --install web ./chart --set image.tag=1.2.3 --set replicas=3',
  'terraform plan -var "region=eu-west-1" -out plan.tfplan',
  'ansible-playbook -i hosts site.yml --ask-pass --ask-become-pass',
  'docker login --password-stdin -u bob < /run/secrets/token',
  'podman login --password-file /run/secret r.io',
  'git clone git@github.com:o/r.git',
  'git clone https://github.com/o/r.git',
  'rsync -av --delete src/ bob@host:/dst/',
  'zip -r out.zip dir -x "*.tmp"',
  'htpasswd -c /etc/nginx/htpasswd bob',
  'ldapsearch -x -H ldap://dc -b dc=x "(uid=bob)"',
  'smbclient -L //srv -N',
  'nmcli dev wifi list',
  "echo $'a\\tb' \"c d\" 'e f' g\\ h",
  'printf "%s\\n" a b c | sort -u',
  'while read -r line; do echo "$line"; done < file',
  'for f in *.txt; do mv "$f" "${f%.txt}.md"; done',
  'cat <<EOF > notes\nthe token rotation is monthly\nEOF',
  'echo AKIA-not-a-key ghp_short sk-worker-7d9f8b6c5d-abcde',
  'kubectl logs sk-live-api-6f7d8c9b5-x2x4z',
  'vault status -address=https://vault:8200',
  'mc ls s3/bucket',
  'net use',
  'yes | apt-get install -y curl',
  'echo x | sudo tee /etc/motd',
  '',
  '   ',
  '#!/bin/sh',
  "unterminated 'quote and more words",
  'a\udcffb "\udcfe" $\'\\xff\'',
];

describe('commands with nothing secret', () => {
  it.each(UNTOUCHED)('%j is recorded as typed', (typed) => {
    expect(rules.apply(typed)).toEqual({ text: typed, redacted: false, alerts: [] });
  });
});

describe('arguments of an exec (argv)', () => {
  it('reads them as the words they are', () => {
    expect(rules.applyArgv(['mysql', '--password', 'a b', '-h', 'db']).args).toEqual([
      'mysql',
      '--password',
      '[REDACTED]',
      '-h',
      'db',
    ]);
    expect(rules.applyArgv(['curl', '-sSfu', 'bob:hunter2', 'https://x']).args).toEqual([
      'curl',
      '-sSfu',
      'bob:[REDACTED]',
      'https://x',
    ]);
    expect(rules.applyArgv(['sh', '-c', "mysql -p'hunter2' db"]).args).toEqual([
      'sh',
      '-c',
      'mysql -p[REDACTED] db',
    ]);
    expect(rules.applyArgv(['curl', '-H', 'Proxy-Authorization: abc', 'https://x']).args).toEqual([
      'curl',
      '-H',
      'Proxy-Authorization: [REDACTED]',
      'https://x',
    ]);
  });

  it('leaves arguments without secrets alone', () => {
    const args = ['git', 'commit', '-m', 'fix password reset', '--author', 'Bob <bob@x>'];
    expect(rules.applyArgv(args)).toEqual({ args, redacted: false, alerts: [] });
  });
});

describe('cost on hostile lines', () => {
  // Each of these is 64 KiB, the agent's largest command; all must finish (the linear engine and the
  // lexer keep each linear) and none may leave a secret.
  const fill = (unit: string): string => unit.repeat(Math.ceil(65_536 / unit.length)).slice(0, 65_536);
  it.each([
    ["PASSWORD=''x "],
    ["$'\\x41' "],
    ['mysql -pa '],
    ["bash -c 'x' "],
    ['$( '],
    ['"\'"\'"'],
    ['a=b=c='],
    ['curl -sSfu a:b '],
    ['echo x | chpasswd; '],
    ['\\ '],
  ])('%j repeated', (unit) => {
    const outcome = rules.apply(fill(unit));
    expect(outcome.text.length).toBeGreaterThan(0);
  });
});

describe("agent/README.md's table of what is redacted", () => {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'agent', 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| Class '), readme.indexOf('\n\n', readme.indexOf('| Class ')));
  const rows = table
    .split('\n')
    .slice(2)
    .map((line) =>
      line.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/^`|`$/g, '').replaceAll('\\|', '|')),
    )
    .map((cells) => [cells[1]!, cells[3]!, cells[4]!] as const);

  it('has rows', () => {
    expect(rows.length).toBeGreaterThan(20);
  });

  it.each(rows)('%s: %s', (_class, typed, recorded) => {
    expect(rules.apply(typed).text).toBe(recorded);
  });
});
