/**
 * A policy's redaction and alert rules, compiled once and applied by the agent to every command before it
 * leaves the node: `compileCommandRules(spec)` checks and compiles `spec.redact` and `spec.alerts` (every
 * problem named by its field, for the policy's Invalid condition), and `CommandRules.apply(command)` returns
 * the text to record, whether anything was replaced and which alerts fired.
 *
 * Every pattern, built-in or user-given, runs on V8's linear-time engine (linear-regexp.ts), so no pattern
 * and no command can make a match backtrack exponentially. That engine costs from tens of nanoseconds to
 * microseconds per character per pattern (in Node 20, hundreds of times V8's backtracking engine), so the
 * work is kept small: built-in shapes run only when their keywords appear in
 * the command, a user pattern that starts with a literal is searched from that literal's first occurrence
 * (and not at all without one), and a pattern contributes at most MAX_MATCHES replacements per command.
 *
 * Commands may hold lone surrogates U+DC80..U+DCFF standing for bytes that are not UTF-8 (see
 * agent/records/escaped-text.ts). Patterns run without the `u` flag, on UTF-16 code units, so these are
 * ordinary characters to them; everything outside a replaced span is copied unchanged, and a span is widened
 * rather than allowed to split a surrogate pair.
 */
import { SEVERITIES, type Severity } from '../../api/v1alpha1/containerauditpolicy.js';
import { BUILTIN_SHAPES, type SecretShape } from './builtins.js';
import { compileLinear, enableLinearRegExp, patternFeatures } from './linear-regexp.js';

export { enableLinearRegExp } from './linear-regexp.js';

/** What replaces a secret. */
export const REDACTED = '[REDACTED]';

/**
 * Replacements one pattern makes in one command. A search restarts after each match, and a pattern whose
 * matches are each followed by a long failed attempt (`x(?:.*y)?` on `xxxx...`) costs a scan of the rest of
 * the command per match; the cap keeps that to MAX_MATCHES + 1 scans. Past it the rest of the command, from
 * the next match on, is replaced whole: a secret is never let through for want of time.
 */
export const MAX_MATCHES = 32;

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

/** A character span [start, end) of a command to replace. */
interface Span {
  start: number;
  end: number;
}

/** A compiled search, with what lets it skip commands it cannot match. */
interface Search {
  /** Global (`g`) and linear (`l`): lastIndex is set before each use. */
  regexp: RegExp;
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
  regexp: RegExp;
  /** Group numbers of the kept context before and after the secret, 0 when there is none. */
  beforeGroup: number;
  afterGroup: number;
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
   * The same for a program's arguments. They are judged as the command line they make (joined by spaces),
   * so a secret that spans two arguments (`--password`, `hunter2`) is found as in a typed command; each
   * argument then loses exactly the part of a secret that falls in it, and the argument list keeps its shape.
   */
  applyArgv(args: readonly string[]): ArgvOutcome {
    const joined = args.join(' ');
    const spans = this.secretSpans(joined);
    const alerts = this.alertsOf(joined);
    if (spans.length === 0) return { args: [...args], redacted: false, alerts };
    let offset = 0;
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
    if (this.shapes.length > 0) {
      const lower = command.toLowerCase();
      for (const shape of this.shapes)
        if (gateMet(shape.shape.gate, lower)) collectShape(shape, command, spans);
    }
    for (const redaction of this.redactions) collectUser(redaction, command, spans);
    return spans;
  }

  /**
   * Alerts judge the command as typed, before redaction: a rule about a secret-bearing command (say
   * `curl -u admin:` or `mysql -p`) must still fire although its secret part is replaced, and what a rule
   * sees must not depend on which built-in shapes happen to be on.
   */
  private alertsOf(command: string): FiredAlert[] {
    const alerts: FiredAlert[] = [];
    for (const alert of this.alertRules)
      if (find(alert, command, 0) !== null) alerts.push({ name: alert.name, severity: alert.severity });
    return alerts;
  }
}

