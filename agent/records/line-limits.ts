/**
 * What one container's shells and programs may cost the agent, so that one audited user cannot stall the
 * capture of every other container on the node. Pure: times are passed in (ms, monotonic).
 *
 * Every captured line and exec of an audited container goes through its policy's rules on the agent's one
 * thread. Most lines cost microseconds, but a line can be built to be expensive (a 4 KiB line of repeated
 * `password=` measured 16 ms, a 64 KiB one 250 ms), and `yes ... | bash -i` feeds readline without anyone
 * typing. So each container has two token buckets:
 *
 *   lines      one token per line or exec; `linesPerSecond` sustained, `lineBurst` at once (a paste)
 *   work       milliseconds of the agent's work on the container's lines (redaction, alerts, key blocks,
 *              the record); `ruleMsPerSecond` sustained, `ruleBurstMs` at once. A line is admitted while the bucket is not empty and then charged what
 *              it really cost, so one expensive line may take the bucket below zero: the container then waits
 *              until it refilled, and its share of the thread stays `ruleMsPerSecond` per second.
 *
 * A line or exec that finds a bucket empty is not processed: it is dropped and counted, and the drops of a
 * container are reported as one `loss` record (reason `rate-limited`, the count and the window) for each
 * report interval in which there were any, never silently.
 */

export interface LineLimits {
  linesPerSecond: number;
  lineBurst: number;
  /** Milliseconds of the agent's work on a container's lines and execs (rules, record), sustained. */
  ruleMsPerSecond: number;
  ruleBurstMs: number;
}

/**
 * Defaults. Lines: the node's target is 2,000 commands/s without loss, and one container may be the one
 * typing them all, so the line bucket never binds below that; it bounds what a flood of cheap lines writes
 * (records, queue, reports). Work: a typed command costs the agent 40–75 µs (rules and record, measured
 * with examples/production-shells.yaml), so 2,000 a second is at most 150 ms a second, inside 250 ms/s;
 * crafted 4 KiB lines (7–14 ms each) are held to 18–36 a second, a quarter of the thread for the worst
 * container whatever it sends. The burst is kept
 * as small: while the agent works on one container's lines it does not read bpftrace's output, and measured
 * with a 1 s burst, the kernel's perf buffer overflowed at the start of a flood, losing other containers'
 * lines too.
 */
export const DEFAULT_LINE_LIMITS: Readonly<LineLimits> = {
  linesPerSecond: 2000,
  lineBurst: 10_000,
  ruleMsPerSecond: 250,
  ruleBurstMs: 250,
};

/** A token bucket: `rate` tokens a second up to `burst`, starting full; it may be charged below zero. */
export class TokenBucket {
  private level: number;
  private at: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    nowMs: number,
  ) {
    this.level = burst;
    this.at = nowMs;
  }

  /** Tokens available at `nowMs` (negative while a debt is being paid). */
  available(nowMs: number): number {
    if (nowMs > this.at) {
      this.level = Math.min(this.burst, this.level + ((nowMs - this.at) / 1000) * this.rate);
      this.at = nowMs;
    }
    return this.level;
  }

  /** Whether one may start now: some token is left. */
  open(nowMs: number): boolean {
    return this.available(nowMs) > 0;
  }

  /** Takes `n` tokens, into debt if need be. */
  charge(n: number, nowMs: number): void {
    this.available(nowMs);
    this.level -= n;
  }
}

/** `kernel-budget`: dropped in the readline probe itself, over the container's budget of perf events. */
export type DropCause = 'line-rate' | 'rule-time' | 'kernel-budget';
export type DroppedKind = 'line' | 'exec';

/** A container's drops since its last report. */
export interface DropWindow {
  key: string;
  count: number;
  lines: number;
  execs: number;
  byCause: Record<DropCause, number>;
  /** Bytes of the lines dropped in the kernel. */
  kernelBytes: number;
  /** Wall-clock ms of the first and last drop. */
  sinceMs: number;
  untilMs: number;
}

interface Entry {
  lines: TokenBucket;
  rules: TokenBucket;
  window?: DropWindow;
}

