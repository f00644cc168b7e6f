/**
 * What redaction and alerts cost per command, the working tree side by side with another revision in one run
 * (these machines are noisy: only the ratio in one run means much). Both compile the same policy
 * (examples/production-shells.yaml: built-in redaction and its alert rules) and apply it to the same lines,
 * in alternating rounds:
 *
 *   typing    commands people type (no secret): the cost every line pays
 *   secrets   commands holding secrets in the shapes the built-ins know
 *   crafted   4 KiB lines built to be expensive (keywords, quotes, flags repeated): one hostile user's worst
 *
 * Per set: microseconds per line, median over rounds, for each build and the ratio; and the slowest single
 * line seen. No root needed.
 *
 *   make build && node dist/bench/command-rules.js [--baseline REV] [--rounds N]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { load as loadYaml } from 'js-yaml';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { DEFAULT_BASELINE, baselineBuild } from './baseline-build.js';
import { fixed, median, numberOption, parseOptionValues, progress, runBench, table } from './support.js';

const USAGE = `usage: node dist/bench/command-rules.js [options]   (after make build)
  --baseline REV   the revision to compare with (default: ${DEFAULT_BASELINE}); built once into .cache/bench-baseline/
  --rounds N       alternating rounds per build (default 40)`;

/** The part of command-rules.js both builds export that the bench calls. */
interface RulesModule {
  /** Only in revisions that ran patterns on V8's experimental engine, which had to be switched on. */
  enableLinearRegExp?(): void;
  compileCommandRules(
    spec: unknown,
  ):
    | { ok: true; rules: { apply(command: string): { text: string } } }
    | { ok: false; errors: { field: string; message: string }[] };
}

const TYPING = [
  'ls -la',
  'cd /var/log',
  'tail -n 100 syslog',
  'ps aux | grep nginx',
  'kubectl get pods -n shop -o wide',
  'git status',
  'vim /etc/nginx/nginx.conf',
  'df -h',
  'echo "hello from $(hostname)" > /tmp/note && cat /tmp/note',
  'find / -name "*.conf" -mtime -1 2>/dev/null | head',
  'curl -fsS http://localhost:8080/healthz',
  "awk '{print $1}' access.log | sort | uniq -c | sort -rn | head",
];

const SECRETS = [
  'mysql -h db.shop.svc -u app --password=s3cr3t shop',
  'export DB_PASSWORD=hunter2',
  'curl -u admin:hunter2 https://api.example.com/v1/items',
  "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl' https://api.example.com",
  'psql postgres://app:s3cr3t@db:5432/shop',
  'aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'git clone https://x-access-token:ghp_0123456789abcdefghijklmnopqrstuvwxyzAB@github.com/o/r.git',
  'docker login -u bob -p hunter2 registry.example.com',
];

/** Lines of about 4 KiB that repeat what makes rules work: keywords, assignments, quotes, flags, URLs. */
function craftedLines(): string[] {
  const fill = (unit: string): string => unit.repeat(Math.ceil(4096 / unit.length)).slice(0, 4096);
  return [
    fill('password='),
    fill("PASSWORD=''x "),
    fill("$'\\x41' "),
    fill('-p -u -a '),
    fill('Authorization:\\ Bearer\\ '),
    fill('https://a:b@'),
    fill('"\'"\'"'),
    fill('token secret key '),
    fill('AKIA'),
    fill('eyJ.'),
  ];
}

interface SetResult {
  /** Microseconds per line, one value per round. */
  perLineUs: number[];
  /** The slowest single line seen, microseconds. */
  worstUs: number;
}

function timeSet(rules: { apply(c: string): unknown }, lines: readonly string[], result: SetResult): void {
  const start = performance.now();
  for (const line of lines) {
    const t = performance.now();
    rules.apply(line);
    result.worstUs = Math.max(result.worstUs, (performance.now() - t) * 1000);
  }
  result.perLineUs.push(((performance.now() - start) * 1000) / lines.length);
}

interface Options {
  baseline: string;
  rounds: number;
}

await runBench<Options>({
  name: 'command-rules',
  parse(argv) {
    const values = parseOptionValues(argv, ['baseline', 'rounds'], USAGE, {
      valueOptional: { baseline: DEFAULT_BASELINE },
    });
    if (!values) return undefined;
    return {
      baseline: values.baseline ?? DEFAULT_BASELINE,
      rounds: numberOption('rounds', values.rounds, 40),
    };
  },
  async run({ baseline, rounds }) {
    const base = baselineBuild(baseline);
    const load = async (root: string): Promise<RulesModule> =>
      (await import(
        pathToFileURL(join(root, 'dist', 'common', 'rules', 'command-rules.js')).href
      )) as RulesModule;
    const builds = [
      { name: `baseline ${base.commit.slice(0, 8)}`, module: await load(base.root) },
      { name: 'working tree', module: await load(REPO_ROOT) },
    ];
    const policy = loadYaml(readFileSync(join(REPO_ROOT, 'examples', 'production-shells.yaml'), 'utf8')) as {
      spec: unknown;
    };
    const compiled = builds.map(({ name, module }) => {
      module.enableLinearRegExp?.();
      const result = module.compileCommandRules(policy.spec);
      if (!result.ok)
        throw new Error(`${name}: the policy does not compile: ${JSON.stringify(result.errors)}`);
      return result.rules;
    });

    const sets = { typing: TYPING, secrets: SECRETS, crafted: craftedLines() };
    const results = compiled.map(() =>
      Object.fromEntries(Object.keys(sets).map((k) => [k, { perLineUs: [], worstUs: 0 }])),
    );
    // Warm both up (the JIT, the regexps' first compilation), then alternate which goes first.
    for (const rules of compiled)
      for (const lines of Object.values(sets)) for (const l of lines) rules.apply(l);
    progress(`${rounds} rounds, alternating ${builds.map((b) => b.name).join(' and ')}`);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const b of order)
        for (const [name, lines] of Object.entries(sets))
          // Short lines are repeated so one timing is not a handful of microseconds.
          timeSet(
            compiled[b]!,
            name === 'crafted' ? lines : Array(20).fill(lines).flat(),
            results[b]![name]!,
          );
    }

    console.log(
      `\nRedaction and alerts per command, µs (median of ${rounds} rounds); baseline: ${base.subject}\n`,
    );
    const rows = Object.keys(sets).map((name) => {
      const [old, now] = results.map((r) => r[name]!);
      const oldUs = median(old!.perLineUs);
      const nowUs = median(now!.perLineUs);
      return [
        `${name} (${sets[name as keyof typeof sets].length} lines)`,
        fixed(oldUs, 1),
        fixed(nowUs, 1),
        `${fixed(nowUs / oldUs, 2)}x`,
        fixed(old!.worstUs, 0),
        fixed(now!.worstUs, 0),
      ];
    });
    console.log(
      table(
        ['lines', 'baseline µs/line', 'now µs/line', 'now / baseline', 'baseline worst µs', 'now worst µs'],
        rows,
      ),
    );
  },
});
