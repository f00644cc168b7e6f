/**
 * Regular expressions that run in time linear in their input, whatever the pattern: RE2's automata (a lazy
 * DFA, a one-pass matcher, a bounded bit-state backtracker and a Pike NFA, each linear in the input), in
 * re2js, a port of RE2 to JavaScript with no native code and no dependencies, pinned to one exact version.
 * Policies come from users and commands from whoever has a shell, so a pattern such as `(a+)+$` must not be
 * able to stall the agent; here it cannot, by construction, rather than by a timeout.
 *
 * This module used to run patterns on V8's experimental linear engine (the `l` flag, switched on at run
 * time with `v8.setFlagsFromString('--enable-experimental-regexp-engine')`). What that engine accepts changed
 * between Node 20 (V8 11.3) and Node 24 (V8 13.6) without notice: Node 24 accepts `x{16,}` and, without the
 * `g` flag, lookbehind, which Node 20 refused. The measurements and the reasons for the move are in
 * docs/adr/0008-linear-time-regular-expressions.md; in short, the rule set costs less per line on re2js, its
 * DFA says whether a hostile line matches tens to hundreds of times faster, its dialect is RE2's and fixed by
 * the version in package-lock.json, and nothing depends on a V8 flag any more.
 *
 * The dialect is RE2 syntax (https://github.com/google/re2/wiki/Syntax), on the command's characters (code
 * points; a lone surrogate, which stands for a byte that is not UTF-8, is a character of its own: `\x{DC80}`).
 * What policy authors meet, with the reason compileLinear gives:
 * - no backreferences and no lookaround (`\1`, `\k<n>`, `(?=`, `(?!`, `(?<=`, `(?<!`);
 * - counted repetition up to 1000, nested counts multiplied (`(x{100}){100}` is refused);
 * - a compiled program of at most MAX_PROGRAM_SIZE instructions, which bounds the work per character;
 * - JavaScript-only syntax is refused, not reinterpreted: `\uXXXX` (write `\x{XXXX}`), `\cX`, identity escapes
 *   of letters (`\e`, `\q`);
 * - `\s` is ASCII (`[\t\n\f\r ]`, not JavaScript's Unicode spaces; builtins.ts spells those out where it
 *   needs them), `\d`, `\w` and `\b` are ASCII, `.` is any character but `\n`; inline flags `(?i)`, `(?s)`,
 *   `(?m)`, `(?U)` work.
 *
 * Linear is per search. Collecting every match repeats the search from each match's end, and a pattern whose
 * match can be followed by a long failing attempt (`x(?:.*y)?` on `xxxx...`) costs one scan per match: the
 * callers bound the number of matches they collect (see MAX_MATCHES in command-rules.ts).
 */
import { type Matcher, RE2JS, RE2JSSyntaxException } from 're2js';

/**
 * The largest compiled program accepted, in RE2 instructions. The NFA's work per character grows with the
 * program, so this bounds what one pattern can cost on a hostile line. Every pattern within the API's 1,024
 * characters stays under it unless counted repetition multiplies it (a character is at most about 1.5
 * instructions); the largest built-in shape is about 500.
 */
export const MAX_PROGRAM_SIZE = 2000;

/**
 * The memory each pattern's lazy DFA may keep, in bytes (re2js's own default is 8 MiB). The DFA caches the
 * states it meets; a pattern such as `[ab]*a[ab]{20}c` has millions and a command can walk through them, so
 * without a small budget the agent's 42 built-in and up to 128 user patterns could hold over a gigabyte.
 * Past the budget the DFA drops its cache and starts again, or leaves the search to the NFA: still linear.
 */
export const DFA_MAX_MEMORY = 256 * 1024;

/** Where a match or a group is in the text, as UTF-16 offsets like String.prototype.slice takes. */
export interface MatchSpan {
  start: number;
  end: number;
}

/** One match: its span and its groups'. */
export interface LinearMatch extends MatchSpan {
  /** The span of a group, by number or name; undefined when the group took no part in the match. */
  group(id: number | string): MatchSpan | undefined;
}

/** A compiled pattern. It has no lastIndex: what a call returns depends on its arguments alone. */
export class LinearRegExp {
  /** Named groups, to their numbers. */
  readonly groupNames: Readonly<Record<string, number>>;

  constructor(
    readonly source: string,
    private readonly re: RE2JS,
  ) {
    this.groupNames = re.namedGroups();
  }

