/**
 * The two linear-time regexp engines this project has used, side by side in one process: V8's experimental
 * engine (the `l` flag, switched on with --enable-experimental-regexp-engine) and re2js (RE2's automata in
 * JavaScript), which common/rules/linear-regexp.ts uses. What ADR 0008 measured to choose between them:
 *
 *   compile   the built-in shapes and the example policy's patterns, compiled and run once on an empty line
 *   hostile   patterns that make a backtracking engine exponential, long alternations, large programs, on
 *             lines of 4 KiB and 64 KiB (the agent's default and largest commands): time to answer whether
 *             there is a match (re2js: its DFA, test) and where (re2js: its NFA or backtracker, exec)
 *   memory    what re2js's DFA caches keep after a walk through a pattern with millions of states, with
 *             re2js's default budget and with the one linear-regexp.ts gives each pattern
 *   dialect   which constructs each engine accepts (V8's answer depends on the Node.js version)
 *
 * Microseconds, median over rounds, the engines alternating. `-` where an engine refuses the pattern. These
 * machines are noisy: compare the columns of one run. Runs on any Node.js with the experimental engine; no
 * root needed.
 *
 *   make build && node dist/bench/regexp-engines.js [--rounds N]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { load } from 'js-yaml';
import { RE2JS } from 're2js';
import { BUILTIN_SHAPES } from '../common/rules/builtins.js';
import { DFA_MAX_MEMORY, compileLinear } from '../common/rules/linear-regexp.js';
import { REPO_ROOT } from '../e2e/support/paths.js';
import { fixed, median, numberOption, parseOptionValues, progress, runBench, table } from './support.js';

const USAGE = `usage: node dist/bench/regexp-engines.js [options]   (after make build)
  --rounds N   alternating rounds per measurement (default 9)`;

/** The flag that selects V8's linear engine; a constant so that linters do not judge it. */
const LINEAR = 'l';

/** One engine's way to compile a pattern and run it; compile throws when the engine refuses the pattern. */
interface Engine {
  name: string;
  compile(source: string): { test(text: string): boolean; exec(text: string): unknown };
}

/**
 * The built-in shapes in the JavaScript V8 reads, as they were written for it before: RE2's `\x{a0}` as
 * `\u00a0`, and counts above 16, which V8's engine refuses, in pieces: `[class]{35}` as `[class]{16}` twice
 * and `[class]{3}` (the shapes have no other counts above 16).
 */
const forV8 = (source: string): string =>
  source
    .replace(/\\x\{([0-9a-fA-F]{1,4})\}/g, (_, hex: string) => `\\u${hex.padStart(4, '0')}`)
    .replace(/(\[[^\]]*\])\{(\d+)\}/g, (_, cls: string, count: string) => {
      let out = '';
      for (let left = Number(count); left > 0; left -= 16) out += `${cls}{${Math.min(left, 16)}}`;
      return out;
    });

const v8Linear: Engine = {
  name: 'V8 experimental',
  compile(source) {
    const regexp = new RegExp(forV8(source), `g${LINEAR}`);
    const exec = (text: string): RegExpExecArray | null => {
      regexp.lastIndex = 0;
      return regexp.exec(text);
    };
    // One engine for both questions: an NFA that tracks captures.
    return { test: (text) => exec(text) !== null, exec };
  },
};

const re2js: Engine = {
  name: 're2js',
  compile(source) {
    const re = RE2JS.compile(source);
    return {
      test: (text) => re.test(text),
      exec: (text) => {
        const matcher = re.matcher(text);
        return matcher.find(0) ? matcher.start() : null;
      },
    };
  },
};

const ENGINES = [v8Linear, re2js];

/** The built-in shapes as command-rules.ts compiles them. */
function shapeSources(): string[] {
  return BUILTIN_SHAPES.map(
    (s) =>
      `${s.before === undefined ? '' : `(${s.before})`}(?:${s.secret})${s.after === undefined ? '' : `(${s.after})`}`,
  );
}

