import { composeScript, decodedLine, lineSpanToSource, wordSpanToSource } from './decoded-line.js';
import {
  MAX_DEPTH,
  type ShellScript,
  type ShellWord,
  lexShell,
  sourceEnd,
  sourceStart,
} from './shell-words.js';

const words = (script: ShellScript): string[][] => script.commands.map((c) => c.words.map((w) => w.text));

/** The source each code unit of a word came from. */
const sources = (source: string, word: ShellWord): string[] =>
  [...word.text].map((_, i) => source.slice(sourceStart(word, i), sourceEnd(word, i)));

describe('lexShell', () => {
  it('maps each character of a word to the source that produced it', () => {
    const source = `x a'b'"c\\"d"\\ e$'\\x66'`;
    const [, word] = lexShell(source).commands[0]!.words;
    expect(word!.text).toBe('abc"d ef');
    expect(sources(source, word!)).toEqual(['a', 'b', 'c', '\\"', 'd', '\\ ', 'e', '\\x66']);
    expect(source.slice(word!.start, word!.end)).toBe(`a'b'"c\\"d"\\ e$'\\x66'`);
    expect(word!.quotes.map((q) => source.slice(q.open, q.close))).toEqual(["'b'", '"c\\"d"', "$'\\x66'"]);
  });

  it('keeps no map for a word written as it reads', () => {
    const word = lexShell('ls --color=auto /tmp').commands[0]!.words[1]!;
    expect(word.from).toBeUndefined();
    expect([sourceStart(word, 0), sourceEnd(word, 1)]).toEqual([3, 5]);
  });

  it('splits commands at operators and newlines, and marks pipes', () => {
    const script = lexShell('a 1 | b 2 && c; d &\ne');
    expect(words(script)).toEqual([['a', '1'], ['b', '2'], ['c'], ['d'], ['e']]);
    expect(script.commands.map((c) => c.pipesTo)).toEqual([true, false, false, false, false]);
  });

  it('reads redirections and their targets apart from the words', () => {
    const [command] = lexShell('cmd a 2>&1 >out b <<<"here s" {fd}>x').commands;
    expect(command!.words.map((w) => w.text)).toEqual(['cmd', 'a', 'b']);
    expect(command!.redirections.map((r) => [r.op, r.target?.text])).toEqual([
      ['2>&', '1'],
      ['>', 'out'],
      ['<<<', 'here s'],
      ['{fd}>', 'x'],
    ]);
  });

  it('lexes command substitutions as scripts of their own, in the same coordinates', () => {
    const source = 'x=$(curl -u a:b "$(cat f)") y=`id -u`';
    const script = lexShell(source);
    expect(words(script)).toEqual([['x=$(curl -u a:b "$(cat f)")', 'y=`id -u`']]);
    expect(script.subs.map(words)).toEqual([[['curl', '-u', 'a:b', '$(cat f)']], [['id', '-u']]]);
    expect(script.subs[0]!.subs.map(words)).toEqual([[['cat', 'f']]]);
    const inner = script.subs[0]!.commands[0]!.words[2]!;
    expect(source.slice(inner.start, inner.end)).toBe('a:b');
  });

  it('skips comments and here-document bodies', () => {
    const script = lexShell("a # b 'c\ncat <<-'E' x\n\tbody 'x\n\tE\nd");
    expect(words(script)).toEqual([['a'], ['cat', 'x'], ['d']]);
    expect(script.other).toHaveLength(2);
  });

  it('runs an unterminated quote or substitution to the end', () => {
    expect(words(lexShell("mysql -p'hun ter2"))).toEqual([['mysql', '-phun ter2']]);
    expect(words(lexShell('x "a $(b c'))).toEqual([['x', 'a $(b c']]);
    expect(words(lexShell("x $'a\\"))).toEqual([['x', 'a\\']]);
  });

  it('does not lex substitutions nested deeper than MAX_DEPTH', () => {
    const deep = `${'$('.repeat(MAX_DEPTH + 5)}x${')'.repeat(MAX_DEPTH + 5)}`;
    let script = lexShell(`echo ${deep}`);
    let depth = 0;
    while (script.subs.length > 0) {
      script = script.subs[0]!;
      depth++;
    }
    expect(depth).toBe(MAX_DEPTH);
    expect(words(lexShell(`echo ${deep} next`))[0]).toEqual(['echo', deep, 'next']);
  });

  it('keeps reserved words out of commands, and array assignments and extended globs in one word', () => {
    expect(words(lexShell('if ! a; then { b; }; fi'))).toEqual([['a'], ['b']]);
    expect(words(lexShell('arr=(a "b c") x @(y|z)'))).toEqual([['arr=(a "b c")', 'x', '@(y|z)']]);
  });

  it('is linear on hostile input', () => {
    for (const unit of ["'", '"', '$(', '`', "$'\\", '\\', '${', '((', 'a=(']) {
      const started = process.hrtime.bigint();
      lexShell(unit.repeat(20_000));
      expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(2_000);
    }
  });
});

