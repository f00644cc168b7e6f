import { ELLIPSIS, escapeControls, excerpt, shortened } from './escape.js';

describe('escapeControls', () => {
  it('leaves ordinary text alone, non-ASCII included', () => {
    for (const text of ['ls -la /', 'echo "héllo wörld" | grep ö', 'cat 日本語.txt', 'emoji 🙂 ok', ''])
      expect(escapeControls(text)).toBe(text);
  });

  it('shows C0 controls, DEL and C1 controls as \\xHH', () => {
    expect(escapeControls('rm -rf /tmp/x\b\b\b\b\b\b\b\b\bls\n')).toBe(
      'rm -rf /tmp/x\\x08\\x08\\x08\\x08\\x08\\x08\\x08\\x08\\x08ls\\x0a',
    );
    expect(escapeControls('\x00\t\r\x1b[2J\x7f\x85\x9b')).toBe('\\x00\\x09\\x0d\\x1b[2J\\x7f\\x85\\x9b');
  });

  it('shows bidirectional formatting characters and line separators as \\u{HHHH}', () => {
    expect(escapeControls('ls \u202e#gnp.exe')).toBe('ls \\u{202e}#gnp.exe');
    const all = '\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029';
    expect(escapeControls(all)).toBe(
      [...all].map((c) => `\\u{${c.codePointAt(0)!.toString(16).padStart(4, '0')}}`).join(''),
    );
  });

  it('escapes a backslash, so that every escape in the output stands for one character of the input', () => {
    expect(escapeControls('printf "a\\x08b"')).toBe('printf "a\\\\x08b"');
    expect(escapeControls('a\bb')).toBe('a\\x08b');
    expect(escapeControls('a\\x08b')).not.toBe(escapeControls('a\bb'));
  });

  it('shows a lone surrogate, and keeps a pair', () => {
    expect(escapeControls('a\ud800b')).toBe('a\\u{d800}b');
    expect(escapeControls('\ud83d\ude42')).toBe('🙂');
  });

  it('leaves no character a terminal or a bidi algorithm acts on', () => {
    let all = '';
    for (let cp = 0; cp < 0x3000; cp++) all += String.fromCodePoint(cp);
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    const acted = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
    expect(escapeControls(all)).not.toMatch(acted);
  });
});

describe('excerpt', () => {
  it('is the escaped text when it fits', () => {
    expect(excerpt('ls\n', 10)).toBe('ls\\x0a');
  });

  it('cuts to a number of code points, with an ellipsis, never inside an escape', () => {
    expect(excerpt('abc\bdef', 6)).toBe(`abc${ELLIPSIS}`);
    expect(excerpt('abc\bdef', 8)).toBe(`abc\\x08${ELLIPSIS}`);
    expect([...excerpt('日本語'.repeat(10), 5)]).toHaveLength(5);
  });

  it('cuts to UTF-8 bytes when asked', () => {
    const cut = excerpt('é'.repeat(100), 11, 'bytes');
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(11);
    expect(cut).toBe(`éééé${ELLIPSIS}`);
  });
});

describe('shortened', () => {
  it.each([
    ['short', 10, 'short'],
    ['abcdefghij', 10, 'abcdefghij'],
    ['abcdefghijk', 10, 'abcdefg…'],
    ['ééééé', 9, 'ééé…'],
    ['a😀b', 5, 'a…'],
    // Escaped already: left as it is, not escaped twice.
    ['a\\x08b', 10, 'a\\x08b'],
  ])('%j in %d bytes -> %j', (text, max, want) => {
    const cut = shortened(text, max, 'bytes');
    expect(cut).toBe(want);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(max);
  });
});
