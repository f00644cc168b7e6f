import type { V1Pod } from '@kubernetes/client-node';
import { namespaceLabels, podFacts, readPolicy, readWorld } from './world.js';
import { FakeSources, namespaceObject, policyObject } from './testdata/fixtures.js';

describe('readPolicy', () => {
  it('reads metadata, a defaulted spec and the status', () => {
    const policy = readPolicy(
      policyObject('p', {}, { generation: 4, resourceVersion: '77' }, { commandsRecorded: 3 }),
    );
    expect(policy).toMatchObject({
      name: 'p',
      uid: 'uid-p',
      generation: 4,
      resourceVersion: '77',
      creationTimestamp: '2026-01-01T00:00:00Z',
      spec: { ok: true },
      status: { commandsRecorded: 3 },
    });
  });

  it('takes creation times deserialized as Dates', () => {
    const raw = policyObject('p', {}, { creationTimestamp: new Date('2026-02-02T00:00:00Z') });
    expect(readPolicy(raw)!.creationTimestamp).toBe('2026-02-02T00:00:00.000Z');
  });

  it('turns a spec the schema refuses into problems, not an exception', () => {
    const raw = { metadata: { name: 'p' }, spec: { capture: { interactiveShells: false, execs: false } } };
    expect(readPolicy(raw)!.spec).toEqual({
      ok: false,
      problems: [{ field: 'spec.capture', message: expect.stringContaining('captures nothing') as string }],
    });
  });

  it('treats an unreadable status as none', () => {
    expect(readPolicy(policyObject('p', {}, {}, { commandsRecorded: -1 }))!.status).toBeUndefined();
  });

  it.each([null, 'x', {}, { metadata: {} }, { metadata: { name: '' } }])('ignores %j', (raw) => {
    expect(readPolicy(raw)).toBeUndefined();
  });
});

describe('podFacts', () => {
  const base: V1Pod = {
    metadata: { namespace: 'ns', name: 'p', uid: 'u', labels: { app: 'x' } },
    spec: {
      nodeName: 'n',
      runtimeClassName: 'container-auditor',
      initContainers: [{ name: 'init' }],
      containers: [{ name: 'app' }],
      ephemeralContainers: [{ name: 'debugger' }],
    },
    status: { phase: 'Running' },
  };

  it('reads every container name: init, regular and ephemeral (kubectl debug)', () => {
    expect(podFacts(base)).toEqual({
      namespace: 'ns',
      name: 'p',
      uid: 'u',
      labels: { app: 'x' },
      nodeName: 'n',
      runtimeClassName: 'container-auditor',
      containers: ['init', 'app', 'debugger'],
      phase: 'Running',
      deleting: false,
    });
  });

  it('reads an empty nodeName as none and notices deletion', () => {
    const facts = podFacts({
      ...base,
      metadata: { ...base.metadata, deletionTimestamp: new Date() },
      spec: { ...base.spec!, nodeName: '' },
    });
    expect(facts).toMatchObject({ nodeName: undefined, deleting: true });
  });

  it('skips a pod without identity', () => {
    expect(podFacts({ metadata: { name: 'p' } })).toBeUndefined();
  });
});

describe('readWorld', () => {
  it('reads the caches', () => {
    const sources = new FakeSources();
    sources.setPolicy(policyObject('p'));
    sources.namespaceObjects = [namespaceObject('ns', { env: 'prod' })];
    const world = readWorld(sources);
    expect(world.policies.map((p) => p.name)).toEqual(['p']);
    expect(world.input.namespaces.get('ns')).toEqual({ 'kubernetes.io/metadata.name': 'ns', env: 'prod' });
    expect(namespaceLabels([{ metadata: {} }]).size).toBe(0);
  });
});
