import { buildPlan, emptyPlan, planRules } from './node-plans.js';
import { PlanStore } from './plan-store.js';
import { spec } from './testdata/fixtures.js';

const rules = planRules(spec());

function planFor(node: string, ...pods: string[]) {
  return buildPlan(
    node,
    pods.map((pod) => ({
      podNamespace: 'ns',
      podName: pod,
      podUid: `u-${pod}`,
      containerName: 'app',
      policy: 'p',
    })),
    () => rules,
  );
}

function clock(start = Date.parse('2026-01-01T00:00:00Z')) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('PlanStore', () => {
  it('knows nothing before the first publish, then serves every node a versioned plan', async () => {
    const store = new PlanStore();
    expect(store.ready).toBe(false);
    expect(store.get('node-a')).toBeUndefined();
    await expect(store.wait('node-a', undefined, 5)).resolves.toBeUndefined();
    store.publish(new Map([['node-a', planFor('node-a', 'p1')]]));
    expect(store.ready).toBe(true);
    expect(store.get('node-a')).toMatchObject({ node: 'node-a', containers: [{ podName: 'p1' }] });
    expect(store.get('node-z')).toMatchObject({ version: emptyPlan('node-z').version, containers: [] });
  });

  it('keeps an unchanged plan as it was, generatedAt included, and reports only the changed nodes', () => {
    const c = clock();
    const store = new PlanStore(c);
    expect(
      store.publish(
        new Map([
          ['a', planFor('a', 'p1')],
          ['b', planFor('b', 'p2')],
        ]),
      ),
    ).toEqual(['a', 'b']);
    const first = store.get('a')!;
    c.advance(1000);
    expect(
      store.publish(
        new Map([
          ['a', planFor('a', 'p1')],
          ['b', planFor('b', 'p3')],
        ]),
      ),
    ).toEqual(['b']);
    expect(store.get('a')).toBe(first);
    expect(store.get('b')!.generatedAt).toBe('2026-01-01T00:00:01.000Z');
  });

  it('empties the plan of a node left out, with a new version', () => {
    const store = new PlanStore();
    store.publish(new Map([['a', planFor('a', 'p1')]]));
    const before = store.get('a')!.version;
    expect(store.publish(new Map())).toEqual(['a']);
    expect(store.get('a')).toMatchObject({ version: emptyPlan('a').version, containers: [], policies: {} });
    expect(store.get('a')!.version).not.toBe(before);
    expect(store.publish(new Map())).toEqual([]);
  });

  it('forgets a node empty for long without changing its version', () => {
    const c = clock();
    const store = new PlanStore(c);
    store.publish(new Map([['a', planFor('a', 'p1')]]));
    store.publish(new Map());
    const emptied = store.get('a')!;
    c.advance(2 * 3_600_000);
    expect(store.publish(new Map())).toEqual([]);
    expect(store.get('a')!.version).toBe(emptied.version);
  });

  describe('wait (long poll)', () => {
    it('answers at once when the known version is not current', async () => {
      const store = new PlanStore();
      store.publish(new Map([['a', planFor('a', 'p1')]]));
      await expect(store.wait('a', 'stale', 60_000)).resolves.toMatchObject({ node: 'a' });
      await expect(store.wait('a', undefined, 60_000)).resolves.toMatchObject({ node: 'a' });
      expect(store.waiting).toBe(0);
    });

    it('answers as soon as the plan changes', async () => {
      const store = new PlanStore();
      store.publish(new Map([['a', planFor('a', 'p1')]]));
      const known = store.get('a')!.version;
      const waiting = store.wait('a', known, 60_000);
      const other = store.wait('b', emptyPlan('b').version, 60_000);
      expect(store.waiting).toBe(2);
      store.publish(new Map([['a', planFor('a', 'p1', 'p2')]]));
      const plan = await waiting;
      expect(plan!.version).not.toBe(known);
      expect(plan!.containers).toHaveLength(2);
      expect(store.waiting).toBe(1);
      store.publish(
        new Map([
          ['a', planFor('a', 'p1', 'p2')],
          ['b', planFor('b', 'p9')],
        ]),
      );
      await expect(other).resolves.toMatchObject({ node: 'b', containers: [{ podName: 'p9' }] });
      expect(store.waiting).toBe(0);
    });

    it('keeps waiting through publishes that do not change the node', async () => {
      const store = new PlanStore();
      store.publish(new Map([['a', planFor('a', 'p1')]]));
      const known = store.get('a')!.version;
      let settled = false;
      const waiting = store.wait('a', known, 60_000).then((p) => ((settled = true), p));
      store.publish(
        new Map([
          ['a', planFor('a', 'p1')],
          ['b', planFor('b', 'p2')],
        ]),
      );
      await new Promise((r) => setTimeout(r, 10));
      expect(settled).toBe(false);
      store.publish(new Map());
      await expect(waiting).resolves.toMatchObject({ containers: [] });
    });

    it('answers with the unchanged plan on timeout', async () => {
      const store = new PlanStore();
      store.publish(new Map([['a', planFor('a', 'p1')]]));
      const known = store.get('a')!.version;
      const started = Date.now();
      await expect(store.wait('a', known, 30)).resolves.toMatchObject({ version: known });
      expect(Date.now() - started).toBeGreaterThanOrEqual(25);
      expect(store.waiting).toBe(0);
    });

    it('ends the wait when the caller aborts, without rejecting', async () => {
      const store = new PlanStore();
      store.publish(new Map());
      const known = store.get('a')!.version;
      const abort = new AbortController();
      const waiting = store.wait('a', known, 60_000, abort.signal);
      abort.abort();
      await expect(waiting).resolves.toMatchObject({ version: known });
      expect(store.waiting).toBe(0);
      await expect(store.wait('a', known, 60_000, abort.signal)).resolves.toMatchObject({ version: known });
    });

    it('wakes a wait that began before the first publish', async () => {
      const store = new PlanStore();
      const waiting = store.wait('a', undefined, 60_000);
      store.publish(new Map([['a', planFor('a', 'p1')]]));
      await expect(waiting).resolves.toMatchObject({ node: 'a', containers: [{ podName: 'p1' }] });
    });
  });
});
