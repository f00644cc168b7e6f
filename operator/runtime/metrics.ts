/**
 * A small Prometheus registry: counters and gauges with labels, rendered in the text exposition format
 * (version 0.0.4). Enough for what the operator reports (queue depths, retries, informer restarts, leadership)
 * without a client library. Each metric declares its label names once; every series gives exactly those.
 */

export { METRICS_CONTENT_TYPE } from '../../common/http/probe-server.js';

export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values are quoted: backslash, double quote and line feed are escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text is not quoted: only backslash and line feed are escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

type MetricType = 'counter' | 'gauge';

abstract class Metric {
  /** Series by their label values (in labelNames order), JSON-encoded. */
  protected readonly series = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    readonly labelNames: readonly string[],
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__')) {
        throw new Error(`invalid label name ${JSON.stringify(label)} for ${name}`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) throw new Error(`duplicate label names for ${name}`);
    // A metric without labels has one series, exposed from the start: 0 is information too.
    if (labelNames.length === 0) this.series.set('[]', 0);
  }

  protected keyOf(labels: Labels): string {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || !this.labelNames.every((l) => l in labels)) {
      throw new Error(`${this.name} takes labels [${this.labelNames.join(', ')}], got [${given.join(', ')}]`);
    }
    return JSON.stringify(this.labelNames.map((l) => labels[l]));
  }

  protected add(labels: Labels, by: number): void {
    const key = this.keyOf(labels);
    this.series.set(key, (this.series.get(key) ?? 0) + by);
  }

  protected put(labels: Labels, value: number): void {
    this.series.set(this.keyOf(labels), value);
  }

  /** The series' value; 0 if it was never touched. */
  value(labels: Labels = {}): number {
    return this.series.get(this.keyOf(labels)) ?? 0;
  }

  /** Forgets a series (e.g. the informer of a resource that is no longer watched). */
  remove(labels: Labels): void {
    this.series.delete(this.keyOf(labels));
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const [key, value] of [...this.series.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const values = JSON.parse(key) as string[];
      const labels = this.labelNames.map((l, i) => `${l}="${escapeLabelValue(values[i]!)}"`).join(',');
      lines.push(`${this.name}${labels ? `{${labels}}` : ''} ${formatValue(value)}`);
    }
    return lines.join('\n') + '\n';
  }
}

export class Counter extends Metric {
  constructor(name: string, help: string, labelNames: readonly string[]) {
    super(name, help, 'counter', labelNames);
  }

  inc(by = 1): void {
    this.labels({}).inc(by);
  }

  labels(labels: Labels): { inc(by?: number): void } {
    return {
      inc: (by = 1) => {
        if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (inc by ${by})`);
        this.add(labels, by);
      },
    };
  }
}

export interface GaugeSeries {
  set(value: number): void;
  inc(by?: number): void;
  dec(by?: number): void;
}

export class Gauge extends Metric implements GaugeSeries {
  constructor(name: string, help: string, labelNames: readonly string[]) {
    super(name, help, 'gauge', labelNames);
  }

  set(value: number): void {
    this.labels({}).set(value);
  }

  inc(by = 1): void {
    this.labels({}).inc(by);
  }

  dec(by = 1): void {
    this.labels({}).dec(by);
  }

  labels(labels: Labels): GaugeSeries {
    return {
      set: (value) => this.put(labels, value),
      inc: (by = 1) => this.add(labels, by),
      dec: (by = 1) => this.add(labels, -by),
    };
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>();

  /** The counter of that name; created on first use. Asking again with another type or labels throws. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.register(name, 'counter', labelNames, () => new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.register(name, 'gauge', labelNames, () => new Gauge(name, help, labelNames));
  }

  private register<M extends Metric>(
    name: string,
    type: MetricType,
    labelNames: readonly string[],
    create: () => M,
  ): M {
    const existing = this.metrics.get(name);
    if (existing) {
      if (existing.type !== type || existing.labelNames.join(',') !== labelNames.join(',')) {
        throw new Error(`metric ${name} is already registered as a ${existing.type} with other labels`);
      }
      return existing as M;
    }
    const metric = create();
    this.metrics.set(name, metric);
    return metric;
  }

  /** The exposition text, metrics in name order. */
  render(): string {
    return [...this.metrics.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((m) => m.render())
      .join('');
  }
}
