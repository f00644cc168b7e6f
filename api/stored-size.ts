/**
 * How many bytes an object takes as the API server stores it: the one measure of an object's size for
 * everything we write through the API (an AuditRecord's parts are cut by it: operator/ingest/sessions.ts).
 *
 * The API server decodes our JSON and encodes the object again with Go's encoding/json before it goes to
 * etcd (custom resources are stored as JSON), and Go escapes more than JSON.stringify does:
 *
 *   < > &                     \u003c \u003e \u0026    6 bytes each (JSON.stringify: 1)
 *   U+2028, U+2029            \u2028 \u2029           6 bytes each (JSON.stringify: 3, raw UTF-8)
 *   \b \f                     \u0008 \u000c           6 bytes before Go 1.22 (JSON.stringify: 2)
 *   a lone surrogate          U+FFFD                  3 bytes stored (JSON.stringify sends \udxxx: 6)
 *
 * So a line of `<>&` measured with JSON.stringify is a sixth of what etcd is asked to hold. Each character
 * here costs the larger of the two encodings, so the figure bounds both the request we send and the object
 * stored; it is exact for text without \b, \f and lone surrogates. Numbers are counted as JavaScript prints
 * them, plus a little for a fraction or an exponent (Go may print those longer).
 */

/** Bytes of one string as a JSON string literal, quotes included (see the module comment). */
export function storedStringBytes(text: string): number {
  let bytes = 2;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0x0a || c === 0x0d || c === 0x09 || c === 0x22 || c === 0x5c) bytes += 2;
      else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26) bytes += 6;
      else bytes += 1;
    } else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 6;
    } else if (c >= 0xdc00 && c <= 0xdfff) bytes += 6;
    else if (c === 0x2028 || c === 0x2029) bytes += 6;
    else bytes += 3;
  }
  return bytes;
}

function numberBytes(n: number): number {
  if (!Number.isFinite(n)) return 4; // JSON has no such number: null
  const text = String(n);
  return Number.isInteger(n) && !text.includes('e') ? text.length : text.length + 4;
}

function valueBytes(value: unknown): number | undefined {
  if (value === null) return 4;
  if (typeof value === 'object' && 'toJSON' in value && typeof value.toJSON === 'function')
    return valueBytes((value.toJSON as () => unknown).call(value));
  switch (typeof value) {
    case 'string':
      return storedStringBytes(value);
    case 'number':
      return numberBytes(value);
    case 'boolean':
      return value ? 4 : 5;
    case 'bigint':
      return String(value).length;
    case 'object': {
      if (Array.isArray(value)) {
        let bytes = 2 + Math.max(0, value.length - 1);
        for (const item of value) bytes += valueBytes(item) ?? 4;
        return bytes;
      }
      let bytes = 2;
      let members = 0;
      for (const [key, item] of Object.entries(value)) {
        const size = valueBytes(item);
        if (size === undefined) continue;
        bytes += storedStringBytes(key) + 1 + size;
        members++;
      }
      return bytes + Math.max(0, members - 1);
    }
    default:
      // undefined, functions, symbols: left out of objects, as JSON.stringify does.
      return undefined;
  }
}

/** Bytes of `value` encoded as JSON the way the API server stores it (an upper bound of JSON.stringify's). */
export function storedBytes(value: unknown): number {
  return valueBytes(value) ?? 0;
}
