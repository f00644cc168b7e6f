/**
 * The operator's Prometheus metrics, kept with prom-client, the client library of the Node.js ecosystem: it
 * owns the text exposition format (escaping, special values, `# HELP`/`# TYPE`), and the scrape (`metrics()`)
 * reads the gauges whose values live elsewhere through their `collect` callbacks, at scrape time.
 *
 * What is ours is only the way components declare a metric: by name, help and label names, where asking
 * again for one already registered returns it (the informers of three resources share their gauges), and
 * asking for it with another type or other labels throws, so two components cannot mean different things
 * under one name. Each process has its own registry: nothing goes to prom-client's global one.
 */
import { Counter, Gauge, Registry } from 'prom-client';

export { METRICS_CONTENT_TYPE } from '../../common/http/probe-server.js';
export type { Counter, Gauge };

type MetricType = 'counter' | 'gauge';

export class MetricsRegistry extends Registry {
  private readonly declared = new Map<string, { type: MetricType; labelNames: string }>();

  /** The counter of that name; created on first use. Asking again with another type or labels throws. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.declare(
      name,
      'counter',
      labelNames,
      () => new Counter({ name, help, labelNames, registers: [this] }),
    );
  }

  /**
   * The gauge of that name; created on first use. `collect`, given on creation, runs at every scrape to set
   * values kept elsewhere (the components' own counters).
   */
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    collect?: (gauge: Gauge) => void,
  ): Gauge {
    return this.declare(
      name,
      'gauge',
      labelNames,
      () =>
        new Gauge({
          name,
          help,
          labelNames,
          registers: [this],
          ...(collect
            ? {
                collect(this: Gauge) {
                  collect(this);
                },
              }
            : {}),
        }),
    );
  }

  private declare<M extends Counter | Gauge>(
    name: string,
    type: MetricType,
    labelNames: readonly string[],
    create: () => M,
  ): M {
    const existing = this.declared.get(name);
    if (existing) {
      if (existing.type !== type || existing.labelNames !== labelNames.join(','))
        throw new Error(`metric ${name} is already registered as a ${existing.type} with other labels`);
      return this.getSingleMetric(name) as M;
    }
    const metric = create();
    this.declared.set(name, { type, labelNames: labelNames.join(',') });
    return metric;
  }
}
