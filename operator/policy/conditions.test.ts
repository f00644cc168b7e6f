import type { Condition } from '../../api/v1alpha1/meta.js';
import { rfc3339, setCondition } from './conditions.js';

const t0 = new Date('2026-01-01T00:00:00.500Z');
const t1 = new Date('2026-01-01T01:00:00Z');

const ready: Condition = {
  type: 'Ready',
  status: 'True',
  reason: 'Audited',
  message: 'old',
  observedGeneration: 1,
  lastTransitionTime: '2026-01-01T00:00:00Z',
};

describe('setCondition', () => {
  it.each<[string, Condition[], Omit<Condition, 'lastTransitionTime'>, Condition[]]>([
    [
      'appends a new type with the time now',
      [],
      { type: 'Ready', status: 'True', reason: 'Audited', message: 'm' },
      [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Audited',
          message: 'm',
          lastTransitionTime: '2026-01-01T01:00:00Z',
        },
      ],
    ],
    [
      'keeps the transition time when the status holds, taking the new reason, message and generation',
      [ready],
      { type: 'Ready', status: 'True', reason: 'NoPodsSelected', message: 'new', observedGeneration: 2 },
      [{ ...ready, reason: 'NoPodsSelected', message: 'new', observedGeneration: 2 }],
    ],
    [
      'moves the transition time when the status flips',
      [ready],
      { type: 'Ready', status: 'False', reason: 'Suspended', message: 's' },
      [
        {
          type: 'Ready',
          status: 'False',
          reason: 'Suspended',
          message: 's',
          lastTransitionTime: '2026-01-01T01:00:00Z',
        },
      ],
    ],
    [
      'leaves other types alone and in place',
      [
        { ...ready, type: 'Invalid', status: 'False' },
        { ...ready, type: 'Degraded' },
      ],
      { type: 'Invalid', status: 'True', reason: 'InvalidSpec', message: 'x' },
      [
        {
          type: 'Invalid',
          status: 'True',
          reason: 'InvalidSpec',
          message: 'x',
          lastTransitionTime: '2026-01-01T01:00:00Z',
        },
        { ...ready, type: 'Degraded' },
      ],
    ],
  ])('%s', (_name, conditions, next, want) => {
    const before = structuredClone(conditions);
    expect(setCondition(conditions, next, t1)).toEqual(want);
    expect(conditions).toEqual(before);
  });

  it('writes whole seconds, as metav1.Time does', () => {
    expect(rfc3339(t0)).toBe('2026-01-01T00:00:00Z');
  });
});