function examplePatterns(): string[] {
  const policy = load(readFileSync(join(REPO_ROOT, 'examples', 'production-shells.yaml'), 'utf8')) as {
    spec: { redact?: { patterns?: string[] }; alerts?: { pattern: string }[] };
  };
  return [...(policy.spec.redact?.patterns ?? []), ...(policy.spec.alerts ?? []).map((a) => a.pattern)];
}

const WORDS = Array.from({ length: 200 }, (_, i) => `word${i}x`);

/**
 * [what to call it, pattern, a line of n characters]. Every line holds the literals a match needs, so that
 * re2js cannot rule it out with indexOf alone, and none matches but the word lists' (at their very end).
 */
const HOSTILE: [string, string, (n: number) => string][] = [
  ['(a+)+$', '(a+)+$', (n) => `${'a'.repeat(n - 1)}!`],
  ['(x+x+)+y', '(x+x+)+y', (n) => `${'x'.repeat(n - 2)}zy`],
  ['(.*a){12}x', '(.*a){12}x', (n) => `${'a'.repeat(n - 2)}bx`],
  ['(?:[a-z]+\\s*)+=', '(?:[a-z]+\\s*)+=', (n) => `${'ab '.repeat(Math.floor((n - 2) / 3))}!=`],
  ...[50, 200].map((count): [string, string, (n: number) => string] => [
    `${count} words, (word0x|...)`,
    `(${WORDS.slice(0, count).join('|')})`,
    (n) => `${'word1 '.repeat(Math.floor((n - 10) / 6))}word${count - 1}x`,
  ]),
  ['curl .*\\|\\s*(ba)?sh', 'curl .*\\|\\s*(ba)?sh', (n) => 'curl x | echo sh '.repeat(n / 16).slice(0, n)],
  [
    '[A-Za-z0-9]{16}[A-Za-z0-9]{16}!',
    '[A-Za-z0-9]{16}[A-Za-z0-9]{16}!',
    (n) => `${'Ab0'.repeat(Math.ceil(n / 3)).slice(0, n - 2)} !`,
  ],
  // A large program (60 counted copies): the work per character grows with it, in both engines.
  ['.{16} 60 times', '.{16}'.repeat(60), (n) => 'ab'.repeat(n / 2)],
];

/** Constructs whose acceptance differs between the engines or between Node.js versions. */
const DIALECT = [
  '(a)\\1',
  'a(?=b)',
  '(?<=a)b',
  '(?<!a)b',
  'a{16}',
  'a{17}',
  'a{16,}',
  'a{1000}',
  '(a{10}){10}',
  '(?i)a',
  '(?i:a)b',
  '(?<n>a)|(?<n>b)',
  '\\x{DC80}',
  '\\uDC80',
  '[[:digit:]]',
  '\\pL',
];

/** MiB the heap grew by while `work` ran, after full collections. */
function heapGrowthMiB(work: () => unknown): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = work();
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  if (kept === undefined) throw new Error('nothing was kept');
  return grown / 2 ** 20;
}

/** Microseconds one call of `fn` takes: the median of `rounds` timings of enough calls to last a while. */
function timeUs(fn: () => unknown, reps: number): number {
  const start = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return ((performance.now() - start) * 1000) / reps;
}

interface Options {
  rounds: number;
}