export class LineLimiter {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly limits: Readonly<LineLimits> = DEFAULT_LINE_LIMITS) {}

  private entry(key: string, nowMs: number): Entry {
    let entry = this.entries.get(key);
    if (!entry) {
      const { linesPerSecond, lineBurst, ruleMsPerSecond, ruleBurstMs } = this.limits;
      entry = {
        lines: new TokenBucket(linesPerSecond, lineBurst, nowMs),
        rules: new TokenBucket(ruleMsPerSecond, ruleBurstMs, nowMs),
      };
      this.entries.set(key, entry);
    }
    return entry;
  }

  /**
   * Whether a line (or exec) of container `key` may be processed at `nowMs` (monotonic); if so its line token
   * is taken. Otherwise it is counted as dropped, at `wallMs`, and the cause returned.
   */
  admit(key: string, kind: DroppedKind, nowMs: number, wallMs: number): DropCause | undefined {
    const entry = this.entry(key, nowMs);
    const cause: DropCause | undefined = !entry.lines.open(nowMs)
      ? 'line-rate'
      : !entry.rules.open(nowMs)
        ? 'rule-time'
        : undefined;
    if (!cause) {
      entry.lines.charge(1, nowMs);
      return undefined;
    }
    const w = this.window(entry, key, wallMs);
    w.count++;
    w[kind === 'line' ? 'lines' : 'execs']++;
    w.byCause[cause]++;
    w.untilMs = wallMs;
    return cause;
  }

  /**
   * Counts lines of container `key` that the kernel dropped over its budget (they never reached the agent),
   * so that they are reported with its other drops.
   */
  droppedInKernel(key: string, lines: number, bytes: number, nowMs: number, wallMs: number): void {
    const w = this.window(this.entry(key, nowMs), key, wallMs);
    w.count += lines;
    w.lines += lines;
    w.byCause['kernel-budget'] += lines;
    w.kernelBytes += bytes;
  }

  private window(entry: Entry, key: string, wallMs: number): DropWindow {
    const w = (entry.window ??= {
      key,
      count: 0,
      lines: 0,
      execs: 0,
      byCause: { 'line-rate': 0, 'rule-time': 0, 'kernel-budget': 0 },
      kernelBytes: 0,
      sinceMs: wallMs,
      untilMs: wallMs,
    });
    w.untilMs = wallMs;
    return w;
  }

  /** Charges `ms` of rule work done for container `key`. */
  charge(key: string, ms: number, nowMs: number): void {
    this.entry(key, nowMs).rules.charge(ms, nowMs);
  }

  /** The drop windows open now, closed and handed over (to be reported). */
  takeDrops(): DropWindow[] {
    const windows: DropWindow[] = [];
    for (const entry of this.entries.values()) {
      // Only bytes so far (the kernel's two tallies may arrive apart): kept until its lines join it.
      if (!entry.window || entry.window.count === 0) continue;
      windows.push(entry.window);
      entry.window = undefined;
    }
    return windows;
  }

  /** Forgets a container; its drops not yet taken are returned. */
  forget(key: string): DropWindow | undefined {
    const window = this.entries.get(key)?.window;
    this.entries.delete(key);
    return window?.count ? window : undefined;
  }

  /** What a drop window says in a loss record's detail. */
  describe(w: DropWindow): string {
    const { linesPerSecond, lineBurst, ruleMsPerSecond, ruleBurstMs } = this.limits;
    const causes = [
      w.byCause['line-rate'] > 0
        ? `${w.byCause['line-rate']} over the line rate (${linesPerSecond}/s, burst ${lineBurst})`
        : '',
      w.byCause['rule-time'] > 0
        ? `${w.byCause['rule-time']} over the rule time budget (${ruleMsPerSecond} ms/s, burst ${ruleBurstMs} ms)`
        : '',
      w.byCause['kernel-budget'] > 0 || w.kernelBytes > 0
        ? `${w.byCause['kernel-budget']} (${w.kernelBytes} bytes) dropped in the kernel over the container's readline event budget`
        : '',
    ].filter(Boolean);
    return `${w.lines} line(s) and ${w.execs} exec(s) of container ${w.key} not processed: ${causes.join('; ')}`;
  }
}
