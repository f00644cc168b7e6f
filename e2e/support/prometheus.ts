/** Prometheus text (the API server's /metrics, the operator's) read into values, for tests and benches. */

export type Counts = Map<string, number>;

/** Prometheus text -> value by `name{labels}` for the metrics named. */
export function parseMetrics(text: string, names: readonly string[]): Counts {
  const out: Counts = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const key = line.slice(0, space);
    const name = key.split('{')[0]!;
    if (names.includes(name)) out.set(key, Number(line.slice(space + 1)));
  }
  return out;
}

export function labelsOf(key: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of key.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
  return labels;
}

/** `after - before`, summed over the series `pick` accepts. */
export function delta(
  before: Counts,
  after: Counts,
  pick: (name: string, labels: Record<string, string>) => boolean,
): number {
  let sum = 0;
  for (const [key, value] of after) {
    const name = key.split('{')[0]!;
    if (pick(name, labelsOf(key))) sum += value - (before.get(key) ?? 0);
  }
  return sum;
}
