import { decodeEscaped, encodeEscaped } from './escaped-text.js';

const samples: [string, Buffer][] = [
  ['ascii', Buffer.from('echo "a\tb" \'c\'')],
  ['multi-byte', Buffer.from('grüße 日本 🙂')],
  ['lone continuation', Buffer.of(0x61, 0x80, 0x62)],
  ['truncated sequence', Buffer.of(0xe6, 0x97, 0x61)],
  ['overlong', Buffer.of(0xc0, 0xaf)],
  ['encoded surrogate', Buffer.of(0xed, 0xb2, 0x80)],
  ['beyond U+10FFFF', Buffer.of(0xf4, 0x90, 0x80, 0x80)],
  ['every byte', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
  ['latin-1', Buffer.from('caf\xe9', 'latin1')],
];

describe('surrogate-escaped text', () => {
  it.each(samples)('round-trips %s exactly', (_, bytes) => {
    expect(encodeEscaped(decodeEscaped(bytes)).equals(bytes)).toBe(true);
  });

  it('decodes valid UTF-8 as itself', () => {
    expect(decodeEscaped(Buffer.from('grüße 🙂'))).toBe('grüße 🙂');
  });

  it('maps each bad byte to one escape and keeps the valid ones around it', () => {
    expect(decodeEscaped(Buffer.of(0x61, 0xff, 0xc3, 0xa9))).toBe('a\udcffé');
  });

  it('keeps replacements made between escapes byte-exact around them', () => {
    const text = decodeEscaped(Buffer.from('\xffpw=secret\xfe', 'latin1')).replace('secret', '[REDACTED]');
    expect(encodeEscaped(text)).toEqual(Buffer.from('\xffpw=[REDACTED]\xfe', 'latin1'));
  });
});
