/**
 * A script's words as one line of text for the secret shapes and user patterns to run on (`curl -u bob:pw x`
 * from `curl -u bob:'pw' "x"`), and the way back: a span of that line, or of one word, to the span of the
 * command that produced it. Pure.
 *
 * In the line, a word that was quoted and holds blanks, quotes, backslashes or operators is written in single
 * quotes (double quotes, with backslashes, if it holds a single quote), so that the shapes see where it ends
 * as they would in the raw text; other words are written bare, so `hun'ter2'` reads `hunter2`.
 *
 * Back in the command, a span grows over quote characters that hold nothing but what it replaces, so
 * `--password 'a b'` becomes `--password [REDACTED]` and `PASSWORD=''x` becomes `PASSWORD=[REDACTED]`, while
 * `-u 'bob:pw'` stays `-u 'bob:[REDACTED]'`. Growing never uncovers anything: a span already covers every
 * source character between the first and the last character of what it replaces.
 */
import { type QuotedPart, type ShellScript, type ShellWord, sourceEnd, sourceStart } from './shell-words.js';

/** A span [start, end) of the command. */
export interface Span {
  start: number;
  end: number;
}

/** One piece of a decoded line: a word as written there, or a separator or operator standing for `source`. */
interface Piece {
  text: string;
  word?: ShellWord;
  /** The quote a word is written in, if any. */
  quote?: "'" | '"';
  /** A separator's or operator's source span. */
  start: number;
  end: number;
}

export interface DecodedLine {
  text: string;
  /** The line's map to the source, built on first use (most lines have nothing to map back). */
  map(): LineMap;
}

export interface LineMap {
  /** Source span of each code unit of text; between words, the gap between them. */
  from: Int32Array;
  to: Int32Array;
  /** Which word (index into words) each code unit belongs to; -1 between words. */
  wordAt: Int32Array;
  words: ShellWord[];
}

/** Whether a word is written as it reads (no quotes, no escapes): then the raw text holds it already. */
export const isVerbatim = (source: string, word: ShellWord): boolean =>
  word.from === undefined ||
  (word.end - word.start === word.text.length && source.slice(word.start, word.end) === word.text);

/** Every word of a script's own commands (not its substitutions'), redirection targets included. */
export function scriptWords(script: ShellScript): ShellWord[] {
  const out: ShellWord[] = [];
  for (const command of script.commands) {
    out.push(...command.words);
    for (const r of command.redirections) if (r.target !== undefined) out.push(r.target);
  }
  return out;
}

/** Characters that make a word's text read differently when it stands bare in a line. */
const NEEDS_QUOTES = /[\s'"\\;|&<>()`]/;

/**
 * The script's words joined by spaces, commands by ` ; ` or ` | ` (the shapes stop at those), redirections
 * by their operator; `quote` says which words were quoted in the command (see the module's comment).
 */
export function decodedLine(script: ShellScript, quote: (word: ShellWord) => boolean): DecodedLine {
  const pieces: Piece[] = [];
  let lastEnd = script.commands[0]?.words[0]?.start ?? 0;
  const separator = (text: string): void => {
    pieces.push({ text, start: lastEnd, end: lastEnd });
  };
  script.commands.forEach((command, i) => {
    if (i > 0) separator(script.commands[i - 1]!.pipesTo ? ' | ' : ' ; ');
    const { words, redirections } = command;
    // Words and redirections in source order (both lists are in order): a merge.
    let w = 0;
    let r = 0;
    let first = true;
    while (w < words.length || r < redirections.length) {
      if (!first) separator(' ');
      first = false;
      const word = words[w];
      const redirection = redirections[r];
      if (word !== undefined && (redirection === undefined || word.start < redirection.start)) {
        pieces.push(wordPiece(word, quote(word)));
        lastEnd = word.end;
        w++;
        continue;
      }
      pieces.push({ text: redirection!.op, start: redirection!.start, end: redirection!.end });
      lastEnd = redirection!.end;
      if (redirection!.target !== undefined) {
        separator(' ');
        pieces.push(wordPiece(redirection!.target, quote(redirection!.target)));
        lastEnd = redirection!.target.end;
      }
      r++;
    }
  });
  let map: LineMap | undefined;
  return { text: pieces.map((p) => p.text).join(''), map: () => (map ??= mapOf(pieces)) };
}

function wordPiece(word: ShellWord, quoted: boolean): Piece {
  const { text } = word;
  if (!quoted || !NEEDS_QUOTES.test(text)) return { text, word, start: word.start, end: word.end };
  if (!text.includes("'")) return { text: `'${text}'`, word, quote: "'", start: word.start, end: word.end };
  return { text: `"${text.replace(/["\\]/g, '\\$&')}"`, word, quote: '"', start: word.start, end: word.end };
}

function mapOf(pieces: readonly Piece[]): LineMap {
  const length = pieces.reduce((n, p) => n + p.text.length, 0);
  const from = new Int32Array(length);
  const to = new Int32Array(length);
  const wordAt = new Int32Array(length).fill(-1);
  const words: ShellWord[] = [];
  // A separator stands for the source from the end of what precedes it to the start of what follows it.
  const following: number[] = new Array<number>(pieces.length);
  let next = pieces.at(-1)?.end ?? 0;
  for (let k = pieces.length - 1; k >= 0; k--) {
    following[k] = next;
    const p = pieces[k]!;
    if (p.word !== undefined || p.end > p.start) next = p.start;
  }
  let at = 0;
  pieces.forEach((piece, k) => {
    const { word, text } = piece;
    if (word === undefined) {
      const stop = piece.end > piece.start ? piece.end : Math.max(piece.start, following[k]!);
      from.fill(piece.start, at, at + text.length);
      to.fill(stop, at, at + text.length);
      at += text.length;
      return;
    }
    const index = words.length;
    words.push(word);
    wordAt.fill(index, at, at + text.length);
    if (piece.quote !== undefined) {
      // The opening quote stands for the word's start, the closing one for its end.
      from[at] = to[at] = word.start;
      at++;
    }
    for (let i = 0; i < word.text.length; i++) {
      const c = word.text[i];
      if (piece.quote === '"' && (c === '"' || c === '\\')) {
        from[at] = sourceStart(word, i);
        to[at] = sourceEnd(word, i);
        at++;
      }
      from[at] = sourceStart(word, i);
      to[at] = sourceEnd(word, i);
      at++;
    }
    if (piece.quote !== undefined) {
      from[at] = to[at] = word.end;
      at++;
    }
  });
  return { from, to, wordAt, words };
}

/** The command span of line span [start, end). */
export function lineSpanToSource(line: DecodedLine, start: number, end: number): Span {
  const { from, to, wordAt, words } = line.map();
  const span = { start: from[start]!, end: to[end - 1]! };
  const first = wordAt[start]!;
  const last = wordAt[end - 1]!;
  if (first >= 0) growOverQuotes(words[first]!.quotes, span);
  if (last >= 0 && last !== first) growOverQuotes(words[last]!.quotes, span);
  return span;
}

/** The command span of characters [start, end) of a word's text. */
export function wordSpanToSource(word: ShellWord, start: number, end: number): Span {
  const span = { start: sourceStart(word, start), end: sourceEnd(word, end - 1) };
  growOverQuotes(word.quotes, span);
  return span;
}

/** The last part whose open is before `at` (parts are in order and do not overlap), or -1. */
function partBefore(parts: readonly QuotedPart[], at: number): number {
  let low = 0;
  let high = parts.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (parts[mid]!.open < at) low = mid + 1;
    else high = mid;
  }
  return low - 1;
}

