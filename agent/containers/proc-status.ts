/**
 * A process's pid inside its own pid namespace, from /proc/<pid>/status (the last NSpid field). Read
 * synchronously so records keep the order their lines arrived in; cached briefly, since a shell's lines
 * come in bursts and a pid keeps its namespace for life (a reused pid in another namespace is caught by the
 * mount namespace in the key).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The innermost pid in a status file's NSpid line. Pure. */
export function parseNsPid(status: string): number | undefined {
  const match = /^NSpid:\s*([\d\s]+)$/m.exec(status);
  const last = match?.[1]!.trim().split(/\s+/).pop();
  const pid = Number(last);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

const TTL_MS = 10_000;
const MAX_ENTRIES = 4096;

export class NsPidLookup {
  private readonly cache = new Map<string, { nsPid: number | undefined; at: number }>();

  constructor(private readonly procRoot = '/proc') {}

  of(pid: number, mntns: number, now = Date.now()): number | undefined {
    const key = `${pid}/${mntns}`;
    const hit = this.cache.get(key);
    if (hit && now - hit.at < TTL_MS) return hit.nsPid;
    let nsPid: number | undefined;
    try {
      nsPid = parseNsPid(readFileSync(join(this.procRoot, String(pid), 'status'), 'latin1'));
    } catch {
      nsPid = undefined; // the process is gone: the record says less, it is not dropped
    }
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    this.cache.set(key, { nsPid, at: now });
    return nsPid;
  }
}
