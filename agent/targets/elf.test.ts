/**
 * The ELF reader against real Debian files (bash exports readline, busybox-static has no dynamic symbols,
 * libreadline defines it) and against hostile bytes, which must give an error value or a sane answer and
 * never throw.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { definesSymbol, readElf } from './elf.js';

const bash = readFileSync('/bin/bash');
const busybox = readFileSync('/bin/busybox');
const libreadline = readFileSync('/lib/x86_64-linux-gnu/libreadline.so.8');

/** A copy with the section header table gone, as `sstrip` leaves files. */
function withoutSections(buf: Buffer): Buffer {
  const copy = Buffer.from(buf);
  copy.writeBigUInt64LE(0n, 40); // e_shoff
  copy.writeUInt16LE(0, 60); // e_shnum
  copy.writeUInt16LE(0, 62); // e_shstrndx
  return copy;
}

describe('readElf on real files', () => {
  it('reads Debian bash as a dynamic x86-64 PIE with its libraries', () => {
    const info = readElf(bash);
    if (!info.ok) throw new Error(info.reason);
    expect(info).toMatchObject({ machine: 'x86-64', type: 'DYN', dynamic: true });
    expect(info.interpreter).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(info.needed).toEqual(expect.arrayContaining(['libtinfo.so.6', 'libc.so.6']));
    expect(info.soname).toBeUndefined();
  });

  it('reads busybox-static as static: no interpreter, no dynamic section', () => {
    const info = readElf(busybox);
    if (!info.ok) throw new Error(info.reason);
    expect(info).toMatchObject({ machine: 'x86-64', type: 'EXEC', dynamic: false, interpreter: undefined });
    expect(info.needed).toEqual([]);
  });

  it("reads libreadline's SONAME and dependencies", () => {
    const info = readElf(libreadline);
    if (!info.ok) throw new Error(info.reason);
    expect(info).toMatchObject({ type: 'DYN', soname: 'libreadline.so.8', interpreter: undefined });
    expect(info.needed).toContain('libc.so.6');
  });

  it('rejects what is not ELF64 LE x86-64/aarch64, with a reason', () => {
    expect(readElf(Buffer.from('#!/bin/sh\necho hi\n'.padEnd(100)))).toEqual({
      ok: false,
      reason: 'not an ELF file (bad magic)',
    });
    const elf32 = Buffer.from(bash);
    elf32[4] = 1;
    expect(readElf(elf32)).toMatchObject({ ok: false, reason: expect.stringContaining('64-bit') as string });
    const bigEndian = Buffer.from(bash);
    bigEndian[5] = 2;
    expect(readElf(bigEndian)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('little') as string,
    });
    const riscv = Buffer.from(bash);
    riscv.writeUInt16LE(243, 18);
    expect(readElf(riscv)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('machine 243') as string,
    });
    const arm64 = Buffer.from(bash);
    arm64.writeUInt16LE(183, 18);
    expect(readElf(arm64)).toMatchObject({ ok: true, machine: 'aarch64' });
    const core = Buffer.from(bash);
    core.writeUInt16LE(4, 16);
    expect(readElf(core)).toMatchObject({ ok: false, reason: expect.stringContaining('type 4') as string });
  });
});

describe('definesSymbol on real files', () => {
  it('finds readline defined in Debian bash, but not a function bash only imports', () => {
    expect(definesSymbol(bash, 'readline')).toEqual({ ok: true, defined: true, table: '.dynsym' });
    // bash calls malloc from libc: present in .dynsym, but undefined there.
    expect(definesSymbol(bash, 'malloc')).toMatchObject({ ok: true, defined: false });
    expect(definesSymbol(bash, 'readlin')).toMatchObject({ ok: true, defined: false });
    expect(definesSymbol(bash, 'readlinex')).toMatchObject({ ok: true, defined: false });
  });

  it('finds no readline in busybox-static', () => {
    expect(definesSymbol(busybox, 'readline')).toMatchObject({ ok: true, defined: false });
  });

  it('finds readline in libreadline, but not a data symbol such as rl_line_buffer', () => {
    expect(definesSymbol(libreadline, 'readline')).toEqual({ ok: true, defined: true, table: '.dynsym' });
    expect(definesSymbol(libreadline, 'rl_initialize')).toMatchObject({ ok: true, defined: true });
    expect(definesSymbol(libreadline, 'rl_line_buffer')).toMatchObject({ ok: true, defined: false });
  });

  it('falls back to DT_SYMTAB + DT_GNU_HASH when the section headers are stripped', () => {
    for (const file of [bash, libreadline]) {
      const stripped = withoutSections(file);
      expect(definesSymbol(stripped, 'readline')).toEqual({ ok: true, defined: true, table: 'DT_SYMTAB' });
      expect(definesSymbol(stripped, 'malloc')).toMatchObject({ ok: true, defined: false });
    }
    // Same result with junk section headers (out of range) instead of none.
    const junk = Buffer.from(libreadline);
    junk.writeBigUInt64LE(0xffff_ffff_ffffn, 40);
    expect(definesSymbol(junk, 'readline')).toEqual({ ok: true, defined: true, table: 'DT_SYMTAB' });
  });
});

