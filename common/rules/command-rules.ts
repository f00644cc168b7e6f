/**
 * A policy's redaction and alert rules, compiled once and applied by the agent to every command before it
 * leaves the node: `compileCommandRules(spec)` checks and compiles `spec.redact` and `spec.alerts` (every
 * problem named by its field, for the policy's Invalid condition), and `CommandRules.apply(command)` returns
 * the text to record, whether anything was replaced and which alerts fired.
 *
 * Redaction looks at a command three ways and replaces the union of what they find:
 * 1. the raw text, with the built-in shapes (builtins.ts) and the user's patterns: what it finds is exact;
 * 2. the words the shell would see (shell-words.ts), joined into one line (decoded-line.ts), with the same
 *    shapes and patterns, so that quoting cannot split a secret (`hun'ter2'`, `$'\x41KIA...'`); only when
 *    some word is quoted or escaped, as otherwise this line says what the raw text says;
 * 3. (built-ins only) the words by what they are (word-secrets.ts): options and positional arguments of the
 *    programs in programs.ts, clusters of short options, secret-named assignments, headers, pipelines into
 *    programs that read a password from their input.
 * 2 and 3 also apply to command substitutions, and to words that are scripts themselves (`bash -c '...'`,
 * `ssh host '...'`, `eval '...'`: see scriptArguments), down to MAX_NESTED levels. A span found in words is replaced in the command from the
 * first to the last source character that produced it.
 *
 * Every pattern, built-in or user-given, runs on RE2's linear-time automata (linear-regexp.ts, re2js), so no
 * pattern and no command can make a match backtrack exponentially. Those cost about 20 ns (the DFA that
 * answers whether there is a match) to hundreds of nanoseconds or microseconds (the NFA that finds where) per
 * character per pattern, so the work is kept small: built-in shapes run only when their keywords appear in
 * the command (all keywords are found in one pass, keywords.ts), a user pattern that starts with a literal is
 * not run on a command without that literal, positions are looked for only once the DFA has said there is a
 * match, and a pattern contributes at most MAX_MATCHES replacements per command. The lexer and the word rules
 * are plain code, linear in the command; all of it together reads a command at most (1 + MAX_NESTED) times
 * over, twice with the patterns.
 *
 * Commands may hold lone surrogates U+DC80..U+DCFF standing for bytes that are not UTF-8 (see
 * agent/records/escaped-text.ts). Patterns run on characters (code points): a lone surrogate is a character
 * of its own to them (`\x{DC80}`) and a surrogate pair is one character; everything outside a replaced span is
 * copied unchanged, and a span is widened rather than allowed to split a surrogate pair.
 */
import { SEVERITIES, type Severity } from '../../api/v1alpha1/containerauditpolicy.js';
import { BUILTIN_SHAPES, type SecretShape } from './builtins.js';
import {
  type DecodedLine,
  type Span,
  composeScript,
  decodedLine,
  isVerbatim,
  lineSpanToSource,
  scriptWords,
  wordSpanToSource,
} from './decoded-line.js';
import { Keywords } from './keywords.js';
import { type LinearMatch, type LinearRegExp, compileLinear } from './linear-regexp.js';
import { type ShellScript, type ShellWord, lexShell } from './shell-words.js';
import { readCommands } from './word-secrets.js';

/** What replaces a secret. */
export const REDACTED = '[REDACTED]';

/**
 * Replacements one pattern makes in one command. A search restarts after each match, and a pattern whose
 * matches are each followed by a long failed attempt (`x(?:.*y)?` on `xxxx...`) costs a scan of the rest of
 * the command per match; the cap keeps that to MAX_MATCHES + 1 scans. Past it the rest of the command, from
 * the next match on, is replaced whole: a secret is never let through for want of time.
 */
export const MAX_MATCHES = 32;

/**
 * How deep words that are scripts are read as scripts: `bash -c "ssh h 'mysql -p\\'x\\''"` is two levels.
 * Each level reads at most the text of the one above, so this bounds the work to (1 + MAX_NESTED) times.
 */
export const MAX_NESTED = 3;

