/**
 * Bytes <-> text without losing a byte: valid UTF-8 decodes as usual, and every byte that is not part of a
 * valid UTF-8 sequence becomes the lone surrogate U+DC80..U+DCFF ("surrogate escape", as Python's
 * os.fsdecode does). Redaction and alert patterns then run on ordinary strings, and the redacted text encodes
 * back to exactly the original bytes outside what was replaced. Valid UTF-8 never encodes a surrogate, so
 * the mapping is one to one. Pure.
 */

const STRICT = new TextDecoder('utf-8', { fatal: true });

/** Length of the valid UTF-8 sequence starting at i, or 0 (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
function sequenceLength(b: Uint8Array, i: number): number {
  const lead = b[i]!;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const c = b[i + k];
    return c !== undefined && c >= lo && c <= hi;
  };
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return cont(1) ? 2 : 0;
  if (lead === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (lead === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (lead >= 0xe1 && lead <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (lead === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (lead >= 0xf1 && lead <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (lead === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

export function decodeEscaped(bytes: Uint8Array): string {
  try {
    return STRICT.decode(bytes); // the common case: valid UTF-8
  } catch {
    // fall through to the byte-by-byte walk
  }
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const n = sequenceLength(bytes, i);
    if (n === 0) {
      out += String.fromCharCode(0xdc00 + bytes[i]!);
      i++;
    } else {
      out += STRICT.decode(bytes.subarray(i, i + n));
      i += n;
    }
  }
  return out;
}

export function encodeEscaped(text: string): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc80 || c > 0xdcff) continue;
    // A low surrogate after a high one is half of a real character, not an escaped byte.
    const prev = i > 0 ? text.charCodeAt(i - 1) : 0;
    if (prev >= 0xd800 && prev <= 0xdbff) continue;
    parts.push(Buffer.from(text.slice(start, i), 'utf8'), Buffer.of(c - 0xdc00));
    start = i + 1;
  }
  if (start === 0) return Buffer.from(text, 'utf8');
  parts.push(Buffer.from(text.slice(start), 'utf8'));
  return Buffer.concat(parts);
}
