/**
 * How a capture script's output is described as data (readline/format.ts, exec/format.ts): each kind of line
 * its tag, its decimal fields in order, the hexadecimal words after them, and what it means. The parsers read
 * lines by these descriptions, and each folder's format.test.ts checks its README's table (and the template's
 * header, where it lists the lines) against them, so the prose cannot drift from what is parsed.
 */

/** One kind of output line: `<tag> <field>... <w0> .. <w7>`, separated by single spaces. */
export interface LineFormat {
  /** Decimal fields after the tag, in order. */
  readonly fields: readonly string[];
  /** Hexadecimal 64-bit words after the fields (0, or 8: one 64-byte chunk). */
  readonly words: number;
  readonly meaning: string;
}

/** A bpftrace map the script prints: `@<name>[<key>]: <value>` lines. */
export interface TallyFormat {
  readonly key: string;
  readonly meaning: string;
}

/** The line as the READMEs write it: `C pid tid ns uid cgroup mntns chunk w0 … w7`. */
export function lineSyntax(tag: string, format: LineFormat): string {
  const words = format.words > 0 ? ['w0', '…', `w${format.words - 1}`] : [];
  return [tag, ...format.fields, ...words].join(' ');
}

/** A map's line as the READMEs write it: `@rl_dropped_lines[mntns]: n`. */
export function tallySyntax(name: string, format: TallyFormat): string {
  return `@${name}[${format.key}]: n`;
}

/** Number of space-separated parts of a line of this format, its tag included. */
export function partsOf(format: LineFormat): number {
  return 1 + format.fields.length + format.words;
}

/** A line split by its format: decimal fields by name, then the hexadecimal words (not yet read). */
export type SplitLine<T extends string> =
  | { ok: true; tag: T; values: Readonly<Record<string, string>>; words: string[] }
  | { ok: false; reason: 'noise' | 'malformed' };

const DEC = /^\d{1,20}$/;

/**
 * One line of bpftrace's output by `formats`: a line whose tag is none of them is noise (bpftrace's own
 * messages, "Attaching 1 probe..."); one with a known tag but the wrong number of parts, or a field that is
 * not a decimal number, is malformed.
 */
export function splitLine<T extends string>(
  line: string,
  formats: Readonly<Record<T, LineFormat>>,
): SplitLine<T> {
  const parts = line.trimEnd().split(' ');
  const tag = parts[0] ?? '';
  if (!Object.hasOwn(formats, tag)) return { ok: false, reason: 'noise' };
  const format = formats[tag as T];
  if (parts.length !== partsOf(format)) return { ok: false, reason: 'malformed' };
  const values: Record<string, string> = {};
  for (const [i, name] of format.fields.entries()) {
    const value = parts[1 + i]!;
    if (!DEC.test(value)) return { ok: false, reason: 'malformed' };
    values[name] = value;
  }
  return { ok: true, tag: tag as T, values, words: parts.slice(1 + format.fields.length) };
}
