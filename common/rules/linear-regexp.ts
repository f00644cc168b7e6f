/**
 * Regular expressions that run in time linear in their input, whatever the pattern: V8's experimental
 * engine (an NFA simulation without backtracking), selected per regexp by the `l` flag. Policies come from
 * users and commands from whoever has a shell, so a pattern such as `(a+)+$` must not be able to stall the
 * agent; with `l` it cannot, by construction, rather than by a timeout.
 *
 * What Node 20.20 (V8 11.3) does, checked by the tests beside this file:
 * - The `l` flag is refused ("Invalid flags") unless `--enable-experimental-regexp-engine` is set. Setting it
 *   at run time with `v8.setFlagsFromString` works for regexps constructed afterwards (the flag is read when
 *   a pattern's flags are parsed), so no NODE_OPTIONS and no re-exec are needed. Only `RegExp.prototype.linear`
 *   is missing then (it is installed when a context is created); `flags` does contain `l`.
 * - The engine refuses, at construction, with "Cannot be executed in linear time": backreferences,
 *   lookahead and lookbehind, the `i`, `u`, `v` and `d` flags, and counted repetition whose count (multiplied
 *   through nesting) exceeds 16: `x{16}` and `x{16}x{16}` compile, `x{17}`, `x{16,}` and `(x{4}){5}` do not.
 * - It is slow next to V8's backtracking engine: about 40 ns per character for a simple pattern on a short
 *   input, 100-300 ns on inputs of 4 KiB and more, several times that for patterns with many alternatives
 *   alive at once (measured on Node 20.20). Callers must avoid running patterns needlessly.
 * - `--enable-experimental-regexp-engine-on-excessive-backtracks` (with `--regexp-backtracks-before-fallback=N`,
 *   default 50000) also works when set at run time, even for regexps created before: an ordinary regexp
 *   backtracks up to N steps, then that match is re-run on the linear engine. We do not rely on it: it is
 *   process-wide, it bounds steps per match rather than guaranteeing anything per pattern, and it does nothing
 *   for patterns the linear engine refuses (those keep backtracking).
 *
 * Linear is per search. Replacing every match repeats the search from each match's end, and a pattern whose
 * match can be followed by a long failing attempt (`x(?:.*y)?` on `xxxx...`) costs one scan per match: the
 * callers bound the number of matches they collect (see MAX_MATCHES in command-rules.ts).
 */
import { setFlagsFromString } from 'node:v8';

/** The flag that selects V8's linear-time engine. A constant so that linters do not judge it. */
const LINEAR = 'l';

let enabled = false;

