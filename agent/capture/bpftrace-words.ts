/**
 * Both capture scripts (readline/, exec/) print memory as 64-bit words in hexadecimal, eight per line (their
 * READMEs say why: bpftrace 0.17 cannot print arbitrary bytes faithfully as strings). This reads them back.
 */

const HEX = /^[0-9a-f]{1,16}$/;

/** Hex 64-bit words (as the scripts print them with %lx) -> their bytes, little-endian; undefined if malformed. */
export function hexWords(hex: readonly string[]): Buffer | undefined {
  const out = Buffer.alloc(hex.length * 8);
  for (const [i, h] of hex.entries()) {
    if (!HEX.test(h)) return undefined;
    out.writeBigUInt64LE(BigInt(`0x${h}`), i * 8);
  }
  return out;
}
