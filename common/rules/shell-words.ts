/**
 * The words a shell would see in a command line, each mapped back to the characters it came from. Redaction
 * looks for secrets in these words rather than in the raw text, so quoting cannot hide one: `hun'ter2'`,
 * `PASSWORD=''x`, `$'\x68unter2'` and `Authorization:\ Bearer\ x` are the words `hunter2`, `PASSWORD=x`,
 * `hunter2` and `Authorization: Bearer x`. A secret found at characters [a, b) of a word's text is replaced in
 * the command at [from[a], to[b - 1]): every source character that produced any of it, quotes and escapes in
 * between included.
 *
 * The grammar is Bash's, as far as words go (checked against /bin/bash by shell-words.bash.test.ts):
 * - blanks separate words; `|` `|&` `||` `&` `&&` `;` `;;` `(` `)` and newlines separate commands; `<` `>` and
 *   friends (`>>`, `2>&1`, `&>`, `<<<`, `<<`, `<<-`, `<>`, `>|`) are redirections whose target is the next
 *   word; `<<` opens a here-document whose body starts on the next line;
 * - `'...'` is literal; `"..."` (and `$"..."`) removes the backslash before `$ \` " \\` and newline and keeps
 *   it before anything else; `$'...'` decodes ANSI-C escapes (`\n`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`, `\NNN`
 *   octal, `\cX`; a NUL ends the string's value, as in Bash); outside quotes a backslash quotes the next
 *   character and backslash-newline disappears;
 * - `#` at the start of a word starts a comment;
 * - expansions are kept as typed: `$VAR`, `${...}` and `$((...))` are copied, `$(...)`, backquotes and `<(...)`
 *   are copied into their word and lexed as scripts of their own (`subs`);
 * - an unterminated quote or substitution runs to the end of the text (a line may be the first of several).
 *
 * No globbing, brace or tilde expansion: the words are what the program would get if none applied. Pure and
 * linear in the length of the text; substitutions nested deeper than MAX_DEPTH are copied without being
 * lexed.
 */

/** A quoted part of a word: source [open, close) with its delimiters, [contentStart, contentEnd) without. */
export interface QuotedPart {
  open: number;
  close: number;
  contentStart: number;
  contentEnd: number;
}

export interface ShellWord {
  /** The word after quote removal, expansions as typed. */
  text: string;
  /** Source span of the word, quotes included. */
  start: number;
  end: number;
  /**
   * Source span [from[i], to[i]) of text's code unit i; absent when the word is written as it reads (no
   * quotes, no escapes), when text[i] is source[start + i]. See sourceStart and sourceEnd.
   */
  from?: number[];
  to?: number[];
  /** The quoted parts, in order. */
  quotes: QuotedPart[];
}

export interface Redirection {
  /** `>`, `2>&`, `<<<`, `<<`, ... (with its file descriptor, if given). */
  op: string;
  start: number;
  end: number;
  target?: ShellWord;
}

export interface SimpleCommand {
  words: ShellWord[];
  redirections: Redirection[];
  /** The command's output is the next command's input (`|` or `|&`). */
  pipesTo: boolean;
}

export interface ShellScript {
  /** Simple commands in source order. */
  commands: SimpleCommand[];
  /** Command and process substitutions, each a script of its own (in the same source coordinates). */
  subs: ShellScript[];
  /** Comments and here-document bodies: source spans that are not words. */
  other: { start: number; end: number }[];
}

/** Substitutions nested deeper than this are copied into their word without being lexed. */
export const MAX_DEPTH = 32;

/** Where the source of a word's code unit `i` starts. */
export const sourceStart = (word: ShellWord, i: number): number => word.from?.[i] ?? word.start + i;
/** Where the source of a word's code unit `i` ends. */
export const sourceEnd = (word: ShellWord, i: number): number => word.to?.[i] ?? word.start + i + 1;

