/** Named counters, for /metrics (operator/runtime) and tests: monotonic, in memory, per process. */
export class Counters<K extends string = string> {
  private readonly values = new Map<K, number>();

  inc(name: K, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by);
  }

  get(name: K): number {
    return this.values.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }
}