/** Checks and compiles a policy's rules; on failure, every problem with its field. */
export function compileCommandRules(spec: CommandRulesSpec): CompileResult {
  enableLinearRegExp();
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
    redactions.push({ ...compiled.search, secretGroup: patternFeatures(pattern).secretGroup });
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
    afterGroup = ++group;
  }
  const compiled = compileLinear(source, 'g');
  if (!compiled.ok) throw new Error(`built-in shape ${shape.name}: ${compiled.message}`);
  return { shape, regexp: compiled.regexp, beforeGroup, afterGroup };
}

function compileSearch(pattern: string): { ok: true; search: Search } | { ok: false; message: string } {
  const compiled = compileLinear(pattern, 'g');
  if (!compiled.ok) return compiled;
  return { ok: true, search: { regexp: compiled.regexp, prefix: literalPrefix(pattern) } };
}

function gateMet(gate: readonly string[][], lower: string): boolean {
  return gate.every((anyOf) => anyOf.some((word) => lower.includes(word)));
}

/** The next match at or after `from`, or null. */
function find(search: Search, text: string, from: number): RegExpExecArray | null {
  let start = from;
  if (search.prefix !== '') {
    start = text.indexOf(search.prefix, from);
    if (start < 0) return null;
  }
  search.regexp.lastIndex = start;
  return search.regexp.exec(text);
}

/** Adds the spans of every match, up to MAX_MATCHES, then the rest of the text. */
function collectMatches(
  text: string,
  spans: Span[],
  next: (from: number) => RegExpExecArray | null,
  secretOf: (match: RegExpExecArray) => Span | undefined,
): void {
  let from = 0;
  for (let count = 0; from <= text.length; count++) {
    const match = next(from);
    if (match === null) return;
    if (count === MAX_MATCHES) {
      spans.push({ start: match.index, end: text.length });
      return;
    }
    const span = secretOf(match);
    if (span !== undefined && span.end > span.start) spans.push(span);
    from = match.index + Math.max(match[0].length, 1);
  }
}

function collectShape(compiled: CompiledShape, text: string, spans: Span[]): void {
  const { regexp, beforeGroup, afterGroup } = compiled;
  collectMatches(
    text,
    spans,
    (from) => {
      regexp.lastIndex = from;
      return regexp.exec(text);
    },
    (match) => ({
      start: match.index + (beforeGroup ? (match[beforeGroup] ?? '').length : 0),
      end: match.index + match[0].length - (afterGroup ? (match[afterGroup] ?? '').length : 0),
    }),
  );
}

function collectUser(redaction: UserRedaction, text: string, spans: Span[]): void {
  collectMatches(
    text,
    spans,
    (from) => find(redaction, text, from),
    (match) => {
      const whole = { start: match.index, end: match.index + match[0].length };
      if (!redaction.secretGroup) return whole;
      const secret = match.groups?.['secret'];
      if (secret === undefined || secret === '') return undefined;
      // Without match indices (the linear engine refuses the `d` flag) the group is located by its text:
      // when it occurs more than once in the match, which one the group was is unknown, so all of the match
      // is replaced.
      const at = match[0].indexOf(secret);
      if (match[0].indexOf(secret, at + 1) >= 0) return whole;
      return { start: match.index + at, end: match.index + at + secret.length };
    },
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

/** Whether a pattern can match the empty string, judged on inputs that give every assertion its chance. */
function matchesEmpty(regexp: RegExp): boolean {
  for (const probe of ['', 'a', ' ', '-', 'a a', ' a ', 'a-a', '\n', 'a\nb']) {
    for (let from = 0; from <= probe.length; from++) {
      regexp.lastIndex = from;
      const match = regexp.exec(probe);
      if (match === null) break;
      if (match[0] === '') return true;
      from = match.index + match[0].length - 1;
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