function linearFlagAccepted(): boolean {
  try {
    new RegExp('', LINEAR);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes the `l` flag available (idempotent). Call it before compiling patterns; the agent's entry point calls
 * it at start-up, and compileCommandRules calls it too. Throws when this V8 has no linear engine at all.
 */
export function enableLinearRegExp(): void {
  if (enabled) return;
  if (!linearFlagAccepted()) setFlagsFromString('--enable-experimental-regexp-engine');
  if (!linearFlagAccepted())
    throw new Error(`this Node.js (V8 ${process.versions.v8}) has no linear-time regular expression engine`);
  enabled = true;
}

/** Whether a regexp runs on the linear-time engine. */
export function isLinear(regexp: RegExp): boolean {
  return regexp.flags.includes(LINEAR);
}

export type LinearCompileResult = { ok: true; regexp: RegExp } | { ok: false; message: string };

/**
 * Compiles `source` for the linear engine with `flags` (some of `g`, `m`, `s`, `y`), or says in words a
 * policy author can act on why it cannot be.
 */
export function compileLinear(source: string, flags = ''): LinearCompileResult {
  enableLinearRegExp();
  const re2Only = re2OnlySyntax(source);
  if (re2Only) return { ok: false, message: re2Only };
  try {
    new RegExp(source, flags);
  } catch (error) {
    return { ok: false, message: `not a valid regular expression: ${syntaxReason(error)}` };
  }
  try {
    return { ok: true, regexp: new RegExp(source, flags + LINEAR) };
  } catch {
    return { ok: false, message: linearRefusal(source) };
  }
}

/** V8's reason without the pattern it repeats ("Invalid regular expression: /x/: Unterminated group"). */
function syntaxReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const colon = message.lastIndexOf(': ');
  return colon >= 0 ? message.slice(colon + 2) : message;
}

/** One pass over a pattern's syntax: what it uses that matters to us. */
interface PatternFeatures {
  backreference: boolean;
  lookaround: boolean;
  /** The largest count in `{n}`, `{n,m}` or `{n,}` (which counts n + 1). */
  largestCount: number;
  /** Whether there is a group named `secret`. */
  secretGroup: boolean;
  /** The first construct RE2 reads differently from JavaScript, if any. */
  re2Only?: string;
}

const RE2_ONLY_ESCAPES: Record<string, string> = {
  A: '\\A (use ^)',
  z: '\\z (use $)',
  Z: '\\Z',
  Q: '\\Q...\\E',
  E: '\\Q...\\E',
  C: '\\C',
  p: '\\p{...} classes',
  P: '\\P{...} classes',
};

export function patternFeatures(source: string): PatternFeatures {
  const features: PatternFeatures = {
    backreference: false,
    lookaround: false,
    largestCount: 0,
    secretGroup: false,
  };
  const re2Only = (what: string): void => {
    features.re2Only ??= what;
  };
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    const next = source[i + 1] ?? '';
    if (c === '\\') {
      if (next in RE2_ONLY_ESCAPES) re2Only(RE2_ONLY_ESCAPES[next]!);
      else if (!inClass && /[1-9]/.test(next)) features.backreference = true;
      else if (!inClass && next === 'k' && source[i + 2] === '<') features.backreference = true;
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
      else if (c === '[' && next === ':' && /^\[:[a-z]+:\]/.test(source.slice(i)))
        re2Only('[[:name:]] classes');
    } else if (c === '[') {
      inClass = true;
      // A `]` right after `[` or `[^` is a literal in RE2 but closes an empty class in JavaScript.
      const first = next === '^' ? source[i + 2] : next;
      if (first === ']') re2Only('a ] first in a class');
    } else if (c === '(' && next === '?') {
      const rest = source.slice(i + 2, i + 12);
      if (/^(=|!|<=|<!)/.test(rest)) features.lookaround = true;
      else if (rest.startsWith('<secret>')) features.secretGroup = true;
      else if (/^(P<|P=|[imsU-]+[):])/.test(rest))
        re2Only(rest.startsWith('P') ? '(?P<name>...) groups' : 'inline flags (?i)');
    } else if (c === '{') {
      const count = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
      // `{n,}` is n copies and a star: n + 1 as far as the engine's limit goes.
      const open = count?.[2] !== undefined && count[3] === '';
      if (count)
        features.largestCount = Math.max(
          features.largestCount,
          Number(count[1]) + (open ? 1 : 0),
          Number(count[3] || 0),
        );
    }
  }
  return features;
}

function re2OnlySyntax(source: string): string | undefined {
  const { re2Only } = patternFeatures(source);
  return re2Only === undefined
    ? undefined
    : `${re2Only} is RE2 syntax that JavaScript reads differently: patterns must use the subset shared with JavaScript`;
}

function linearRefusal(source: string): string {
  const features = patternFeatures(source);
  if (features.backreference || features.lookaround)
    return 'backreferences and lookaround are not supported: patterns are RE2 syntax';
  if (features.largestCount > 16)
    return (
      'counted repetition above 16 is not supported by the linear-time engine (nested counts multiply): ' +
      'split it, e.g. x{16}x{16} for x{32}, or use + or *'
    );
  return 'cannot be run in linear time: patterns are RE2 syntax, without backreferences or lookaround';
}
