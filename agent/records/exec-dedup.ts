/**
 * One program start, one exec record. A `kubectl exec POD -- program` reaches the agent twice: as the runc
 * wrapper's hand-off (source `runtime`) and as the exec probe's view of the same execve in the container
 * (source `kernel`), in either order. Recording both would list every such program twice in the AuditRecord.
 *
 * Each record claims a key (container, pid, first argument); a record whose key an earlier record of the
 * other source holds is that record's twin: it is dropped and cancels the claim, so a later program of the
 * same pid (a shell that execs) is recorded again. Claims expire after `ttlMs`, oldest first from a queue in
 * the order they were made: an exec costs the agent's loop a map lookup, not a scan of every claim (a
 * container may exec as fast as its rate limit lets it). Pure: time comes in.
 */
export type ExecSource = 'kernel' | 'runtime';

interface Claim {
  key: string;
  source: ExecSource;
  expires: number;
  /** Cancelled by its twin: skipped when the queue reaches it. */
  done: boolean;
}

/** Longest first argument that takes part in the key: both sources see at least this much of it. */
const KEY_ARG_CHARS = 256;

export class ExecDedup {
  /** Live claims by key (oldest first). */
  private readonly claims = new Map<string, Claim[]>();
  /** Every claim in the order made, so in expiry order (time only goes forward here). */
  private readonly queue: Claim[] = [];
  private head = 0;
  private live = 0;

  constructor(private readonly ttlMs = 10_000) {}

  /** True when this exec is to be recorded; false for the twin of one already recorded. */
  admit(containerId: string, pid: number, firstArg: string, source: ExecSource, now: number): boolean {
    this.expire(now);
    const key = `${containerId}\0${pid}\0${firstArg.slice(0, KEY_ARG_CHARS)}`;
    const claims = this.claims.get(key) ?? [];
    const twin = claims.findIndex((c) => c.source !== source);
    if (twin >= 0) {
      this.drop(claims, twin);
      return false;
    }
    const claim: Claim = { key, source, expires: now + this.ttlMs, done: false };
    claims.push(claim);
    this.claims.set(key, claims);
    this.queue.push(claim);
    this.live++;
    return true;
  }

  /** Claims held (for tests and memory bounds: one per exec of the last `ttlMs`). */
  get size(): number {
    return this.live;
  }

  private drop(claims: Claim[], index: number): void {
    const [claim] = claims.splice(index, 1);
    claim!.done = true;
    this.live--;
    if (claims.length === 0) this.claims.delete(claim!.key);
  }

  private expire(now: number): void {
    while (this.head < this.queue.length && this.queue[this.head]!.expires <= now) {
      const claim = this.queue[this.head++]!;
      if (claim.done) continue;
      const claims = this.claims.get(claim.key)!;
      this.drop(claims, claims.indexOf(claim));
    }
    // Compact now and then: the queue's head part is spent.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