const BLANK = new Set([' ', '\t']);
/** Characters that end an unquoted word. */
const METACHAR = new Set([' ', '\t', '\n', '|', '&', ';', '(', ')', '<', '>']);
const isHigh = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
const isLow = (code: number): boolean => code >= 0xdc00 && code <= 0xdfff;
const OCTAL = /^[0-7]$/;
const HEX = /^[0-9A-Fa-f]$/;
/** Reserved words, which Bash recognises at the start of a command (they are not words of it). */
const RESERVED = new Set([
  '!',
  '{',
  '}',
  'if',
  'then',
  'elif',
  'else',
  'fi',
  'do',
  'done',
  'while',
  'until',
  'time',
]);
const REDIRECTION = /^(?:&>>?|<<<|<<-|<<|<>|<&|>>|>&|>\||<|>)/;
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=$/;

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  e: '\x1b',
  E: '\x1b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '?': '?',
};

/** Lexes `source` (or its [start, end) part) as a shell script. */
export function lexShell(source: string, start = 0, end = source.length): ShellScript {
  const lexer = new Lexer(source, end);
  return lexer.list(start, 0, undefined).script;
}

/** A word being read: its text, and its source map once it is no longer the source as is. */
class WordBuilder {
  text = '';
  from: number[] | undefined;
  to: number[] | undefined;
  readonly quotes: QuotedPart[] = [];

  constructor(
    private readonly src: string,
    readonly start: number,
  ) {}

  /** Appends `text`, every code unit of it produced by source [from, to). */
  push(text: string, from: number, to: number): void {
    this.mapped();
    this.text += text;
    for (let i = 0; i < text.length; i++) {
      this.from!.push(from);
      this.to!.push(to);
    }
  }

  /** Copies source [from, to) as is. */
  copy(from: number, to: number): void {
    if (this.from === undefined && from === this.start + this.text.length) {
      this.text += this.src.slice(from, to);
      return;
    }
    this.mapped();
    this.text += this.src.slice(from, to);
    for (let i = from; i < to; i++) {
      this.from!.push(i);
      this.to!.push(i + 1);
    }
  }

  private mapped(): void {
    if (this.from !== undefined) return;
    this.from = [];
    this.to = [];
    for (let i = 0; i < this.text.length; i++) {
      this.from.push(this.start + i);
      this.to.push(this.start + i + 1);
    }
  }

  word(end: number): ShellWord {
    const { text, start, from, to, quotes } = this;
    return from === undefined ? { text, start, end, quotes } : { text, start, end, from, to, quotes };
  }
}

/** Characters that end a run of plain characters in a word: metacharacters, quotes, `\`, `$`, backquote. */
const SPECIAL = new Uint8Array(128);
for (const c of ' \t\n|&;()<>\\\'"$`') SPECIAL[c.charCodeAt(0)] = 1;

class Lexer {
  constructor(
    private readonly src: string,
    private readonly end: number,
  ) {}

