/**
 * One program start, one exec record. A `kubectl exec POD -- program` reaches the agent twice: as the runc
 * wrapper's hand-off (source `runtime`) and as the exec probe's view of the same execve in the container
 * (source `kernel`), in either order. Recording both would list every such program twice in the AuditRecord.
 *
 * Each record claims a key (container, pid, first argument); a record whose key an earlier record of the
 * other source holds is that record's twin: it is dropped and cancels the claim, so a later program of the
 * same pid (a shell that execs) is recorded again. Claims expire after `ttlMs`. Pure: time comes in.
 */
export type ExecSource = 'kernel' | 'runtime';

interface Claim {
  source: ExecSource;
  expires: number;
}

/** Longest first argument that takes part in the key: both sources see at least this much of it. */
const KEY_ARG_CHARS = 256;

export class ExecDedup {
  private readonly claims = new Map<string, Claim[]>();

  constructor(private readonly ttlMs = 10_000) {}

  /** True when this exec is to be recorded; false for the twin of one already recorded. */
  admit(containerId: string, pid: number, firstArg: string, source: ExecSource, now: number): boolean {
    this.expire(now);
    const key = `${containerId}\0${pid}\0${firstArg.slice(0, KEY_ARG_CHARS)}`;
    const claims = this.claims.get(key) ?? [];
    const twin = claims.findIndex((c) => c.source !== source);
    if (twin >= 0) {
      claims.splice(twin, 1);
      if (claims.length === 0) this.claims.delete(key);
      return false;
    }
    claims.push({ source, expires: now + this.ttlMs });
    this.claims.set(key, claims);
    return true;
  }

  /** Claims held (for tests and memory bounds: one per recent exec). */
  get size(): number {
    let n = 0;
    for (const claims of this.claims.values()) n += claims.length;
    return n;
  }

  private expire(now: number): void {
    for (const [key, claims] of this.claims) {
      const live = claims.filter((c) => c.expires > now);
      if (live.length === 0) this.claims.delete(key);
      else if (live.length !== claims.length) this.claims.set(key, live);
    }
  }
}
