import { Registry, escapeHelp, escapeLabelValue, formatValue } from './metrics.js';

describe('Prometheus text format', () => {
  it('renders HELP, TYPE and one line per series, metrics and series in a stable order', () => {
    const registry = new Registry();
    const restarts = registry.counter('informer_restarts_total', 'Watches started again.', ['resource']);
    const leader = registry.gauge('leader', 'Whether this replica leads.');
    restarts.labels({ resource: 'pods' }).inc();
    restarts.labels({ resource: 'nodes' }).inc(2);
    restarts.labels({ resource: 'pods' }).inc();
    leader.set(1);

    expect(registry.render()).toBe(
      [
        '# HELP informer_restarts_total Watches started again.',
        '# TYPE informer_restarts_total counter',
        'informer_restarts_total{resource="nodes"} 2',
        'informer_restarts_total{resource="pods"} 2',
        '# HELP leader Whether this replica leads.',
        '# TYPE leader gauge',
        'leader 1',
        '',
      ].join('\n'),
    );
  });

  it('shows a metric without labels as 0 before it is touched, and a labelled one with no series', () => {
    const registry = new Registry();
    registry.counter('requests_total', 'Requests.');
    registry.gauge('depth', 'Depth.', ['name']);
    expect(registry.render()).toBe(
      '# HELP depth Depth.\n# TYPE depth gauge\n# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total 0\n',
    );
  });

  it('escapes backslash, double quote and line feed in label values', () => {
    const registry = new Registry();
    registry
      .gauge('g', 'G.', ['path', 'note'])
      .labels({ path: 'C:\\dir\\file', note: 'say "hi"\nbye' })
      .set(3);
    expect(registry.render()).toContain('g{path="C:\\\\dir\\\\file",note="say \\"hi\\"\\nbye"} 3\n');
    expect(escapeLabelValue('a\\"\n')).toBe('a\\\\\\"\\n');
  });

  it('escapes backslash and line feed in HELP, but not quotes', () => {
    expect(escapeHelp('a "b" c\\d\ne')).toBe('a "b" c\\\\d\\ne');
    const registry = new Registry();
    registry.counter('c_total', 'two\nlines');
    expect(registry.render()).toContain('# HELP c_total two\\nlines\n');
  });

  it('formats special values as Prometheus does', () => {
    expect([NaN, Infinity, -Infinity, 0.5, -2].map(formatValue)).toEqual([
      'NaN',
      '+Inf',
      '-Inf',
      '0.5',
      '-2',
    ]);
  });

  it('gauges go both ways; counters only up', () => {
    const registry = new Registry();
    const gauge = registry.gauge('depth', 'Depth.', ['name']);
    gauge.labels({ name: 'q' }).inc(5);
    gauge.labels({ name: 'q' }).dec(2);
    expect(gauge.value({ name: 'q' })).toBe(3);
    const counter = registry.counter('n_total', 'N.');
    expect(() => counter.inc(-1)).toThrow(/only goes up/);
    expect(() => counter.inc(NaN)).toThrow(/only goes up/);
  });

  it('refuses series whose labels differ from the declared ones', () => {
    const registry = new Registry();
    const counter = registry.counter('c_total', 'C.', ['a', 'b']);
    expect(() => counter.labels({ a: '1' }).inc()).toThrow(/takes labels \[a, b\]/);
    expect(() => counter.labels({ a: '1', c: '2' }).inc()).toThrow(/takes labels/);
    expect(() => counter.inc()).toThrow(/takes labels/);
  });

  it('refuses invalid names', () => {
    const registry = new Registry();
    expect(() => registry.counter('bad-name', 'x')).toThrow(/invalid metric name/);
    expect(() => registry.counter('ok', 'x', ['bad-label'])).toThrow(/invalid label name/);
    expect(() => registry.counter('ok2', 'x', ['__reserved'])).toThrow(/invalid label name/);
  });

  it('returns the registered metric when asked again, and refuses a different one under that name', () => {
    const registry = new Registry();
    const first = registry.counter('c_total', 'C.', ['a']);
    expect(registry.counter('c_total', 'C.', ['a'])).toBe(first);
    expect(() => registry.gauge('c_total', 'C.', ['a'])).toThrow(/already registered/);
    expect(() => registry.counter('c_total', 'C.', ['b'])).toThrow(/already registered/);
  });

  it('forgets a removed series', () => {
    const registry = new Registry();
    const gauge = registry.gauge('g', 'G.', ['r']);
    gauge.labels({ r: 'x' }).set(1);
    gauge.remove({ r: 'x' });
    expect(registry.render()).not.toContain('g{');
  });
});
