/**
 * Text that came from a container (commands typed, paths, names), made safe to show to a person. Terminals,
 * `kubectl describe` and log viewers act on control characters and reorder text around bidirectional
 * formatting characters, so such text can forge what a reader sees: a backspace erases what was typed, a
 * line feed starts a fake line, U+202E shows a command backwards. `escapeControls` shows each of them as an
 * escape instead, and nothing else changes:
 *
 *   C0 controls U+0000–U+001F, DEL U+007F, C1 controls U+0080–U+009F   \xHH        ("\b" -> "\x08")
 *   bidirectional marks, embeddings, overrides and isolates:
 *     U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069              \u{HHHH}    (U+202E -> "\u{202e}")
 *   line and paragraph separators U+2028, U+2029                        \u{HHHH}
 *   a UTF-16 surrogate without its pair                                 \u{HHHH}
 *   a backslash                                                         \\
 *
 * The backslash is escaped too, so the form is unambiguous: "\x08" in the output is always a backspace in the
 * input, and the input's own "\x08" reads "\\x08". Stored data (AuditRecords) keeps the exact bytes; this is
 * for what people read (Event messages, condition messages, log excerpts).
 *
 * `excerpt` is the escaped text cut to a budget (code points or UTF-8 bytes) with an ellipsis, never inside an
 * escape.
 */

export const ELLIPSIS = '…';

/** Any character escapeControls changes. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const UNSAFE = /[\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]/;

function isUnsafe(cp: number): boolean {
  return (
    cp < 0x20 ||
    (cp >= 0x7f && cp <= 0x9f) ||
    cp === 0x061c ||
    cp === 0x200e ||
    cp === 0x200f ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    // Only a lone surrogate reaches here as one: a pair is iterated as one code point above U+FFFF.
    (cp >= 0xd800 && cp <= 0xdfff)
  );
}

/** One character (one code point, as `for...of` yields it) as it is shown. */
function shown(ch: string): string {
  if (ch === '\\') return '\\\\';
  const cp = ch.codePointAt(0)!;
  if (!isUnsafe(cp)) return ch;
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16).padStart(4, '0')}}`;
}

/** `text` with controls, bidirectional formatting characters and backslashes shown as escapes. */
export function escapeControls(text: string): string {
  if (!UNSAFE.test(text)) return text;
  let out = '';
  for (const ch of text) out += shown(ch);
  return out;
}

export type ExcerptUnit = 'chars' | 'bytes';

const sizeOf = (s: string, unit: ExcerptUnit): number =>
  unit === 'bytes' ? Buffer.byteLength(s) : s.length === 1 ? 1 : [...s].length;

/**
 * An Event's note (its message): Kubernetes refuses a longer one, and STYLE.md keeps it under 1 KiB. Every
 * Event the operator writes is cut to it (excerpt, or shortened for text escaped already).
 */
export const MAX_EVENT_NOTE_BYTES = 1024;

/** `text`, each code point shown by `show`, cut to fit `max` with an ellipsis; a shown piece is never split. */
function cutShown(text: string, max: number, unit: ExcerptUnit, show: (ch: string) => string): string {
  const room = max - sizeOf(ELLIPSIS, unit);
  if (room < 0) return '';
  let out = '';
  let used = 0;
  for (const ch of text) {
    const piece = show(ch);
    const n = sizeOf(piece, unit);
    if (used + n > room) break;
    out += piece;
    used += n;
  }
  return out + ELLIPSIS;
}

/**
 * `text` escaped (escapeControls) and cut to at most `max` (default 80) code points (or UTF-8 bytes with unit
 * 'bytes'), ending in an ellipsis when cut; an escape is never split.
 */
export function excerpt(text: string, max = 80, unit: ExcerptUnit = 'chars'): string {
  const escaped = escapeControls(text);
  if (sizeOf(escaped, unit) <= max) return escaped;
  return cutShown(text, max, unit, shown);
}

/**
 * `text` as it is (escaped already, say: escaping twice would double its backslashes), cut like excerpt: to
 * at most `max` code points or UTF-8 bytes, with an ellipsis, never inside a surrogate pair.
 */
export function shortened(text: string, max: number, unit: ExcerptUnit = 'chars'): string {
  if (sizeOf(text, unit) <= max) return text;
  return cutShown(text, max, unit, (ch) => ch);
}