/** A word worth reading as a script: it holds blanks, quotes or operators. */
const SCRIPT_LIKE = /[\s'"\\;|&<>()`]/;

/** The part of a ContainerAuditPolicy spec these rules read (the spec itself fits). */
export interface CommandRulesSpec {
  redact: { builtins: boolean; patterns: string[] };
  alerts: { name: string; pattern: string; severity: Severity }[];
}

export interface RuleError {
  /** The field at fault, as in `spec.redact.patterns[2]` or `spec.alerts[0].pattern`. */
  field: string;
  message: string;
}

export type CompileResult = { ok: true; rules: CommandRules } | { ok: false; errors: RuleError[] };

export interface FiredAlert {
  name: string;
  severity: Severity;
}

export interface RuleOutcome {
  /** The command with every secret replaced by REDACTED; the command itself when nothing was. */
  text: string;
  redacted: boolean;
  /** The alert rules that matched, most severe first, in policy order within a severity. */
  alerts: FiredAlert[];
}

export interface ArgvOutcome {
  args: string[];
  redacted: boolean;
  alerts: FiredAlert[];
}

/** A compiled search, with what lets it skip commands it cannot match. */
interface Search {
  regexp: LinearRegExp;
  /** A literal every match starts with: no match can start before its first occurrence. */
  prefix: string;
}

interface UserRedaction extends Search {
  /** Whether only the `secret` named group is replaced, not the whole match. */
  secretGroup: boolean;
}

interface CompiledAlert extends Search {
  name: string;
  severity: Severity;
}

export interface CompiledShape {
  shape: SecretShape;
  regexp: LinearRegExp;
  /** Group numbers of the kept context before and after the secret, 0 when there is none. */
  beforeGroup: number;
  afterGroup: number;
  /** The gate's keywords, as ids in gateKeywords(). */
  gate: number[][];
}

export class CommandRules {
  constructor(
    private readonly shapes: readonly CompiledShape[],
    private readonly redactions: readonly UserRedaction[],
    private readonly alertRules: readonly CompiledAlert[],
  ) {}

  apply(command: string): RuleOutcome {
    const spans = this.secretSpans(command);
    const alerts = this.alertsOf(command);
    if (spans.length === 0) return { text: command, redacted: false, alerts };
    return { text: replaceSpans(command, spans), redacted: true, alerts };
  }

  /**
   * The same for a program's arguments. They are judged as the words they are: the rules read them as one
   * command whose words are the arguments (so a secret that spans two arguments, `--password` and `hunter2`,
   * is found as in a typed command), and each argument then loses exactly the part of a secret that falls in
   * it, and the argument list keeps its shape.
   */
  applyArgv(args: readonly string[]): ArgvOutcome {
    const joined = args.join(' ');
    const words: ShellWord[] = [];
    let offset = 0;
    for (const text of args) {
      words.push({ text, start: offset, end: offset + text.length, quotes: [] });
      offset += text.length + 1;
    }
    const spans: Span[] = [];
    const script: ShellScript = {
      commands: [{ words, redirections: [], pipesTo: false }],
      subs: [],
      other: [],
    };
    this.wordSpans(joined, script, 0, true, spans);
    const alerts = this.alertsOf(joined);
    if (spans.length === 0) return { args: [...args], redacted: false, alerts };
    offset = 0;
    const out = args.map((arg) => {
      const local = spans
        .map((s) => ({ start: Math.max(0, s.start - offset), end: Math.min(arg.length, s.end - offset) }))
        .filter((s) => s.end > s.start);
      offset += arg.length + 1;
      return local.length > 0 ? replaceSpans(arg, local) : arg;
    });
    return { args: out, redacted: true, alerts };
  }

  private secretSpans(command: string): Span[] {
    const spans: Span[] = [];
    this.patternSpans(command, spans);
    if (this.shapes.length > 0 || this.redactions.length > 0)
      this.wordSpans(command, lexShell(command), 0, false, spans);
    return spans;
  }

  /** The shapes' and the user patterns' spans in `text`. */
  private patternSpans(text: string, spans: Span[]): void {
    if (this.shapes.length > 0) {
      const found = gateKeywords().find(text);
      if (found.length > 0) {
        const present = new Set(found);
        for (const shape of this.shapes)
          if (shape.gate.every((anyOf) => anyOf.some((id) => present.has(id))))
            collectShape(shape, text, spans);
      }
    }
    for (const redaction of this.redactions) collectUser(redaction, text, spans);
  }

  /**
   * What the words of `script` hold, as spans of `source`: the patterns on its decoded line (when that line
   * says more than the raw text, or always for `argv`), the word rules, then the same for its substitutions
   * and for its words that are scripts.
   */
  private wordSpans(source: string, script: ShellScript, depth: number, argv: boolean, spans: Span[]): void {
    for (const sub of script.subs) this.wordSpans(source, sub, depth, argv, spans);
    if (argv || scriptWords(script).some((w) => !isVerbatim(source, w))) {
      const line: DecodedLine = decodedLine(script, (w) => argv || !isVerbatim(source, w));
      const found: Span[] = [];
      this.patternSpans(line.text, found);
      for (const { start, end } of found)
        if (end > start) pushSpan(spans, lineSpanToSource(line, start, end));
    }
    const read = readCommands(script.commands);
    if (this.shapes.length > 0)
      for (const { word, start, end } of read.spans) pushSpan(spans, wordSpanToSource(word, start, end));
    if (depth >= MAX_NESTED) return;
    for (const word of read.scripts)
      if (SCRIPT_LIKE.test(word.text))
        this.wordSpans(source, composeScript(lexShell(word.text), word), depth + 1, false, spans);
  }

  /**
   * Alerts judge the command as typed, before redaction: a rule about a secret-bearing command (say
   * `curl -u admin:` or `mysql -p`) must still fire although its secret part is replaced, and what a rule
   * sees must not depend on which built-in shapes happen to be on.
   */
  private alertsOf(command: string): FiredAlert[] {
    const alerts: FiredAlert[] = [];
    for (const alert of this.alertRules)
      if ((alert.prefix === '' || command.includes(alert.prefix)) && alert.regexp.test(command))
        alerts.push({ name: alert.name, severity: alert.severity });
    return alerts;
  }
}

/** Checks and compiles a policy's rules; on failure, every problem with its field. */
export function compileCommandRules(spec: CommandRulesSpec): CompileResult {
  const errors: RuleError[] = [];
  const redactions: UserRedaction[] = [];
  spec.redact.patterns.forEach((pattern, i) => {
    const field = `spec.redact.patterns[${i}]`;
    const compiled = compileSearch(pattern);
    if (!compiled.ok) return errors.push({ field, message: compiled.message });
    if (matchesEmpty(compiled.search.regexp))
      return errors.push({
        field,
        message: 'matches the empty string: a redaction pattern must match at least one character',
      });
    redactions.push({ ...compiled.search, secretGroup: 'secret' in compiled.search.regexp.groupNames });
  });
  const alerts: CompiledAlert[] = [];
  spec.alerts.forEach(({ name, pattern, severity }, i) => {
    const compiled = compileSearch(pattern);
    if (!compiled.ok) return errors.push({ field: `spec.alerts[${i}].pattern`, message: compiled.message });
    alerts.push({ ...compiled.search, name, severity });
  });
  if (errors.length > 0) return { ok: false, errors };
  // Most severe first; sort is stable, so policy order holds within a severity.
  alerts.sort((a, b) => SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity));
  return {
    ok: true,
    rules: new CommandRules(spec.redact.builtins ? builtinShapes() : [], redactions, alerts),
  };
}