  /** Whether the pattern matches anywhere in `text` (the DFA alone, without positions: the cheapest). */
  test(text: string): boolean {
    return this.re.test(text);
  }

  /**
   * The leftmost match that starts at or after `from`, or null. Assertions see the text before `from`. Finding
   * where a match is takes the slower automata: when no match is the likely answer, ask test() first.
   */
  exec(text: string, from = 0): LinearMatch | null {
    if (from > text.length) return null;
    const matcher = this.re.matcher(text);
    if (!matcher.find(from)) return null;
    return {
      start: matcher.start(),
      end: matcher.end(),
      group: (id) => groupSpan(matcher, id),
    };
  }
}

function groupSpan(matcher: Matcher, id: number | string): MatchSpan | undefined {
  const start = matcher.start(id);
  return start < 0 ? undefined : { start, end: matcher.end(id) };
}

export type LinearCompileResult = { ok: true; regexp: LinearRegExp } | { ok: false; message: string };

/** Compiles `source` (RE2 syntax), or says in words a policy author can act on why it cannot be. */
export function compileLinear(source: string): LinearCompileResult {
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (error) {
    return { ok: false, message: refusal(source, error) };
  }
  const size = re.programSize();
  if (size > MAX_PROGRAM_SIZE)
    return {
      ok: false,
      message:
        `too large: it compiles to ${size} instructions, at most ${MAX_PROGRAM_SIZE} are accepted ` +
        '(counted repetition copies what it repeats: use + or * where the exact count does not matter)',
    };
  limitDfaMemory(re);
  return { ok: true, regexp: new LinearRegExp(source, re) };
}

/**
 * Gives the pattern a DFA with a budget of DFA_MAX_MEMORY. re2js has no option for it on RE2JS.compile, so
 * this replaces the DFA it would create lazily with one of the same class, before any search has used it;
 * linear-regexp.test.ts checks that it took (re2js is pinned to an exact version).
 */
function limitDfaMemory(re: RE2JS): void {
  const re2 = re.re2();
  const Dfa = re2.dfa.constructor as new (prog: unknown, maxMem: number) => typeof re2.dfa;
  re2.lazyDFA = new Dfa(re2.prog, DFA_MAX_MEMORY);
}

/** What a pattern uses that RE2 does not have, read from its text (after RE2 refused it). */
export interface PatternFeatures {
  backreference: boolean;
  lookaround: boolean;
  /** The first JavaScript-only escape, if any, as written (`\u`, `\c`). */
  javaScriptEscape?: string;
}

export function patternFeatures(source: string): PatternFeatures {
  const features: PatternFeatures = { backreference: false, lookaround: false };
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    const next = source[i + 1] ?? '';
    if (c === '\\') {
      if (next === 'Q') {
        // \Q...\E is literal text.
        const end = source.indexOf('\\E', i + 2);
        i = end < 0 ? source.length : end + 1;
        continue;
      }
      if (!inClass && /[1-9]/.test(next)) features.backreference = true;
      else if (!inClass && next === 'k' && source[i + 2] === '<') features.backreference = true;
      else if (next === 'u' || next === 'c') features.javaScriptEscape ??= `\\${next}`;
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
      // A `]` right after `[` or `[^` is a literal in RE2.
      if (next === ']') i++;
      else if (next === '^' && source[i + 2] === ']') i += 2;
    } else if (c === '(' && next === '?' && /^(=|!|<=|<!)/.test(source.slice(i + 2, i + 4)))
      features.lookaround = true;
  }
  return features;
}

function refusal(source: string, error: unknown): string {
  const features = patternFeatures(source);
  if (features.backreference || features.lookaround)
    return 'backreferences and lookaround are not supported: patterns are RE2 syntax';
  if (!(error instanceof RE2JSSyntaxException))
    return `not a valid regular expression: ${error instanceof Error ? error.message : String(error)}`;
  const reason = error.getDescription();
  const at = error.getPattern();
  const where = at ? ` at \`${at}\`` : '';
  if (reason === 'invalid repeat count')
    return `counted repetition above 1000 is not supported, nested counts multiplied${where}: use + or * where the exact count does not matter`;
  if (features.javaScriptEscape === '\\u')
    return 'not a valid regular expression: \\uXXXX is JavaScript syntax, patterns are RE2 syntax: write \\x{XXXX}';
  if (features.javaScriptEscape === '\\c')
    return 'not a valid regular expression: \\cX is JavaScript syntax, patterns are RE2 syntax: write \\x{01} for \\cA';
  return `not a valid regular expression: ${reason}${where}`;
}