  /**
   * Lexes commands from `pos` until the end, or until an unquoted `closer` (`)` for `$(...)`) at this level.
   * Returns the script and the position after the closer (or the end).
   */
  list(pos: number, depth: number, closer: ')' | undefined): { script: ShellScript; next: number } {
    const { src, end } = this;
    const script: ShellScript = { commands: [], subs: [], other: [] };
    let command: SimpleCommand = { words: [], redirections: [], pipesTo: false };
    let redirect: Redirection | undefined;
    /** Here-documents waiting for the next newline: delimiter and whether tabs are stripped. */
    let heredocs: { delimiter: string; tabs: boolean }[] = [];
    let parens = 0;
    const finish = (pipes = false): void => {
      if (redirect !== undefined) command.redirections.push(redirect);
      redirect = undefined;
      if (command.words.length > 0 || command.redirections.length > 0) {
        command.pipesTo = pipes;
        script.commands.push(command);
      }
      command = { words: [], redirections: [], pipesTo: false };
    };
    while (pos < end) {
      const c = src[pos]!;
      if (BLANK.has(c)) {
        pos++;
      } else if (c === '\\' && src[pos + 1] === '\n') {
        pos += 2;
      } else if (c === '\n') {
        finish();
        pos++;
        if (heredocs.length > 0) {
          pos = this.heredocBodies(pos, heredocs, script);
          heredocs = [];
        }
      } else if (c === '#') {
        const newline = src.indexOf('\n', pos);
        const stop = newline < 0 || newline > end ? end : newline;
        script.other.push({ start: pos, end: stop });
        pos = stop;
      } else if (c === ')' && closer !== undefined && parens === 0) {
        finish();
        return { script, next: pos + 1 };
      } else if (c === '(' || c === ')') {
        parens += c === '(' ? 1 : -1;
        finish();
        pos++;
      } else if (((c === '<' || c === '>') && src[pos + 1] !== '(') || (c === '&' && src[pos + 1] === '>')) {
        if (redirect !== undefined) command.redirections.push(redirect);
        const op = REDIRECTION.exec(src.slice(pos, pos + 3))![0];
        redirect = { op, start: pos, end: pos + op.length };
        pos += op.length;
      } else if (c === '|' || c === '&' || c === ';') {
        const two = src.slice(pos, pos + 2);
        const op = two === '||' || two === '&&' || two === ';;' || two === '|&' || two === ';&' ? two : c;
        finish(op === '|' || op === '|&');
        pos += op.length;
        if (op === ';;' && src[pos] === '&') pos++;
      } else {
        const word = this.word(pos, depth, script);
        pos = word.end;
        // A number right before a redirection is its file descriptor (`2>`), as is `{name}` before one.
        const next = src[pos];
        if (
          (next === '<' || next === '>') &&
          redirect === undefined &&
          src[pos + 1] !== '(' &&
          word.text.length === word.end - word.start &&
          /^(?:[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\})$/.test(word.text)
        ) {
          const op = REDIRECTION.exec(src.slice(pos, pos + 3))![0];
          redirect = { op: word.text + op, start: word.start, end: pos + op.length };
          pos += op.length;
        } else if (redirect !== undefined) {
          redirect.target = word;
          if (redirect.op.endsWith('<<') || redirect.op.endsWith('<<-'))
            heredocs.push({ delimiter: word.text, tabs: redirect.op.endsWith('-') });
          command.redirections.push(redirect);
          redirect = undefined;
        } else if (
          command.words.length > 0 ||
          word.text.length !== word.end - word.start ||
          !RESERVED.has(word.text)
        )
          command.words.push(word);
      }
    }
    finish();
    return { script, next: end };
  }

  /** Skips here-document bodies starting at `pos`; returns where the next command starts. */
  private heredocBodies(
    pos: number,
    heredocs: { delimiter: string; tabs: boolean }[],
    script: ShellScript,
  ): number {
    const { src, end } = this;
    for (const { delimiter, tabs } of heredocs) {
      const start = pos;
      for (;;) {
        if (pos >= end) {
          script.other.push({ start, end });
          return end;
        }
        const newline = src.indexOf('\n', pos);
        const stop = newline < 0 || newline > end ? end : newline;
        let line = src.slice(pos, stop);
        if (tabs) line = line.replace(/^\t+/, '');
        pos = stop < end ? stop + 1 : end;
        if (line === delimiter) break;
      }
      script.other.push({ start, end: pos });
    }
    return pos;
  }

  /** Reads the word starting at `pos`. */
  private word(pos: number, depth: number, script: ShellScript): ShellWord {
    const { src, end } = this;
    const start = pos;
    const w = new WordBuilder(src, start);
    while (pos < end) {
      const c = src[pos]!;
      if (c === '\\') {
        if (src[pos + 1] === '\n') {
          w.push('', pos, pos + 2);
          pos += 2;
        } else if (pos + 1 >= end) {
          w.copy(pos, pos + 1);
          pos++;
        } else {
          const width = isHigh(src.charCodeAt(pos + 1)) && isLow(src.charCodeAt(pos + 2)) ? 2 : 1;
          w.push(src.slice(pos + 1, pos + 1 + width), pos, pos + 1 + width);
          pos += 1 + width;
        }
      } else if (c === "'") {
        const close = src.indexOf("'", pos + 1);
        const stop = close < 0 || close >= end ? end : close;
        w.push('', pos, pos);
        w.copy(pos + 1, stop);
        const after = stop < end ? stop + 1 : end;
        w.quotes.push({ open: pos, close: after, contentStart: pos + 1, contentEnd: stop });
        pos = after;
      } else if (c === '"' || (c === '$' && src[pos + 1] === '"')) {
        pos = this.doubleQuoted(pos, c === '$' ? pos + 2 : pos + 1, depth, script, w);
      } else if (c === '$' && src[pos + 1] === "'") {
        pos = this.ansiC(pos, w);
      } else if (c === '$' || c === '`') {
        pos = this.expansion(pos, depth, script, w);
      } else if ((c === '<' || c === '>') && pos === start && src[pos + 1] === '(') {
        const { script: sub, next } = this.nested(pos + 2, depth);
        if (sub !== undefined) script.subs.push(sub);
        w.copy(pos, next);
        pos = next;
      } else if (c === '(' && this.wordTakesParens(w.text, src[pos - 1], pos > start)) {
        const next = this.balanced(pos);
        w.copy(pos, next);
        pos = next;
      } else if (METACHAR.has(c)) {
        break;
      } else {
        // Plain characters up to the next one that needs a look.
        let stop = pos + 1;
        for (; stop < end; stop++) {
          const code = src.charCodeAt(stop);
          if (code < 128 && SPECIAL[code] === 1) break;
        }
        w.copy(pos, stop);
        pos = stop;
      }
    }
    return w.word(pos);
  }