let compiledShapes: CompiledShape[] | undefined;
let keywords: Keywords | undefined;

/** Every keyword of the built-in shapes' gates, found in one pass. */
function gateKeywords(): Keywords {
  keywords ??= new Keywords(BUILTIN_SHAPES.flatMap((shape) => shape.gate.flat()));
  return keywords;
}

/** The built-in shapes, compiled once per process. */
export function builtinShapes(): readonly CompiledShape[] {
  compiledShapes ??= BUILTIN_SHAPES.map(compileShape);
  return compiledShapes;
}

function compileShape(shape: SecretShape): CompiledShape {
  let source = '';
  let group = 0;
  let beforeGroup = 0;
  let afterGroup = 0;
  if (shape.before !== undefined) {
    source += `(${shape.before})`;
    beforeGroup = ++group;
  }
  source += `(?:${shape.secret})`;
  if (shape.after !== undefined) {
    source += `(${shape.after})`;
    afterGroup = group + 1;
  }
  const compiled = compileLinear(source);
  if (!compiled.ok) throw new Error(`built-in shape ${shape.name}: ${compiled.message}`);
  const gate = shape.gate.map((anyOf) => anyOf.map((word) => gateKeywords().id(word)));
  return { shape, regexp: compiled.regexp, beforeGroup, afterGroup, gate };
}

