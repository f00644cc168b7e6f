/**
 * How bytes appear in a record, decided once for both sides: the agent encodes a command, an argv or a path
 * with these, and the operator turns an exec's argv into the command line an AuditRecord shows with the same
 * quoting the agent measured when it cut the argv to fit (so the operator copies, and never cuts).
 *
 * A text field is exact when the bytes are valid UTF-8; otherwise it is a readable rendering (U+FFFD for bad
 * bytes) and a `...Base64` field beside it holds the exact bytes. A UTF-8 rendering never has more UTF-16 code
 * units than the bytes it renders, so a bound in bytes bounds the text too.
 */
import { MAX_COMMAND_TEXT } from '../v1alpha1/auditrecord.js';

const STRICT = new TextDecoder('utf-8', { fatal: true });

export function isUtf8(bytes: Uint8Array): boolean {
  try {
    STRICT.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** `text` exact when the bytes are UTF-8; otherwise `text` readable and `base64` the exact bytes. */
export function recordText(bytes: Uint8Array): { text: string; base64?: string } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buffer)) return { text: buffer.toString('utf8') };
  return { text: buffer.toString('utf8'), base64: buffer.toString('base64') };
}

/**
 * A command's text fields within the AuditRecord's bound (MAX_COMMAND_TEXT bytes): the first bytes, exact,
 * and whether anything was left out. The agent has already cut the line to its policy's maxCommandBytes (at
 * most this bound); only a redaction marker longer than what it replaced can reach it.
 */
export function commandText(bytes: Uint8Array): { text: string; base64?: string; cut: boolean } {
  const cut = bytes.length > MAX_COMMAND_TEXT;
  return { ...recordText(cut ? bytes.subarray(0, MAX_COMMAND_TEXT) : bytes), cut };
}

// ---- an exec as one command line ----

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;
const QUOTE = 0x27;

/** argv as one line a reader can paste into a POSIX shell: arguments that need it are single-quoted. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (SAFE_WORD.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The same quoting over raw bytes (arguments that are not UTF-8). */
export function quoteArgvBytes(argv: readonly Uint8Array[]): Buffer {
  const quote = Buffer.from("'");
  const escaped = Buffer.from("'\\''");
  const parts = argv.map((bytes) => {
    const a = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (SAFE_WORD.test(a.toString('latin1'))) return a;
    const out: Buffer[] = [quote];
    let from = 0;
    for (let i = a.indexOf(QUOTE); i !== -1; i = a.indexOf(QUOTE, from)) {
      out.push(a.subarray(from, i), escaped);
      from = i + 1;
    }
    out.push(a.subarray(from), quote);
    return Buffer.concat(out);
  });
  return Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [Buffer.from(' '), p])));
}

/** The command line an exec record shows as: its quoted argv, and the quoted bytes when argv is not UTF-8. */
export function execCommandLine(
  argv: readonly string[],
  argvBase64?: readonly string[],
): { command: string; commandBase64?: string } {
  const command = quoteArgv(argv);
  if (argvBase64 === undefined) return { command };
  const bytes = quoteArgvBytes(argvBase64.map((a) => Buffer.from(a, 'base64')));
  return { command, commandBase64: bytes.toString('base64') };
}

/**
 * Bytes of the longest quoted prefix of `arg` that fits in `room` bytes (quoteArgvBytes' quoting), or -1 when
 * not even one byte does. The quoted size only grows with the prefix once it holds a byte.
 */
function prefixFitting(arg: Uint8Array, room: number): number {
  let quotes = 0;
  let unsafe = false;
  let best = -1;
  for (let k = 1; k <= arg.length; k++) {
    const b = arg[k - 1]!;
    if (b === QUOTE) quotes++;
    if (!SAFE_WORD.test(String.fromCharCode(b))) unsafe = true;
    const size = k + 3 * quotes + (unsafe ? 2 : 0);
    if (size > room) break;
    best = k;
  }
  return best;
}

/** Bytes of one argument as quoteArgvBytes writes it. */
function quotedSize(arg: Uint8Array): number {
  const latin1 = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString('latin1');
  if (SAFE_WORD.test(latin1)) return arg.length;
  let quotes = 0;
  for (const b of arg) if (b === QUOTE) quotes++;
  return arg.length + 3 * quotes + 2;
}

/**
 * argv kept to what its command line (quoteArgvBytes) fits in `maxBytes`, MAX_COMMAND_TEXT by default: the
 * arguments that fit, the one that straddles the bound cut, the rest left out. Quoting can make a line up to
 * four times longer than its argv, so an argv within maxCommandBytes may still need this.
 */
export function fitArgvToLine(
  args: readonly Uint8Array[],
  maxBytes = MAX_COMMAND_TEXT,
): { args: Uint8Array[]; cut: boolean } {
  const kept: Uint8Array[] = [];
  let used = 0;
  for (const arg of args) {
    const separator = kept.length > 0 ? 1 : 0;
    const size = quotedSize(arg);
    if (used + separator + size <= maxBytes) {
      kept.push(arg);
      used += separator + size;
      continue;
    }
    const prefix = prefixFitting(arg, maxBytes - used - separator);
    if (prefix > 0) kept.push(arg.subarray(0, prefix));
    return { args: kept, cut: true };
  }
  return { args: kept, cut: false };
}

/** Whether an exec's command line fits an AuditRecord (the agent fits it with fitArgvToLine). */
export function execLineFits(argv: readonly string[], argvBase64?: readonly string[]): boolean {
  const line = execCommandLine(argv, argvBase64);
  return (
    line.command.length <= MAX_COMMAND_TEXT &&
    (line.commandBase64 === undefined || Buffer.from(line.commandBase64, 'base64').length <= MAX_COMMAND_TEXT)
  );
}