  /** `(` continues a word in `arr=(...)` and in extended globs (`@(a|b)`, `!(x)`). */
  private wordTakesParens(text: string, before: string | undefined, inWord: boolean): boolean {
    if (!inWord) return false;
    if (before !== undefined && '?*+@!'.includes(before)) return true;
    return ASSIGNMENT.test(text);
  }

  /** The position after the parenthesis group opening at `pos` (quotes skipped), or the end. */
  private balanced(pos: number): number {
    return this.closing(pos, '(', ')');
  }

  /** The position after the `}` closing the `{` at `pos` (quotes and nested braces skipped). */
  private braces(pos: number): number {
    return this.closing(pos, '{', '}');
  }

  /**
   * The position after the `close` that balances the `open` at `pos`, skipping quotes and backslash escapes
   * and counting nested pairs; the end when it is never closed.
   */
  private closing(pos: number, open: string, close: string): number {
    const { src, end } = this;
    let depth = 0;
    while (pos < end) {
      const c = src[pos]!;
      if (c === '\\') pos += 2;
      else if (c === "'") {
        const quote = src.indexOf("'", pos + 1);
        pos = quote < 0 || quote >= end ? end : quote + 1;
      } else if (c === '"') {
        pos++;
        while (pos < end && src[pos] !== '"') pos += src[pos] === '\\' ? 2 : 1;
        pos++;
      } else {
        if (c === open) depth++;
        else if (c === close && --depth === 0) return pos + 1;
        pos++;
      }
    }
    return end;
  }

  /** `$(...)` lexed as a script, or copied when nested too deep; returns the script and the position after. */
  private nested(bodyStart: number, depth: number): { script?: ShellScript; next: number } {
    if (depth >= MAX_DEPTH) return { next: this.balanced(bodyStart - 1) };
    const { script, next } = this.list(bodyStart, depth + 1, ')');
    return { script, next: Math.min(next, this.end) };
  }

  /**
   * `$...` or a backquote at `pos`: `$(...)` and backquotes are lexed as scripts, `$((...))` and `${...}` are
   * skipped over; all are copied. Returns the position after.
   */
  private expansion(pos: number, depth: number, script: ShellScript, w: WordBuilder): number {
    const { src, end } = this;
    const next = src[pos + 1];
    let stop: number;
    if (src[pos] === '`') {
      stop = pos + 1;
      while (stop < end && src[stop] !== '`') stop += src[stop] === '\\' ? 2 : 1;
      stop = Math.min(stop, end);
      if (depth < MAX_DEPTH)
        script.subs.push(new Lexer(src, stop).list(pos + 1, depth + 1, undefined).script);
      stop = Math.min(stop + 1, end);
    } else if (next === '(' && src[pos + 2] === '(') {
      stop = this.balanced(pos + 1);
    } else if (next === '(') {
      const { script: sub, next: after } = this.nested(pos + 2, depth);
      if (sub !== undefined) script.subs.push(sub);
      stop = after;
    } else if (next === '{') {
      stop = this.braces(pos + 1);
    } else stop = pos + 1;
    w.copy(pos, stop);
    return stop;
  }

