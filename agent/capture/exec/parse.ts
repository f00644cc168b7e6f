/**
 * Parses what exec.bt.tpl prints and assembles each exec's lines into its exact file name and argv.
 * Pure: lines in, captured execs out. Format: format.ts (described in README.md).
 *
 * The lines of one exec come in order (one probe hit, on one CPU), but execs on different CPUs interleave, so
 * lines are grouped by exec (pid, tid, ns). The last line of an exec announces how many chunks it printed;
 * an exec with a chunk missing, out of order or inconsistent is dropped and counted, never emitted with a
 * wrong argv. Lines that are not the script's (bpftrace's own messages) are counted as noise.
 */
import { hexWords } from '../bpftrace-words.js';
import { splitLine } from '../output-format.js';
import { EXEC_LINES } from './format.js';
import { EXEC_CHUNK_BYTES } from './script.js';

/** The script reads the file name up to this many chunks (PATH_MAX, 4096 bytes with its NUL). */
export const PATH_MAX_CHUNKS = 64;

export interface ExecKey {
  pid: number;
  tid: number;
  /** bpftrace's nsecs at the exec (monotonic clock). */
  ns: bigint;
}

/** Who exec'd, as the kernel saw it after the exec. */
export interface ExecOrigin {
  /** Real uid of the new program. */
  uid: number;
  /** cgroup v2 id (1 where there is no cgroup v2 hierarchy). */
  cgroup: bigint;
  /** Inode of the mount namespace: identifies the container. */
  mntns: number;
}

export type ExecEvent =
  | (ExecKey & ExecOrigin & { kind: 'path' | 'path-last' | 'argv'; index: number; bytes: Buffer })
  | (ExecKey &
      ExecOrigin & {
        kind: 'end';
        /** The parent's tgid. */
        ppid: number;
        /** arg_end - arg_start: every argv string with its NUL. */
        argvBytes: number;
        /** Of those, the bytes printed (at most the script's maxArgvBytes). */
        argvKept: number;
        pathChunks: number;
        argvChunks: number;
      });

/** The script's first line: bpftrace's output loop runs, its probe is attached. */
export type ExecReadyEvent = { kind: 'ready' };

export type ParsedExecLine =
  { ok: true; event: ExecEvent | ExecReadyEvent } | { ok: false; reason: 'noise' | 'malformed' };

export interface CapturedExec extends ExecKey, ExecOrigin {
  ppid: number;
  /** The path exec was given (as given: relative, or /dev/fd/N for fexecve), exact bytes. */
  filename: Buffer;
  /** The path was longer than PATH_MAX_CHUNKS chunks and was cut. */
  filenameTruncated: boolean;
  /** argv, exact bytes, up to the bound; when truncated, the last one may be cut. */
  argv: Buffer[];
  /** argv was longer than the bound (maxArgvBytes) and was cut. */
  truncated: boolean;
  /** The size of the whole argv, NULs included (more than was kept when truncated). */
  argvBytes: number;
}

const KINDS = { P: 'path', Q: 'path-last', A: 'argv', E: 'end', R: 'ready' } as const;
/** Fields that are 64-bit (kept as bigint); every other field must fit a number (pids, uid, inode, sizes). */
const BIG = new Set(['ns', 'cgroup']);

/** One line of bpftrace's output, read by its description (format.ts). */
export function parseExecLine(line: string): ParsedExecLine {
  const split = splitLine(line, EXEC_LINES);
  if (!split.ok) return split;
  const kind = KINDS[split.tag];
  if (kind === 'ready') return { ok: true, event: { kind } };
  const n: Record<string, number> = {};
  for (const [name, text] of Object.entries(split.values)) {
    n[name] = Number(text);
    if (!BIG.has(name) && !Number.isSafeInteger(n[name])) return { ok: false, reason: 'malformed' };
  }
  const v = split.values;
  const base = {
    pid: n.pid!,
    tid: n.tid!,
    ns: BigInt(v.ns!),
    uid: n.uid!,
    cgroup: BigInt(v.cgroup!),
    mntns: n.mntns!,
  };
  if (kind === 'end') {
    const end = {
      kind,
      ppid: n.ppid!,
      argvBytes: n.argbytes!,
      argvKept: n.kept!,
      pathChunks: n.pchunks!,
      argvChunks: n.achunks!,
    };
    return { ok: true, event: { ...base, ...end } };
  }
  const bytes = hexWords(split.words);
  if (!bytes) return { ok: false, reason: 'malformed' };
  return { ok: true, event: { ...base, kind, index: n.chunk!, bytes } };
}

/** argv as the kernel lays it out: strings each ended by a NUL. A last string without its NUL was cut. */
export function splitArgv(area: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let nul = area.indexOf(0); nul >= 0; nul = area.indexOf(0, start)) {
    out.push(area.subarray(start, nul));
    start = nul + 1;
  }
  if (start < area.length) out.push(area.subarray(start));
  return out;
}

interface Pending {
  key: ExecKey;
  origin: ExecOrigin;
  path: Buffer[];
  /** A path-last chunk arrived: the path is complete. */
  pathDone: boolean;
  argv: Buffer[];
  /** Already counted as dropped: the rest of its lines are ignored. */
  dropped: boolean;
}

export interface ExecAssemblerOptions {
  /** Execs waiting for their last line at most; beyond, the oldest is dropped. */
  maxPending?: number;
  /** An exec still incomplete this long (bpftrace ns) after a later one completed lost its last line. */
  staleNs?: bigint;
}

function allZero(bytes: Buffer): boolean {
  return bytes.every((b) => b === 0);
}

