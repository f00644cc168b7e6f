/**
 * Just enough of ELF to decide where `readline` lives: a defensive reader of 64-bit little-endian ELF
 * files (x86-64 and aarch64) over a Buffer. Pure: bytes in, facts or a reason out.
 *
 *   ELF header -> program headers: PT_INTERP (dynamic executable), PT_DYNAMIC (the dynamic section),
 *                 PT_LOAD (to turn the dynamic section's virtual addresses into file offsets)
 *   dynamic section -> DT_NEEDED, DT_SONAME, DT_RUNPATH/DT_RPATH (names in DT_STRTAB)
 *   symbols -> .dynsym by section header (SHT_DYNSYM + its linked string table); when the section headers
 *              are stripped or broken, DT_SYMTAB/DT_STRTAB with the count taken from DT_GNU_HASH or DT_HASH
 *
 * Only the dynamic symbol table matters: a uprobe needs a symbol the loader could bind, and a stripped
 * static bash has none, which the caller must report rather than guess around.
 *
 * The bytes come from a container image, so they are hostile: every offset and size is checked against the
 * buffer, counts and string lengths are capped so a crafted file cannot make us loop or allocate much, and
 * nothing here throws: a malformed file yields `{ ok: false, reason }`.
 *
 * Ours, not a tool or a library, for that reason. `ldd` runs the file's own loader (it executes the
 * container's code, as root, on the node), and `readelf`/`objdump` would be processes per target, not on
 * every node image, with outputs to parse. The ELF readers on npm parse whole files and trust their offsets
 * and counts (a crafted header sends them out of bounds or into huge allocations). We need four facts from
 * two tables, with bounds on everything: a few hundred lines we test against real and fuzzed files.
 */

export type ElfMachine = 'x86-64' | 'aarch64';

export interface ElfInfo {
  ok: true;
  machine: ElfMachine;
  type: 'EXEC' | 'DYN';
  /** PT_INTERP's path (the dynamic loader) if present. */
  interpreter: string | undefined;
  /** Has a PT_DYNAMIC segment. A static-pie has one but no interpreter. */
  dynamic: boolean;
  needed: string[];
  soname: string | undefined;
  /** DT_RUNPATH / DT_RPATH entries, split on ':' ($ORIGIN left for the caller to expand). */
  runpath: string[];
  rpath: string[];
}

export interface ElfError {
  ok: false;
  reason: string;
}

export type SymbolLookup = { ok: true; defined: boolean; table: '.dynsym' | 'DT_SYMTAB' } | ElfError;

/** Caps that bound the work a crafted file can cause. */
export const MAX_SYMBOLS = 500_000;
export const MAX_STRING = 4096;
const MAX_DYNAMIC_ENTRIES = 4096;
const MAX_NEEDED = 256;
const MAX_HASH_BUCKETS = 1 << 22;

const EM_X86_64 = 62;
const EM_AARCH64 = 183;
const ET_EXEC = 2;
const ET_DYN = 3;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const SHT_STRTAB = 3;
const SHT_DYNSYM = 11;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_HASH = 4;
const DT_STRTAB = 5;
const DT_SYMTAB = 6;
const DT_STRSZ = 10;
const DT_SYMENT = 11;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const DT_GNU_HASH = 0x6ffffef5;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const STB_GLOBAL = 1;
const STB_WEAK = 2;
const SHN_UNDEF = 0;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;