  /** A double-quoted part opening at `open` whose content starts at `pos`; returns the position after. */
  private doubleQuoted(
    open: number,
    pos: number,
    depth: number,
    script: ShellScript,
    w: WordBuilder,
  ): number {
    const { src, end } = this;
    const contentStart = pos;
    w.push('', open, open);
    while (pos < end && src[pos] !== '"') {
      const c = src[pos]!;
      if (c === '\\' && pos + 1 < end && '$`"\\\n'.includes(src[pos + 1]!)) {
        w.push(src[pos + 1] === '\n' ? '' : src[pos + 1]!, pos, pos + 2);
        pos += 2;
      } else if (c === '`' || (c === '$' && '({'.includes(src[pos + 1] ?? ''))) {
        pos = this.expansion(pos, depth, script, w);
      } else {
        let stop = pos + 1;
        while (stop < end && !'"\\$`'.includes(src[stop]!)) stop++;
        w.copy(pos, stop);
        pos = stop;
      }
    }
    const contentEnd = Math.min(pos, end);
    const close = pos < end ? pos + 1 : end;
    w.quotes.push({ open, close, contentStart, contentEnd });
    return close;
  }

  /** A `$'...'` part at `open`; returns the position after. */
  private ansiC(open: number, w: WordBuilder): number {
    const { src, end } = this;
    let pos = open + 2;
    w.push('', open, open);
    // After a NUL the rest of the string has no value (Bash's strings end at NUL).
    let ended = false;
    const emit = (text: string, from: number, to: number): void => {
      if (!ended) w.push(text, from, to);
    };
    const emitCode = (code: number, from: number, to: number): void => {
      if (code === 0) ended = true;
      else if (code > 0x10ffff) return;
      else emit(String.fromCodePoint(code), from, to);
    };
    /** A byte from an octal or hex escape: above 0x7F it is a byte on its own, as not-UTF-8 bytes are. */
    const emitByte = (byte: number, from: number, to: number): void => {
      if (byte === 0) ended = true;
      else emit(String.fromCharCode(byte < 0x80 ? byte : 0xdc00 + byte), from, to);
    };
    while (pos < end && src[pos] !== "'") {
      const c = src[pos]!;
      if (c !== '\\' || pos + 1 >= end) {
        const width = isHigh(src.charCodeAt(pos)) && isLow(src.charCodeAt(pos + 1)) ? 2 : 1;
        emit(src.slice(pos, pos + width), pos, pos + width);
        pos += width;
        continue;
      }
      const e = src[pos + 1]!;
      if (e in SIMPLE_ESCAPES) {
        emit(SIMPLE_ESCAPES[e]!, pos, pos + 2);
        pos += 2;
      } else if (OCTAL.test(e)) {
        let stop = pos + 1;
        while (stop < end && stop < pos + 4 && OCTAL.test(src[stop]!)) stop++;
        emitByte(parseInt(src.slice(pos + 1, stop), 8) & 0xff, pos, stop);
        pos = stop;
      } else if (e === 'x' || e === 'u' || e === 'U') {
        const most = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        let stop = pos + 2;
        while (stop < end && stop < pos + 2 + most && HEX.test(src[stop]!)) stop++;
        if (stop === pos + 2) emit(`\\${e}`, pos, pos + 2);
        else if (e === 'x') emitByte(parseInt(src.slice(pos + 2, stop), 16), pos, stop);
        else emitCode(parseInt(src.slice(pos + 2, stop), 16), pos, stop);
        pos = stop;
      } else if (e === 'c' && pos + 2 < end && src[pos + 2] !== "'") {
        let stop = pos + 3;
        const x = src[pos + 2]!;
        if (x === '\\' && src[stop] === '\\') stop++;
        emitByte(x === '?' ? 0x7f : x.toUpperCase().charCodeAt(0) & 0x1f, pos, stop);
        pos = stop;
      } else {
        emit(`\\${e}`, pos, pos + 2);
        pos += 2;
      }
    }
    const contentEnd = Math.min(pos, end);
    const close = pos < end ? pos + 1 : end;
    w.quotes.push({ open, close, contentStart: open + 2, contentEnd });
    return close;
  }
}