await runBench<Options>({
  name: 'regexp-engines',
  parse(argv) {
    const values = parseOptionValues(argv, ['rounds'], USAGE);
    if (!values) return undefined;
    return { rounds: numberOption('rounds', values.rounds, 9) };
  },
  // eslint-disable-next-line @typescript-eslint/require-await
  async run({ rounds }) {
    setFlagsFromString('--enable-experimental-regexp-engine');
    console.log(`Node.js ${process.version}, V8 ${process.versions.v8}; ${rounds} rounds\n`);

    // Compile time: fresh regexps each round (V8 compiles a regexp at its first run, so each is run once).
    const sets = { 'built-in shapes': shapeSources(), 'example policy patterns': examplePatterns() };
    const compileRows = Object.entries(sets).map(([name, sources]) => {
      const us: number[][] = ENGINES.map(() => []);
      for (let round = 0; round < rounds; round++)
        ENGINES.forEach((engine, k) => {
          us[k]!.push(
            timeUs(() => {
              for (const source of sources) engine.compile(source).exec('');
            }, 1),
          );
        });
      return [`${name} (${sources.length})`, ...us.map((u) => fixed(median(u), 0))];
    });
    console.log('Compiling, and running once on an empty line, µs for the set\n');
    console.log(table(['patterns', ...ENGINES.map((e) => e.name)], compileRows));

    const rows: string[][] = [];
    for (const [label, source, line] of HOSTILE) {
      for (const n of [4096, 65_536]) {
        progress(`${label} on ${n}`);
        const text = line(n);
        const compiled = ENGINES.map((engine) => {
          try {
            return engine.compile(source);
          } catch {
            return undefined;
          }
        });
        const answers = new Set(compiled.filter((c) => c !== undefined).map((c) => c.test(text)));
        if (answers.size > 1) throw new Error(`the engines disagree on ${label} on ${n} characters`);
        const reps = n > 10_000 ? 1 : 4;
        const cells: string[] = [];
        for (const question of ['test', 'exec'] as const) {
          const us: number[][] = ENGINES.map(() => []);
          for (const c of compiled) c?.[question](text); // warm up
          for (let round = 0; round < rounds; round++)
            compiled.forEach((c, k) => {
              if (c) us[k]!.push(timeUs(() => c[question](text), reps));
            });
          cells.push(...us.map((u, k) => (compiled[k] ? fixed(median(u), 0) : '-')));
        }
        rows.push([`\`${label}\``, `${n / 1024} KiB`, ...cells]);
      }
    }
    console.log('\nHostile patterns and lines, µs per line: whether it matches (test), where (exec)\n');
    console.log(
      table(
        ['pattern', 'line', ...ENGINES.map((e) => `${e.name} test`), ...ENGINES.map((e) => `${e.name} exec`)],
        rows,
      ),
    );

    // Ten copies of a pattern whose DFA has about a million states, each walked over three 64 KiB lines.
    progress('memory');
    let seed = 7;
    const walk = (): string =>
      `${Array.from({ length: 65_536 }, () => ((seed = (seed * 69_069 + 1) % 2 ** 32) < 2 ** 31 ? 'a' : 'b')).join('')}c`;
    const lines = [walk(), walk(), walk()];
    const source = '[ab]*a[ab]{20}c';
    const budgets: [string, (s: string) => { test(t: string): boolean }][] = [
      ["re2js's default", (s) => RE2JS.compile(s)],
      [
        `linear-regexp.ts (${DFA_MAX_MEMORY / 1024} KiB)`,
        (s) => {
          const compiled = compileLinear(s);
          if (!compiled.ok) throw new Error(compiled.message);
          return compiled.regexp;
        },
      ],
    ];
    const memoryRows = budgets.map(([name, compile]) => {
      let ms = 0;
      const mib = heapGrowthMiB(() =>
        Array.from({ length: 10 }, () => {
          const regexp = compile(source);
          const start = performance.now();
          for (const line of lines) regexp.test(line);
          ms += performance.now() - start;
          return regexp;
        }),
      );
      return [name, fixed(mib, 1), fixed(ms / 30, 1)];
    });
    console.log(`\nre2js DFA memory: 10 x \`${source}\`, each on three 64 KiB lines of random a and b\n`);
    console.log(table(['DFA budget', 'heap kept, MiB', 'ms per line'], memoryRows));

    const accepts = (compile: () => unknown): string => {
      try {
        compile();
        return 'accepted';
      } catch {
        return 'refused';
      }
    };
    // V8's answer depends on the flags too: with g or y (as the rules compiled patterns) it refuses lookbehind.
    const dialectRows = DIALECT.map((source) => [
      `\`${source}\``,
      accepts(() => new RegExp(source, LINEAR)),
      accepts(() => new RegExp(source, `g${LINEAR}`)),
      accepts(() => RE2JS.compile(source)),
    ]);
    console.log('\nWhat each engine accepts\n');
    console.log(table(['pattern', 'V8 experimental, l', 'V8 experimental, gl', 're2js'], dialectRows));
  },
});
