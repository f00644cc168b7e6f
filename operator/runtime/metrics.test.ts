import { MetricsRegistry } from './metrics.js';

describe('MetricsRegistry', () => {
  it('serves HELP, TYPE and one line per series in the text format', async () => {
    const registry = new MetricsRegistry();
    const restarts = registry.counter('informer_restarts_total', 'Watches started again.', ['resource']);
    const leader = registry.gauge('leader', 'Whether this replica leads.');
    restarts.labels({ resource: 'pods' }).inc();
    restarts.labels({ resource: 'nodes' }).inc(2);
    restarts.labels({ resource: 'pods' }).inc();
    leader.set(1);

    const text = await registry.metrics();
    expect(text).toContain(
      [
        '# HELP informer_restarts_total Watches started again.',
        '# TYPE informer_restarts_total counter',
        'informer_restarts_total{resource="pods"} 2',
        'informer_restarts_total{resource="nodes"} 2',
      ].join('\n'),
    );
    expect(text).toContain('# HELP leader Whether this replica leads.\n# TYPE leader gauge\nleader 1\n');
  });

  it('shows a metric without labels as 0 before it is touched, and a labelled one with no series', async () => {
    const registry = new MetricsRegistry();
    registry.counter('requests_total', 'Requests.');
    registry.gauge('depth', 'Depth.', ['name']);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE requests_total counter\nrequests_total 0\n');
    expect(text).toContain('# TYPE depth gauge\n');
    expect(text).not.toContain('depth{');
  });

  it('escapes label values and HELP as the format wants', async () => {
    const registry = new MetricsRegistry();
    registry
      .gauge('g', 'G.', ['path', 'note'])
      .labels({ path: 'C:\\dir\\file', note: 'say "hi"\nbye' })
      .set(3);
    registry.counter('c_total', 'two\nlines "quoted"');
    const text = await registry.metrics();
    expect(text).toContain('g{path="C:\\\\dir\\\\file",note="say \\"hi\\"\\nbye"} 3\n');
    expect(text).toContain('# HELP c_total two\\nlines "quoted"\n');
  });

  it('formats special values as Prometheus does', async () => {
    const registry = new MetricsRegistry();
    const gauge = registry.gauge('v', 'V.', ['k']);
    gauge.labels({ k: 'nan' }).set(NaN);
    gauge.labels({ k: 'inf' }).set(Infinity);
    gauge.labels({ k: 'minf' }).set(-Infinity);
    const text = await registry.metrics();
    expect(text).toContain('v{k="nan"} Nan');
    expect(text).toContain('v{k="inf"} +Inf');
    expect(text).toContain('v{k="minf"} -Inf');
  });

  it('reads gauges kept elsewhere at scrape time', async () => {
    const registry = new MetricsRegistry();
    let requests = 1;
    registry.gauge('requests', 'Requests.', ['outcome'], (gauge) =>
      gauge.labels({ outcome: '200' }).set(requests),
    );
    expect(await registry.metrics()).toContain('requests{outcome="200"} 1\n');
    requests = 5;
    expect(await registry.metrics()).toContain('requests{outcome="200"} 5\n');
  });

  it('counters only go up', () => {
    const counter = new MetricsRegistry().counter('n_total', 'N.');
    expect(() => counter.inc(-1)).toThrow();
  });

  it('returns the registered metric when asked again, and refuses a different one under that name', () => {
    const registry = new MetricsRegistry();
    const first = registry.counter('c_total', 'C.', ['a']);
    expect(registry.counter('c_total', 'C.', ['a'])).toBe(first);
    expect(() => registry.gauge('c_total', 'C.', ['a'])).toThrow(/already registered/);
    expect(() => registry.counter('c_total', 'C.', ['b'])).toThrow(/already registered/);
  });

  it('refuses invalid names', () => {
    const registry = new MetricsRegistry();
    expect(() => registry.counter('bad-name', 'x')).toThrow(/Invalid metric name/);
    expect(() => registry.counter('ok', 'x', ['bad-label'])).toThrow(/Invalid label name/);
  });

  it('keeps each registry to itself', async () => {
    new MetricsRegistry().counter('mine_total', 'Mine.');
    expect(await new MetricsRegistry().metrics()).not.toContain('mine_total');
  });
});
