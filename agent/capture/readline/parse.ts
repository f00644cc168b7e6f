/**
 * Parses what readline.bt.tpl prints and assembles each probe hit's chunks into the exact bytes that
 * readline returned. Pure: lines in, captured lines out. Format: format.ts (described in README.md).
 */
import { hexWords } from '../bpftrace-words.js';
import { splitLine } from '../output-format.js';
import { READLINE_LINES, READLINE_TALLIES } from './format.js';
import { CHUNK_BYTES } from './script.js';

export interface HitKey {
  pid: number;
  tid: number;
  /** bpftrace's nsecs at the probe hit (monotonic clock). */
  ns: bigint;
}

/** Who called readline, as the kernel saw it. */
export interface Origin {
  uid: number;
  /** cgroup v2 id (1 where there is no cgroup v2 hierarchy). */
  cgroup: bigint;
  /** Inode of the mount namespace: identifies the container. */
  mntns: number;
}

export type ReadlineEvent =
  | (HitKey & Origin & { kind: 'chunk' | 'last'; index: number; bytes: Buffer })
  | (HitKey & Origin & { kind: 'truncated'; index: number })
  | (HitKey & Origin & { kind: 'eof' });

/** The script's first line: every probe is attached. */
export type ReadyEvent = { kind: 'ready' };

/**
 * A running total of the lines (or their bytes) of one mount namespace that the probe dropped over the
 * namespace's budget instead of printing them, since this bpftrace started (printed once a second).
 */
export type DroppedTotalEvent = {
  kind: 'dropped-total';
  what: 'lines' | 'bytes';
  mntns: number;
  total: number;
};

export type ParsedLine =
  | { ok: true; event: ReadlineEvent | ReadyEvent | DroppedTotalEvent }
  | { ok: false; reason: 'noise' | 'malformed' };

/** How bpftrace 0.17 prints a map entry in text mode: `@name[key]: value`. */
const TALLY = new RegExp(`^@(${Object.keys(READLINE_TALLIES).join('|')})\\[(\\d{1,20})\\]: (\\d{1,20})$`);
const KINDS = { C: 'chunk', L: 'last', T: 'truncated', N: 'eof', R: 'ready' } as const;

/** One line of bpftrace's output, read by its description (format.ts). */
export function parseReadlineLine(line: string): ParsedLine {
  if (line.startsWith('@rl_')) {
    const m = TALLY.exec(line.trimEnd());
    if (!m) return { ok: false, reason: line.startsWith('@rl_dropped_') ? 'malformed' : 'noise' };
    const event: DroppedTotalEvent = {
      kind: 'dropped-total',
      what: m[1] === 'rl_dropped_lines' ? 'lines' : 'bytes',
      mntns: Number(m[2]),
      total: Number(m[3]),
    };
    return { ok: true, event };
  }
  const split = splitLine(line, READLINE_LINES);
  if (!split.ok) return split;
  const kind = KINDS[split.tag];
  if (kind === 'ready') return { ok: true, event: { kind } };
  const v = split.values;
  const base = {
    pid: Number(v.pid),
    tid: Number(v.tid),
    ns: BigInt(v.ns!),
    uid: Number(v.uid),
    cgroup: BigInt(v.cgroup!),
    mntns: Number(v.mntns),
  };
  if (kind === 'eof') return { ok: true, event: { ...base, kind } };
  const index = Number(v.chunk);
  if (kind === 'truncated') return { ok: true, event: { ...base, kind, index } };
  const bytes = hexWords(split.words);
  if (!bytes) return { ok: false, reason: 'malformed' };
  return { ok: true, event: { ...base, kind, index, bytes } };
}

export interface CapturedLine extends HitKey, Origin {
  /**
   * Exactly what readline returned, as far as the probe read it (its chunks: up to the probe's
   * maxCommandBytes plus one chunk). Not cut here: each record is cut once, to its own container's limit
   * (agent/records/build.ts).
   */
  bytes: Buffer;
  /** The probe stopped reading before the line's end (a `T` event): more was typed than `bytes` holds. */
  truncated: boolean;
}

/**
 * Joins chunks into lines. A hit's events arrive in order, but hits from different CPUs may interleave, so
 * chunks are grouped by hit. Gaps (a lost event) make the hit count as malformed, never as a wrong command.
 */
export class ReadlineAssembler {
  private readonly pending = new Map<string, { chunks: Buffer[]; origin: Origin }>();
  readonly stats = { lines: 0, eof: 0, malformed: 0, truncated: 0 };

  /** Feeds one event; returns the line it completed, if any (drop tallies are no line's: ignored). */
  push(event: ReadlineEvent | ReadyEvent | DroppedTotalEvent): CapturedLine | undefined {
    if (event.kind === 'ready' || event.kind === 'dropped-total') return undefined;
    const key = `${event.pid}/${event.tid}/${event.ns}`;
    if (event.kind === 'eof') {
      this.stats.eof++;
      return undefined;
    }
    const entry = this.pending.get(key) ?? {
      chunks: [],
      origin: { uid: event.uid, cgroup: event.cgroup, mntns: event.mntns },
    };
    if (event.index !== entry.chunks.length) {
      this.pending.delete(key);
      this.stats.malformed++;
      return undefined;
    }
    if (event.kind === 'chunk') {
      entry.chunks.push(event.bytes);
      this.pending.set(key, entry);
      return undefined;
    }
    this.pending.delete(key);
    let bytes = Buffer.concat(event.kind === 'last' ? [...entry.chunks, event.bytes] : entry.chunks);
    if (event.kind === 'last') {
      const nul = bytes.indexOf(0, entry.chunks.length * CHUNK_BYTES);
      bytes = nul >= 0 ? bytes.subarray(0, nul) : bytes;
    }
    const truncated = event.kind === 'truncated';
    if (truncated) this.stats.truncated++;
    this.stats.lines++;
    return { pid: event.pid, tid: event.tid, ns: event.ns, ...entry.origin, bytes, truncated };
  }

  /** Hits still waiting for their last chunk (for loss accounting when bpftrace stops). */
  get incomplete(): number {
    return this.pending.size;
  }
}