describe('decodedLine', () => {
  it('writes quoted words that need it in quotes, and maps spans back', () => {
    const source = `curl -H "X-Key: a b" -u bob:'pw' x`;
    const script = lexShell(source);
    const line = decodedLine(script, (w) => w.from !== undefined);
    expect(line.text).toBe("curl -H 'X-Key: a b' -u bob:pw x");
    const pw = line.text.indexOf('pw');
    // The whole quoted part is covered: its quotes go with it.
    expect(lineSpanToSource(line, pw, pw + 2)).toEqual({
      start: source.indexOf("'pw'"),
      end: source.indexOf("'pw'") + 4,
    });
    const a = line.text.indexOf('a b');
    expect(lineSpanToSource(line, a, a + 3)).toEqual({
      start: source.indexOf('a b'),
      end: source.indexOf('a b') + 3,
    });
  });

  it('uses double quotes for a word that holds a single quote', () => {
    const script = lexShell(`echo "it's \\"x\\""`);
    expect(decodedLine(script, () => true).text).toBe('echo "it\'s \\"x\\""');
  });

  it('joins commands and redirections as the shapes expect', () => {
    const script = lexShell('a x|b y>f;c');
    expect(decodedLine(script, () => false).text).toBe('a x | b y > f ; c');
  });
});

describe('wordSpanToSource', () => {
  it.each([
    // [source, secret in the second word, replaced span]
    ["x PASSWORD=''hunter2", 'hunter2', "''hunter2"],
    ["x --password='a b'", 'a b', "'a b'"],
    ["x 'bob:pw'", 'pw', 'pw'],
    ["x hun'ter2'", 'hunter2', "hun'ter2'"],
    ["x hunter2''", 'hunter2', "hunter2''"],
    ["x $'\\x68unter2'", 'hunter2', "$'\\x68unter2'"],
    ['x "a"b"c"', 'b', 'b'],
  ])('%j: %j is replaced as %j', (source, secret, replaced) => {
    const word = lexShell(source).commands[0]!.words[1]!;
    const at = word.text.indexOf(secret);
    const span = wordSpanToSource(word, at, at + secret.length);
    expect(source.slice(span.start, span.end)).toBe(replaced);
  });
});

describe('composeScript', () => {
  it('gives a word that is a script the coordinates of the command', () => {
    const source = `bash -c "mysql -p'x y' db"`;
    const outer = lexShell(source).commands[0]!.words[2]!;
    const inner = composeScript(lexShell(outer.text), outer);
    const word = inner.commands[0]!.words[1]!;
    expect(word.text).toBe('-px y');
    expect(source.slice(word.start, word.end)).toBe("-p'x y'");
    const span = wordSpanToSource(word, 2, 5);
    expect(source.slice(span.start, span.end)).toBe("'x y'");
  });
});