interface Segment {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

interface Section {
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

interface Parsed {
  machine: ElfMachine;
  type: 'EXEC' | 'DYN';
  segments: Segment[];
  /** Empty when the file has no (usable) section headers. */
  sections: Section[];
}

interface StringTable {
  offset: number;
  size: number;
}

interface Dynamic {
  entries: { tag: number; value: number }[];
  strtab: StringTable | undefined;
}

const fail = (reason: string): ElfError => ({ ok: false, reason });

/** [offset, offset + length) lies inside the buffer (all numbers are non-negative safe integers). */
function fits(buf: Buffer, offset: number, length: number): boolean {
  return offset >= 0 && length >= 0 && offset <= buf.length && length <= buf.length - offset;
}

/** A u64 as a number, or -1 when it cannot be a file offset or size (beyond 2^53). */
function u64(buf: Buffer, offset: number): number {
  const value = buf.readBigUInt64LE(offset);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(value);
}

/** The ELF header's size: what readElfHeader needs of a file. */
export const ELF_HEADER_BYTES = EHDR_SIZE;

/**
 * What the first ELF_HEADER_BYTES of a file say: a 64-bit little-endian EXEC or DYN for a machine we know, or
 * why not. Enough to pass over a file the loader would pass over (another machine) without reading the rest.
 */
export function readElfHeader(
  buf: Buffer,
): { ok: true; machine: ElfMachine; type: 'EXEC' | 'DYN' } | ElfError {
  if (buf.length < EHDR_SIZE) return fail(`too short for an ELF header (${buf.length} bytes)`);
  if (buf.readUInt32BE(0) !== 0x7f454c46) return fail('not an ELF file (bad magic)');
  if (buf[4] !== 2) return fail('not a 64-bit ELF file (32-bit bash is not supported)');
  if (buf[5] !== 1) return fail('not a little-endian ELF file');
  const eType = buf.readUInt16LE(16);
  if (eType !== ET_EXEC && eType !== ET_DYN) return fail(`ELF type ${eType} is neither EXEC nor DYN`);
  const eMachine = buf.readUInt16LE(18);
  const machine = eMachine === EM_X86_64 ? 'x86-64' : eMachine === EM_AARCH64 ? 'aarch64' : undefined;
  if (!machine) return fail(`unsupported ELF machine ${eMachine} (only x86-64 and aarch64)`);
  return { ok: true, machine, type: eType === ET_EXEC ? 'EXEC' : 'DYN' };
}

function parse(buf: Buffer): Parsed | ElfError {
  const header = readElfHeader(buf);
  if (!header.ok) return header;
  const { machine, type } = header;

  const phoff = u64(buf, 32);
  const shoff = u64(buf, 40);
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);

  // Program headers are what the loader uses: without them there is nothing to trust.
  if (phnum === 0xffff) return fail('extended program header count (PN_XNUM) is not supported');
  if (phnum > 0 && phentsize !== PHDR_SIZE) return fail(`program header size ${phentsize}, not 56`);
  if (phoff < 0 || !fits(buf, phoff, phnum * PHDR_SIZE)) return fail('program headers lie outside the file');
  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    const segment = {
      type: buf.readUInt32LE(at),
      offset: u64(buf, at + 8),
      vaddr: u64(buf, at + 16),
      filesz: u64(buf, at + 32),
    };
    if (segment.offset >= 0 && segment.vaddr >= 0 && segment.filesz >= 0) segments.push(segment);
  }

  // Section headers are optional (strip can drop them, sstrip does): a broken table counts as absent, and
  // symbol lookup falls back to the dynamic segment.
  const sections: Section[] = [];
  if (shoff > 0 && shnum > 0 && shentsize === SHDR_SIZE && fits(buf, shoff, shnum * SHDR_SIZE)) {
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * SHDR_SIZE;
      sections.push({
        type: buf.readUInt32LE(at + 4),
        offset: u64(buf, at + 24),
        size: u64(buf, at + 32),
        link: buf.readUInt32LE(at + 40),
        entsize: u64(buf, at + 56),
      });
    }
  }
  return { machine, type, segments, sections };
}