describe('hostile input', () => {
  /** Never throws; an answer is either an error with a reason or well-formed. */
  function survives(buf: Buffer): void {
    const info = readElf(buf);
    if (info.ok) expect(Array.isArray(info.needed)).toBe(true);
    else expect(info.reason).toEqual(expect.any(String));
    const found = definesSymbol(buf, 'readline');
    if (found.ok) expect(typeof found.defined).toBe('boolean');
    else expect(found.reason.length).toBeGreaterThan(0);
  }

  it('survives empty and truncated files', () => {
    expect(readElf(Buffer.alloc(0))).toMatchObject({ ok: false });
    expect(definesSymbol(Buffer.alloc(0), 'readline')).toMatchObject({ ok: false });
    for (let length = 0; length <= 4096; length += 7) survives(bash.subarray(0, length));
    // Cut inside the dynamic symbol table and string table, too.
    for (let length = 4096; length < bash.length; length += 65_537) survives(bash.subarray(0, length));
    // A truncated header is an error, not a guess.
    expect(readElf(bash.subarray(0, 63))).toMatchObject({ ok: false });
    expect(readElf(bash.subarray(0, 200))).toMatchObject({ ok: false }); // program headers cut off
  });

  it('survives random bytes, with and without a valid-looking header', () => {
    for (let i = 0; i < 200; i++) {
      survives(randomBytes(i * 13));
      const fuzzed = Buffer.concat([bash.subarray(0, 20), randomBytes(4000)]);
      survives(fuzzed);
    }
  });

  it('survives absurd counts and offsets in the header', () => {
    const cases: [number, (b: Buffer) => void][] = [
      [1, (b) => b.writeUInt16LE(0xffff, 60)], // e_shnum
      [2, (b) => b.writeBigUInt64LE(0xffff_ffff_ffff_ffffn, 32)], // e_phoff
      [3, (b) => b.writeBigUInt64LE(BigInt(b.length - 10), 32)],
      [4, (b) => b.writeUInt16LE(0xffff, 56)], // e_phnum = PN_XNUM
      [5, (b) => b.writeUInt16LE(0xfffe, 56)],
      [6, (b) => b.writeUInt16LE(1, 54)], // e_phentsize
      [7, (b) => b.writeBigUInt64LE(0x7fff_ffff_ffff_fff0n, 40)], // e_shoff
      [8, (b) => b.writeUInt16LE(0, 58)], // e_shentsize
    ];
    for (const [, corrupt] of cases) {
      const copy = Buffer.from(bash);
      corrupt(copy);
      survives(copy);
    }
    const farPhoff = Buffer.from(bash);
    farPhoff.writeBigUInt64LE(0xffff_ffff_ffff_ffffn, 32);
    expect(readElf(farPhoff)).toEqual({ ok: false, reason: 'program headers lie outside the file' });
  });

  it('survives corrupt program headers, dynamic entries and symbols', () => {
    const info = readElf(bash);
    if (!info.ok) throw new Error(info.reason);
    const phoff = Number(bash.readBigUInt64LE(32));
    const phnum = bash.readUInt16LE(56);
    // Corrupt every 8-byte field of every program header, one at a time, with huge and small values.
    for (let i = 0; i < phnum; i++) {
      for (let field = 8; field < 56; field += 8) {
        for (const value of [0xffff_ffff_ffff_ffffn, 0x7fff_ffffn, 0n]) {
          const copy = Buffer.from(bash);
          copy.writeBigUInt64LE(value, phoff + i * 56 + field);
          survives(copy);
        }
      }
    }
    // Every word of the dynamic section and a stretch of .dynsym, overwritten with garbage.
    const dynamic = [...Array(phnum).keys()]
      .map((i) => phoff + i * 56)
      .find((at) => bash.readUInt32LE(at) === 2);
    const dynamicAt = Number(bash.readBigUInt64LE(dynamic! + 8));
    expect(bash.readBigInt64LE(dynamicAt)).toBe(1n); // DT_NEEDED first
    for (let at = dynamicAt; at < dynamicAt + 30 * 16; at += 8) {
      const copy = Buffer.from(bash);
      copy.writeBigUInt64LE(0xffff_ffff_0000_0000n + BigInt(at), at);
      survives(copy);
    }
    // The hash table, .dynsym and .dynstr follow the program headers in a PIE built by GNU ld.
    for (let at = phoff + phnum * 56; at < 0x8000; at += 52) {
      const copy = withoutSections(bash);
      copy.writeUInt32LE(0xffff_ffff, at);
      survives(copy);
    }
  });

  it('rejects a name that cannot be a symbol', () => {
    expect(definesSymbol(bash, '')).toMatchObject({ ok: false });
    expect(definesSymbol(bash, 'read\0line')).toMatchObject({ ok: false });
  });
});
