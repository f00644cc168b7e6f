import { storedBytes, storedStringBytes } from './stored-size.js';

const jsBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value));

describe('storedBytes', () => {
  it.each([
    ['plain ASCII', 'ls -la /tmp', 13],
    ['quotes, backslashes, newline and tab', 'a"b\\c\nd\te', 15],
    // Go escapes the HTML characters: \u003c \u003e \u0026.
    ['< > &', '<>&', 2 + 18],
    ['U+2028 and U+2029', '\u2028\u2029', 2 + 12],
    ['other control characters', '\u0001\u001b', 2 + 12],
    // Not in Go's short forms before 1.22: counted long.
    ['\\b and \\f', '\b\f', 2 + 12],
    ['two- and three-byte UTF-8', 'é✓', 2 + 2 + 3],
    ['a surrogate pair (four bytes)', '😀', 2 + 4],
    // Sent as \ud800 (six bytes), stored as U+FFFD (three): the larger is counted.
    ['a lone surrogate', '\ud800x', 2 + 6 + 1],
  ])('counts %s as Go stores it', (_what, text, bytes) => {
    expect(storedStringBytes(text)).toBe(bytes);
  });

  it('equals JSON.stringify for text Go encodes the same way', () => {
    const value = {
      seq: 12,
      time: '2026-03-01T10:00:00Z',
      command: 'echo "héllo wörld ✓" | tr a-z A-Z\t# 😀',
      nested: [1, true, null, { a: 'b' }, []],
      skipped: undefined,
    };
    expect(storedBytes(value)).toBe(jsBytes(value));
  });

  it('is six times JSON.stringify for a line of HTML characters', () => {
    const line = '<>&'.repeat(1000);
    expect(jsBytes(line)).toBe(3002);
    expect(storedBytes(line)).toBe(18002);
  });

  it('is never less than JSON.stringify', () => {
    const samples = ['\u0000', '\b', '\ud800', '\udc00a', '\u2028', '<', 'ÿ', '\u{10ffff}', '\\', '"'];
    for (const s of samples) {
      expect(storedBytes(s)).toBeGreaterThanOrEqual(jsBytes(s));
      expect(storedBytes({ [s]: [s, 1.5e-7] })).toBeGreaterThanOrEqual(jsBytes({ [s]: [s, 1.5e-7] }));
    }
  });

  it('measures dates and other toJSON values by what they encode to', () => {
    const at = new Date('2026-03-01T10:00:00Z');
    expect(storedBytes({ at })).toBe(jsBytes({ at }));
  });
});