const isEmpty = (p: QuotedPart): boolean => p.contentEnd <= p.contentStart;

/** Grows `span` over the delimiters of quoted parts it holds all of, and over empty parts next to it. */
function growOverQuotes(parts: readonly QuotedPart[], span: Span): void {
  if (parts.length === 0) return;
  let i = partBefore(parts, span.start);
  while (i >= 0) {
    const p = parts[i]!;
    const whole = !isEmpty(p) && p.contentStart === span.start && p.contentEnd <= span.end;
    if (!whole && !(isEmpty(p) && p.close === span.start)) break;
    span.start = p.open;
    i--;
  }
  i = partBefore(parts, span.end);
  // The part holding the span's end, then empty parts right after it.
  if (i >= 0) {
    const p = parts[i]!;
    if (!isEmpty(p) && p.contentEnd === span.end && p.contentStart >= span.start) span.end = p.close;
  }
  for (i++; i < parts.length; i++) {
    const p = parts[i]!;
    if (!(isEmpty(p) && p.open === span.end)) break;
    span.end = p.close;
  }
}

/**
 * A script lexed from a word's text, in the coordinates of the command the word is in: `bash -c 'mysql
 * -p"x"'` has the word `mysql -p"x"`, itself a script.
 */
export function composeScript(script: ShellScript, word: ShellWord): ShellScript {
  const length = word.text.length;
  const start = (p: number): number =>
    p < length ? sourceStart(word, p) : length > 0 ? sourceEnd(word, length - 1) : word.start;
  const end = (p: number): number => (p > 0 ? sourceEnd(word, Math.min(p, length) - 1) : start(0));
  const mapWord = (w: ShellWord): ShellWord => {
    const from: number[] = [];
    const to: number[] = [];
    for (let i = 0; i < w.text.length; i++) {
      from.push(start(sourceStart(w, i)));
      to.push(end(sourceEnd(w, i)));
    }
    return {
      text: w.text,
      start: start(w.start),
      end: end(w.end),
      from,
      to,
      quotes: w.quotes.map((q) => ({
        open: start(q.open),
        close: end(q.close),
        contentStart: start(q.contentStart),
        contentEnd: end(q.contentEnd),
      })),
    };
  };
  const mapScript = (s: ShellScript): ShellScript => ({
    commands: s.commands.map((c) => ({
      words: c.words.map(mapWord),
      redirections: c.redirections.map((r) => ({
        op: r.op,
        start: start(r.start),
        end: end(r.end),
        ...(r.target ? { target: mapWord(r.target) } : {}),
      })),
      pipesTo: c.pipesTo,
    })),
    subs: s.subs.map(mapScript),
    other: s.other.map((o) => ({ start: start(o.start), end: end(o.end) })),
  });
  return mapScript(script);
}
