/**
 * The lexer against Bash itself: each line below is run by the real /bin/bash with every command going to a
 * `command_not_found_handle` (PATH is empty, `echo` is disabled) that prints the words it was given,
 * NUL-separated, and these must be the lexer's words byte for byte. Globbing and brace expansion are off, and
 * the lines hold no expansions, so the words are the result of quote removal alone. Needs bash, not root.
 */
import { spawnSync } from 'node:child_process';
import { lexShell } from './shell-words.js';

const PRELUDE = [
  'set -f +B',
  'enable -n echo',
  'exec 3>&1',
  // One printf, one write: members of a pipeline print at the same time.
  "command_not_found_handle() { printf '%s\\0' \"$@\" $'\\036' >&3; [[ $1 != fail ]]; }",
  'PATH=/nonexistent',
].join('; ');

/**
 * What Bash gives each command, one list of words per command (sorted: pipeline members run at once). The
 * script goes in on standard input, as bytes (an argument would be re-encoded as UTF-8).
 */
function bashWords(line: string): string[][] {
  const run = spawnSync('/bin/bash', ['--norc', '--noprofile', '-s'], {
    env: { LC_ALL: 'C.UTF-8' },
    input: Buffer.from(`${PRELUDE}\n${bytes(line)}\n`, 'latin1'),
    encoding: 'latin1',
  });
  if (run.status !== 0 || run.stderr !== '')
    throw new Error(`bash failed on ${JSON.stringify(line)}: ${run.status} ${run.stderr}`);
  return run.stdout
    .split('\x1e\0')
    .slice(0, -1)
    .map((command) => command.split('\0').slice(0, -1))
    .sort();
}

/** Text as the bytes Bash would have: U+DC80..U+DCFF stand for single bytes, the rest is UTF-8. */
function bytes(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code >= 0xdc80 && code <= 0xdcff) out += String.fromCharCode(code - 0xdc00);
    else out += Buffer.from(char, 'utf8').toString('latin1');
  }
  return out;
}

function lexerWords(line: string): string[][] {
  return lexShell(line)
    .commands.filter((c) => c.words.length > 0 && c.words[0]!.text !== ':')
    .map((c) => c.words.map((w) => bytes(w.text)))
    .sort();
}

const LINES = [
  // Quotes joined into one word.
  "env PASSWORD=''x",
  `env PASSWORD=""x PASS='a'"b"c`,
  "mysql -p'hun'ter2 -u root",
  "curl -u bob:hun'ter2' https://x",
  `curl -u "bob":'p w'"x y" https://x`,
  "a'' ''b '' \"\" x",
  // Backslashes outside quotes.
  'curl -H Authorization:\\ Bearer\\ abc\\ def x',
  'a\\b \\\\c d\\"e f\\\'g \\$h \\#i',
  'a\\\nb c',
  '\\ leading',
  // Double quotes: backslash only before $ ` " \ and newline.
  'x "a\\b" "a\\$b" "a\\`b" "a\\"b" "a\\\\b" "a\\\nb" "a\\\'b"',
  'x $"a\\"b" $"c d"',
  // Single quotes keep backslashes.
  "x 'a\\b' 'a\\' b",
  // ANSI-C quoting.
  "x $'\\x68unter2' $'\\150\\165nter2' $'\\u0068' $'\\U00000068' $'\\cA\\c?\\ca'",
  "x $'a\\nb\\tc\\rd\\ee\\Ef\\ag\\bh\\fi\\vj' $'\\\\ \\' \\\" \\?'",
  "x $'\\x4g' $'\\x' $'\\q' $'\\u' $'\\0123' $'\\1234' $'\\777'",
  "x $'a\\0b'c $'\\x00y'z $'\\u0000w'v",
  "x $'\\xff\\xc3\\xa9' $'\\u00e9\\U0001F600'",
  "x $'\\c\\\\x' $'\\c'",
  "x $'it''s' $'a\\'b'",
  // Operators and separators.
  'a 1;b 2&&c 3; fail 4||d 5; h 7|i 8|&j 9',
  // Reserved words start no command (`:` is a builtin: the filter below leaves it out).
  '! a 1; if b 2; then c 3; fi; while fail 4; do :; done; until d 5; do :; done',
  'if fail 1; then :; elif b 2; then c 3; else :; fi; { d 4; }',
  'a x>/dev/null y 2>&1 z </dev/null w',
  'a >/dev/null x 2>/dev/null y &>/dev/null z',
  'a <<<here x',
  "a <<<'here x' y",
  '(a 1; b 2) ; { c 3; }',
  'a x # a comment',
  'a x#y #z',
  'a &>/dev/null;b',
  'a "x # y" \'#\' \\#',
  // Here-documents: the body is not words.
  "a <<EOF x\nbody 'with quotes\nEOF\nb y",
  "a <<-'EOF' x\n\tbody\n\tEOF\nb y",
  // Unicode and bytes that are not UTF-8 pass through.
  'x é 😀 "é" \'😀\'',
  'x a\udcffb "\udcfe" $\'\udc80\'',
  // Array assignment and extended globs stay one word (env gets them as text).
  'env a=b "c=(d e)"',
];

describe('the lexer gives the words Bash gives', () => {
  it.each(LINES)('%j', (line) => {
    expect(lexerWords(line)).toEqual(bashWords(line));
  });
});