function compileSearch(pattern: string): { ok: true; search: Search } | { ok: false; message: string } {
  const compiled = compileLinear(pattern);
  if (!compiled.ok) return compiled;
  return { ok: true, search: { regexp: compiled.regexp, prefix: literalPrefix(pattern) } };
}

/**
 * Adds the spans of every match of `regexp` in `text` that starts at or after `first`, up to MAX_MATCHES,
 * then the rest of the text. Where the matches are is looked for only when the DFA says there is one: most
 * commands match no pattern.
 */
function collectMatches(
  regexp: LinearRegExp,
  text: string,
  first: number,
  spans: Span[],
  secretOf: (match: LinearMatch) => Span | undefined,
): void {
  if (!regexp.test(text)) return;
  let from = first;
  for (let count = 0; from <= text.length; count++) {
    const match = regexp.exec(text, from);
    if (match === null) return;
    if (count === MAX_MATCHES) {
      spans.push({ start: match.start, end: text.length });
      return;
    }
    const span = secretOf(match);
    if (span !== undefined && span.end > span.start) spans.push(span);
    from = Math.max(match.end, match.start + 1);
  }
}

function collectShape(compiled: CompiledShape, text: string, spans: Span[]): void {
  const { regexp, beforeGroup, afterGroup } = compiled;
  collectMatches(regexp, text, 0, spans, (match) => ({
    start: (beforeGroup ? match.group(beforeGroup)?.end : undefined) ?? match.start,
    end: (afterGroup ? match.group(afterGroup)?.start : undefined) ?? match.end,
  }));
}

function collectUser(redaction: UserRedaction, text: string, spans: Span[]): void {
  // No match can start before the first occurrence of the pattern's literal prefix, nor exist without it.
  const first = text.indexOf(redaction.prefix);
  if (first < 0) return;
  collectMatches(redaction.regexp, text, first, spans, (match) =>
    // Only the group named secret, when there is one; nothing when it took no part in the match.
    redaction.secretGroup ? match.group('secret') : match,
  );
}

const isHigh = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
const isLow = (code: number): boolean => code >= 0xdc00 && code <= 0xdfff;

/** The text with each span, merged with those it overlaps or touches, replaced by REDACTED. */
function replaceSpans(text: string, spans: Span[]): string {
  spans.sort((a, b) => a.start - b.start);
  let out = '';
  let copied = 0;
  let current: Span | undefined;
  const flush = (span: Span): void => {
    let { start, end } = span;
    if (start > 0 && isLow(text.charCodeAt(start)) && isHigh(text.charCodeAt(start - 1))) start--;
    if (end < text.length && isLow(text.charCodeAt(end)) && isHigh(text.charCodeAt(end - 1))) end++;
    start = Math.max(start, copied);
    out += text.slice(copied, start) + REDACTED;
    copied = end;
  };
  for (const span of spans) {
    if (current !== undefined && span.start <= current.end) current.end = Math.max(current.end, span.end);
    else {
      if (current !== undefined) flush(current);
      current = { ...span };
    }
  }
  if (current !== undefined) flush(current);
  return out + text.slice(copied);
}

function pushSpan(spans: Span[], span: Span): void {
  if (span.end > span.start) spans.push(span);
}

/** Whether a pattern can match the empty string, judged on inputs that give every assertion its chance. */
function matchesEmpty(regexp: LinearRegExp): boolean {
  for (const probe of ['', 'a', ' ', '-', 'a a', ' a ', 'a-a', '\n', 'a\nb']) {
    for (let from = 0; from <= probe.length; from++) {
      const match = regexp.exec(probe, from);
      if (match === null) break;
      if (match.end === match.start) return true;
      from = match.end - 1;
    }
  }
  return false;
}

/**
 * A literal that every match of `pattern` starts with ('' when there is none): the characters before the
 * first construct that is not a plain character, when the pattern has no alternative at its top level.
 */
export function literalPrefix(pattern: string): string {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return '';
  }
  let prefix = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    let literal: string;
    let width = 1;
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      // An escaped punctuation character is itself; letters and digits are classes, assertions or codes.
      if (!/^[!-/:-@[-`{-~]$/.test(next)) break;
      literal = next;
      width = 2;
    } else if ('^$.[]()|*+?{}'.includes(c)) break;
    else literal = c;
    // A quantifier makes the character optional or repeated: the prefix ends before it.
    const after = pattern[i + width];
    if (after !== undefined && '*+?{'.includes(after)) break;
    prefix += literal;
    i += width - 1;
  }
  return prefix;
}
