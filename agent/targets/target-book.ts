/**
 * Which files carry a readline probe, and for whom. A probe binds to an inode, so targets are keyed by the
 * real (dev, ino) and shared by every container that uses that file; a file is probed while at least one
 * container holds it. Pure bookkeeping: the capture is told the resulting list of probe paths.
 */
export interface ProbeTarget {
  /** `${dev}:${ino}` of the file the probe binds to. */
  key: string;
  /** Host path of the file (what records name). */
  file: string;
  /** What bpftrace is given: the agent's open file, /proc/<pid>/fd/<n> (pin.ts). */
  probe: string;
}

/**
 * Distinct probe targets one container may hold. Each costs a uprobe and a pinned file, and bpftrace attaches
 * them all at each start, so a container exec'ing one new copy of bash after another must not grow them
 * without bound; a real one has one or two (its bash, or its libreadline).
 */
export const MAX_TARGETS_PER_CONTAINER = 16;

export class TargetBook {
  private readonly holders = new Map<string, Map<string, ProbeTarget>>(); // container id -> key -> target

  /** The keys a container holds. */
  heldBy(containerId: string): ReadonlySet<string> {
    return new Set(this.holders.get(containerId)?.keys());
  }

  /** Adds targets for a container; returns those that no container held before (new probes). */
  add(containerId: string, targets: readonly ProbeTarget[]): ProbeTarget[] {
    const before = this.keys();
    const held = this.holders.get(containerId) ?? new Map<string, ProbeTarget>();
    for (const target of targets) held.set(target.key, target);
    this.holders.set(containerId, held);
    return targets.filter((t) => !before.has(t.key));
  }

  /** Drops a container's holds; returns the keys no container holds any more. */
  remove(containerId: string): string[] {
    const held = this.holders.get(containerId);
    if (!held) return [];
    this.holders.delete(containerId);
    const still = this.keys();
    return [...held.keys()].filter((k) => !still.has(k));
  }

  has(key: string): boolean {
    return this.keys().has(key);
  }

  /** One probe path per distinct key, sorted: what bpftrace probes. */
  files(): string[] {
    const byKey = new Map<string, string>();
    for (const held of this.holders.values()) {
      for (const t of held.values()) if (!byKey.has(t.key)) byKey.set(t.key, t.probe);
    }
    return [...byKey.values()].sort();
  }

  /** The keys some container holds. */
  keys(): Set<string> {
    const keys = new Set<string>();
    for (const held of this.holders.values()) for (const k of held.keys()) keys.add(k);
    return keys;
  }
}
