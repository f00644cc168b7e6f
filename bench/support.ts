/**
 * What the benchmarks share: option parsing, /proc readings, statistics, tables, progress on stderr, and the
 * frame of a run (signals, cleanup, exit code). Each bench is a script run as root from dist/bench/.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

// ---------------------------------------------------------------------------------------------------------
// Options.

/** Options the command line may have besides `--name value`. */
export interface MoreOptions<Name extends string, Flag extends string> {
  /** `--flag` alone: true when given. */
  flags?: readonly Flag[];
  /**
   * Options whose value may be left out (`--baseline` alone, at the end or before another option): the value
   * they then take.
   */
  valueOptional?: Partial<Record<Name, string>>;
}

/**
 * The command line: `--name value` for each of `names`, the `flags` of `more`, and -h/--help. The values
 * given, or undefined when --help printed `usage`. Unknown options are errors.
 */
export function parseOptionValues<Name extends string, Flag extends string = never>(
  argv: string[],
  names: readonly Name[],
  usage: string,
  more: MoreOptions<Name, Flag> = {},
): (Partial<Record<Name, string>> & Partial<Record<Flag, boolean>>) | undefined {
  const optional: Partial<Record<string, string>> = more.valueOptional ?? {};
  const args = argv.flatMap((arg, k) => {
    const implied = arg.startsWith('--') ? optional[arg.slice(2)] : undefined;
    const next = argv[k + 1];
    return implied !== undefined && (next === undefined || next.startsWith('-')) ? [arg, implied] : [arg];
  });
  const { values } = parseArgs({
    args,
    options: {
      ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
      ...Object.fromEntries((more.flags ?? []).map((flag) => [flag, { type: 'boolean' as const }])),
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return undefined;
  }
  return values as Partial<Record<Name, string>> & Partial<Record<Flag, boolean>>;
}

/**
 * `--name value` as a positive number (an integer unless `integer` is false; 0 too when `zero`), or the
 * fallback when the option was not given.
 */
export function numberOption(
  name: string,
  value: string | undefined,
  fallback: number,
  { integer = true, zero = false }: { integer?: boolean; zero?: boolean } = {},
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !(n > 0 || (zero && n === 0)) || (integer && !Number.isInteger(n)))
    throw new Error(
      `--${name} must be a ${zero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}, ` +
        `not '${value}'`,
    );
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// The machine.

/** Wall-clock milliseconds with a fraction (Date.now() is whole milliseconds). */
export const nowMs = (): number => performance.timeOrigin + performance.now();

/** The first line a command prints (stdout, then stderr), to name a tool's version; '?' if none. */
export function firstLine(binary: string, args: string[]): string {
  const r = spawnSync(binary, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() || '?';
}

/** A file of /proc/<pid>/, or undefined for a process that is gone. */
export function readProc(pid: number | 'self', file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * /proc/<pid>/stat: the comm, and the fields from the third on (fields[0] is field 3, state; [1] ppid,
 * [11] utime, [12] stime, [13] cutime, [14] cstime, [19] starttime); undefined for a process that is gone.
 */
export function procStat(pid: number | 'self'): { comm: string; fields: string[] } | undefined {
  const stat = readProc(pid, 'stat');
  if (stat === undefined) return undefined;
  const end = stat.lastIndexOf(')');
  return { comm: stat.slice(stat.indexOf('(') + 1, end), fields: stat.slice(end + 2).split(' ') };
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** Clock ticks (the unit of CPU times in /proc) in milliseconds. */
export const ticksToMs = (ticks: number): number => (ticks * 1000) / CLOCK_TICKS;

// ---------------------------------------------------------------------------------------------------------
// Statistics and tables.

/** The q-quantile of sorted numbers (nearest rank); NaN for none. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export const sortNum = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
/** The middle value; for an even count the mean of the two middle ones (of 2 rounds: their mean). NaN for none. */
export function median(xs: number[]): number {
  const sorted = sortNum(xs);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
}

/** A number with `digits` decimals, '-' when it is not finite. */
export const fixed = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** A Markdown table: the first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, k) => (k === 0 ? c.padEnd(widths[k]!) : c.padStart(widths[k]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, k) => (k === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/**
 * `items` `rounds` times, every other round in reverse order (A B, B A, A B, ...): what runs first in one
 * round runs last in the next, so that neither always meets a fresh or a tired machine.
 */
export function alternating<T>(items: readonly T[], rounds: number): T[] {
  return Array.from({ length: rounds }, (_, round) =>
    round % 2 === 0 ? items : [...items].reverse(),
  ).flat();
}

// ---------------------------------------------------------------------------------------------------------
// Progress on stderr (stdout is for the tables).

export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** `phase: done/total`, in place on a terminal; elsewhere every tenth of the way. */
export function progressCount(phase: string, done: number, total: number): void {
  if (process.stderr.isTTY) {
    process.stderr.write(`\r\x1b[K${phase}: ${done}/${total}`);
    if (done === total) process.stderr.write('\n');
  } else if (done === total || done % Math.max(1, Math.ceil(total / 10)) === 0) {
    progress(`${phase}: ${done}/${total}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// A run: interruption (Ctrl-C), cleanup once whatever happens, and the exit code.

/** Thrown to abandon a run after a signal. */
export class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

let interrupted = false;
let cleanupWork: (() => void | Promise<void>) | undefined;
let cleaning: Promise<void> | undefined;

/** Throws Interrupted once a signal came: call it between steps. */
export function checkpoint(): void {
  if (interrupted) throw new Interrupted();
}

/**
 * What to undo at the end of the run, on an error and on a signal too: set it as soon as there is something
 * (the scratch directory). It runs once; a synchronous one runs whole even from process.on('exit').
 */
export function atCleanup(work: () => void | Promise<void>): void {
  cleanupWork = work;
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    const work = cleanupWork;
    if (!work) return;
    progress('cleaning up');
    try {
      await work();
    } catch (err) {
      progress(`cleanup: ${err instanceof Error ? err.message : String(err)}`);
    }
  })();
  return cleaning;
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) process.exit(130); // a second Ctrl-C: leave now
  interrupted = true;
  process.stderr.write(`\n${signal}: stopping (again to leave at once)\n`);
  void cleanup().finally(() => process.exit(130));
}

export interface Bench<Options> {
  /** Starts error messages: `<name>: <message>`. */
  name: string;
  /** The options, or undefined when there is nothing to run (--help printed the usage). */
  parse: (argv: string[]) => Options | undefined;
  run: (options: Options) => Promise<void>;
  /** More to print after the message of an error, if any. */
  explain?: (err: unknown) => string | undefined;
}

/** Runs a bench with the process's arguments and exits: 0, 1 on an error, 130 when interrupted. */
export async function runBench<Options>(bench: Bench<Options>): Promise<never> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  process.on('exit', () => void cleanup());
  let code = 0;
  try {
    const options = bench.parse(process.argv.slice(2));
    if (options !== undefined) await bench.run(options);
  } catch (err) {
    if (err instanceof Interrupted || interrupted) {
      progress('interrupted');
      code = 130;
    } else {
      progress(`${bench.name}: ${err instanceof Error ? err.message : String(err)}`);
      const more = bench.explain?.(err);
      if (more) progress(more);
      code = 1;
    }
  }
  await cleanup();
  process.exit(code);
}