export class ExecAssembler {
  private readonly pending = new Map<string, Pending>();
  private readonly maxPending: number;
  private readonly staleNs: bigint;
  private prunedAtNs = 0n;
  readonly stats = { execs: 0, truncated: 0, noise: 0, malformedLines: 0, dropped: 0 };

  constructor(options: ExecAssemblerOptions = {}) {
    this.maxPending = options.maxPending ?? 1024;
    this.staleNs = options.staleNs ?? 5_000_000_000n;
  }

  /** Parses and feeds one line of output; returns the exec it completed, if any. */
  pushLine(line: string): CapturedExec | undefined {
    const parsed = parseExecLine(line);
    if (parsed.ok) return this.push(parsed.event);
    if (parsed.reason === 'noise') this.stats.noise++;
    else this.stats.malformedLines++;
    return undefined;
  }

  /** Feeds one event; returns the exec it completed, if any. */
  push(event: ExecEvent | ExecReadyEvent): CapturedExec | undefined {
    if (event.kind === 'ready') return undefined;
    const key = `${event.pid}/${event.tid}/${event.ns}`;
    const entry = this.pending.get(key);
    if (event.kind === 'end') {
      this.pending.delete(key);
      if (event.ns - this.prunedAtNs > 1_000_000_000n) this.pruneStale(event.ns);
      if (entry?.dropped) return undefined;
      const exec = entry && this.complete(entry, event);
      if (!exec) this.stats.dropped++;
      return exec;
    }
    if (entry?.dropped) return undefined;
    if (!entry) {
      const fresh: Pending = {
        key: { pid: event.pid, tid: event.tid, ns: event.ns },
        origin: { uid: event.uid, cgroup: event.cgroup, mntns: event.mntns },
        path: [],
        pathDone: false,
        argv: [],
        dropped: false,
      };
      this.pending.set(key, fresh);
      this.evictOverflow();
      return this.add(fresh, event);
    }
    return this.add(entry, event);
  }

  private add(entry: Pending, event: ExecEvent & { kind: 'path' | 'path-last' | 'argv' }): undefined {
    if (!this.accepts(entry, event)) this.drop(entry);
    else if (event.kind === 'argv') entry.argv.push(event.bytes);
    else {
      entry.path.push(event.bytes);
      entry.pathDone = event.kind === 'path-last';
    }
    return undefined;
  }

  private drop(entry: Pending): void {
    entry.dropped = true;
    entry.path = [];
    entry.argv = [];
    this.stats.dropped++;
  }

  /** Whether a chunk is the next one this exec expects, from the same process. */
  private accepts(entry: Pending, event: ExecEvent & { kind: 'path' | 'path-last' | 'argv' }): boolean {
    const o = entry.origin;
    if (o.uid !== event.uid || o.cgroup !== event.cgroup || o.mntns !== event.mntns) return false;
    if (event.kind === 'argv') return event.index === entry.argv.length;
    return !entry.pathDone && entry.argv.length === 0 && event.index === entry.path.length;
  }

  private complete(entry: Pending, end: ExecEvent & { kind: 'end' }): CapturedExec | undefined {
    const o = entry.origin;
    if (o.uid !== end.uid || o.cgroup !== end.cgroup || o.mntns !== end.mntns) return undefined;
    // Every chunk announced arrived, and the announcement agrees with itself.
    if (entry.path.length !== end.pathChunks || entry.argv.length !== end.argvChunks) return undefined;
    if (end.argvKept > end.argvBytes || end.argvChunks !== Math.ceil(end.argvKept / EXEC_CHUNK_BYTES))
      return undefined;
    if (!entry.pathDone && entry.path.length !== PATH_MAX_CHUNKS) return undefined;
    // The kernel zeroes what follows the path's NUL and argv's end: anything else is not its output.
    const path = Buffer.concat(entry.path);
    const nul = path.indexOf(0);
    const lastChunk = (entry.path.length - 1) * EXEC_CHUNK_BYTES;
    if (entry.pathDone ? nul < lastChunk || !allZero(path.subarray(nul)) : nul >= 0) return undefined;
    const argvArea = Buffer.concat(entry.argv);
    if (!allZero(argvArea.subarray(end.argvKept))) return undefined;
    const truncated = end.argvBytes > end.argvKept;
    this.stats.execs++;
    if (truncated) this.stats.truncated++;
    return {
      ...entry.key,
      ...o,
      ppid: end.ppid,
      filename: entry.pathDone ? path.subarray(0, nul) : path,
      filenameTruncated: !entry.pathDone,
      argv: splitArgv(argvArea.subarray(0, end.argvKept)),
      truncated,
      argvBytes: end.argvBytes,
    };
  }

  /** Too many execs waiting: the oldest lost its last line. */
  private evictOverflow(): void {
    for (const [key, entry] of this.pending) {
      if (this.pending.size <= this.maxPending) return;
      this.pending.delete(key);
      if (!entry.dropped) this.stats.dropped++;
    }
  }

  /** Execs that began long before one that just completed lost their last line. At most once a second. */
  private pruneStale(nowNs: bigint): void {
    this.prunedAtNs = nowNs;
    for (const [key, entry] of this.pending) {
      if (nowNs - entry.key.ns <= this.staleNs) continue;
      this.pending.delete(key);
      if (!entry.dropped) this.stats.dropped++;
    }
  }

  /** Execs still waiting for their last line. */
  get incomplete(): number {
    let n = 0;
    for (const entry of this.pending.values()) if (!entry.dropped) n++;
    return n;
  }

  /** Gives up on every exec still waiting (bpftrace stopped), counting them dropped; returns how many. */
  flush(): number {
    const n = this.incomplete;
    this.pending.clear();
    this.stats.dropped += n;
    return n;
  }
}