/** File offset of a virtual address, through the PT_LOAD segment that maps it from the file. */
function fileOffset(parsed: Parsed, vaddr: number): number | undefined {
  for (const s of parsed.segments) {
    if (s.type === PT_LOAD && vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
      return s.offset + (vaddr - s.vaddr);
  }
  return undefined;
}

/** The NUL-terminated string at `index` of a string table, or undefined if it runs off the table. */
function stringAt(buf: Buffer, table: StringTable, index: number): string | undefined {
  if (index < 0 || index >= table.size) return undefined;
  const start = table.offset + index;
  const end = Math.min(table.offset + table.size, start + MAX_STRING);
  // Search only within the cap: an unterminated string must not make us scan the whole file.
  const length = buf.subarray(start, end).indexOf(0);
  if (length < 0) return undefined;
  return buf.toString('latin1', start, start + length);
}

function readDynamic(buf: Buffer, parsed: Parsed): Dynamic | ElfError | undefined {
  const segment = parsed.segments.find((s) => s.type === PT_DYNAMIC);
  if (!segment) return undefined;
  if (!fits(buf, segment.offset, segment.filesz)) return fail('PT_DYNAMIC lies outside the file');
  const entries: { tag: number; value: number }[] = [];
  const count = Math.min(Math.floor(segment.filesz / 16), MAX_DYNAMIC_ENTRIES);
  for (let i = 0; i < count; i++) {
    const at = segment.offset + i * 16;
    // Tags we know are small; anything beyond 2^53 is unknown to us either way.
    const tag = Number(buf.readBigInt64LE(at));
    if (tag === DT_NULL) break;
    entries.push({ tag, value: u64(buf, at + 8) });
  }
  const value = (tag: number): number | undefined => entries.find((e) => e.tag === tag)?.value;
  const strVaddr = value(DT_STRTAB);
  const strSize = value(DT_STRSZ);
  let strtab: StringTable | undefined;
  if (strVaddr !== undefined && strVaddr >= 0 && strSize !== undefined && strSize >= 0) {
    const offset = fileOffset(parsed, strVaddr);
    if (offset !== undefined && offset <= buf.length)
      strtab = { offset, size: Math.min(strSize, buf.length - offset) };
  }
  return { entries, strtab };
}

/** The ELF's kind, machine, linkage and dynamic dependencies. */
export function readElf(buf: Buffer): ElfInfo | ElfError {
  try {
    const parsed = parse(buf);
    if ('ok' in parsed) return parsed;
    let interpreter: string | undefined;
    const interp = parsed.segments.find((s) => s.type === PT_INTERP);
    if (interp) {
      if (!fits(buf, interp.offset, interp.filesz)) return fail('PT_INTERP lies outside the file');
      interpreter = stringAt(buf, { offset: interp.offset, size: interp.filesz }, 0);
      if (interpreter === undefined) return fail('PT_INTERP is not a terminated string');
    }
    const dynamic = readDynamic(buf, parsed);
    if (dynamic && 'ok' in dynamic) return dynamic;
    const info: ElfInfo = {
      ok: true,
      machine: parsed.machine,
      type: parsed.type,
      interpreter,
      dynamic: dynamic !== undefined,
      needed: [],
      soname: undefined,
      runpath: [],
      rpath: [],
    };
    if (!dynamic) return info;
    const named = dynamic.entries.filter((e) => [DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH].includes(e.tag));
    if (named.length > 0 && !dynamic.strtab)
      return fail('dynamic section names strings but has no DT_STRTAB');
    for (const entry of named) {
      const name = stringAt(buf, dynamic.strtab!, entry.value);
      if (name === undefined) return fail(`dynamic entry ${entry.tag} points outside DT_STRTAB`);
      if (entry.tag === DT_NEEDED) {
        if (info.needed.length >= MAX_NEEDED) return fail(`more than ${MAX_NEEDED} DT_NEEDED entries`);
        info.needed.push(name);
      } else if (entry.tag === DT_SONAME) info.soname = name;
      else (entry.tag === DT_RPATH ? info.rpath : info.runpath).push(...name.split(':').filter(Boolean));
    }
    return info;
  } catch (error) {
    // Belt and braces: the checks above should make this unreachable.
    return fail(`malformed ELF (${error instanceof Error ? error.message : String(error)})`);
  }
}

/** Number of DT_SYMTAB entries, from the hash tables (the dynamic section does not record it). */
function dynamicSymbolCount(buf: Buffer, parsed: Parsed, dynamic: Dynamic): number | ElfError {
  const gnuHash = dynamic.entries.find((e) => e.tag === DT_GNU_HASH)?.value;
  if (gnuHash !== undefined && gnuHash >= 0) {
    const at = fileOffset(parsed, gnuHash);
    if (at === undefined || !fits(buf, at, 16)) return fail('DT_GNU_HASH lies outside the file');
    const nbuckets = buf.readUInt32LE(at);
    const symoffset = buf.readUInt32LE(at + 4);
    const bloomSize = buf.readUInt32LE(at + 8);
    if (nbuckets > MAX_HASH_BUCKETS || bloomSize > MAX_HASH_BUCKETS) return fail('DT_GNU_HASH is too large');
    const buckets = at + 16 + bloomSize * 8;
    if (!fits(buf, buckets, nbuckets * 4)) return fail('DT_GNU_HASH buckets lie outside the file');
    let last = 0;
    for (let i = 0; i < nbuckets; i++) last = Math.max(last, buf.readUInt32LE(buckets + i * 4));
    if (last === 0) return symoffset;
    if (last < symoffset) return fail('DT_GNU_HASH bucket points below symoffset');
    // Walk the last bucket's chain to its end marker (low bit set): that symbol is the table's last.
    const chains = buckets + nbuckets * 4;
    for (let index = last; index < MAX_SYMBOLS; index++) {
      const entry = chains + (index - symoffset) * 4;
      if (!fits(buf, entry, 4)) return fail('DT_GNU_HASH chain runs off the file');
      if (buf.readUInt32LE(entry) & 1) return index + 1;
    }
    return fail(`more than ${MAX_SYMBOLS} dynamic symbols`);
  }
  const hash = dynamic.entries.find((e) => e.tag === DT_HASH)?.value;
  if (hash !== undefined && hash >= 0) {
    const at = fileOffset(parsed, hash);
    if (at === undefined || !fits(buf, at, 8)) return fail('DT_HASH lies outside the file');
    return buf.readUInt32LE(at + 4); // nchain == number of symbols
  }
  return fail('no section headers and no DT_GNU_HASH/DT_HASH to size DT_SYMTAB');
}

/** Whether `name` (or a versioned `name@...`) is a defined global/weak function in the table. */
function scan(
  buf: Buffer,
  symbols: number,
  count: number,
  strtab: StringTable,
  name: Buffer,
): boolean | ElfError {
  if (count > MAX_SYMBOLS) return fail(`more than ${MAX_SYMBOLS} dynamic symbols`);
  if (!fits(buf, symbols, count * SYM_SIZE)) return fail('dynamic symbol table lies outside the file');
  for (let i = 0; i < count; i++) {
    const at = symbols + i * SYM_SIZE;
    const info = buf[at + 4]!;
    const type = info & 0xf;
    const bind = info >> 4;
    if (type !== STT_FUNC && type !== STT_GNU_IFUNC) continue;
    if (bind !== STB_GLOBAL && bind !== STB_WEAK) continue;
    if (buf.readUInt16LE(at + 6) === SHN_UNDEF) continue;
    const index = buf.readUInt32LE(at);
    // Compare bytes in place: no string per symbol, and the name must end at NUL or '@' within the table.
    const start = strtab.offset + index;
    const after = start + name.length;
    if (index >= strtab.size || after >= strtab.offset + strtab.size) continue;
    if (buf.compare(name, 0, name.length, start, after) !== 0) continue;
    if (buf[after] === 0 || buf[after] === 0x40) return true;
  }
  return false;
}

/**
 * Whether the file's dynamic symbol table defines `name` as a function the loader can bind (FUNC or IFUNC,
 * GLOBAL or WEAK, not undefined): what a uprobe on that file by symbol name needs.
 */
export function definesSymbol(buf: Buffer, name: string): SymbolLookup {
  try {
    const parsed = parse(buf);
    if ('ok' in parsed) return parsed;
    const wanted = Buffer.from(name, 'latin1');
    if (wanted.length === 0 || wanted.includes(0)) return fail('empty or NUL-containing symbol name');

    const dynsym = parsed.sections.find((s) => s.type === SHT_DYNSYM);
    const linked = dynsym ? parsed.sections[dynsym.link] : undefined;
    if (dynsym && linked?.type === SHT_STRTAB && dynsym.entsize === SYM_SIZE && dynsym.size >= 0) {
      if (linked.offset < 0 || linked.size < 0 || !fits(buf, linked.offset, linked.size))
        return fail('.dynstr lies outside the file');
      const found = scan(buf, dynsym.offset, Math.floor(dynsym.size / SYM_SIZE), linked, wanted);
      return typeof found === 'boolean' ? { ok: true, defined: found, table: '.dynsym' } : found;
    }

    // No usable section headers: the dynamic segment describes the same table for the loader.
    const dynamic = readDynamic(buf, parsed);
    if (!dynamic) return { ok: true, defined: false, table: 'DT_SYMTAB' }; // static: no dynamic symbols
    if ('ok' in dynamic) return dynamic;
    const symtab = dynamic.entries.find((e) => e.tag === DT_SYMTAB)?.value;
    const syment = dynamic.entries.find((e) => e.tag === DT_SYMENT)?.value;
    if (symtab === undefined || symtab < 0) return { ok: true, defined: false, table: 'DT_SYMTAB' };
    if (syment !== undefined && syment !== SYM_SIZE) return fail(`DT_SYMENT ${syment}, not 24`);
    if (!dynamic.strtab) return fail('DT_SYMTAB without DT_STRTAB/DT_STRSZ');
    const symbols = fileOffset(parsed, symtab);
    if (symbols === undefined) return fail('DT_SYMTAB is not mapped from the file');
    const count = dynamicSymbolCount(buf, parsed, dynamic);
    if (typeof count !== 'number') return count;
    const found = scan(buf, symbols, count, dynamic.strtab, wanted);
    return typeof found === 'boolean' ? { ok: true, defined: found, table: 'DT_SYMTAB' } : found;
  } catch (error) {
    return fail(`malformed ELF (${error instanceof Error ? error.message : String(error)})`);
  }
}
