import { containerRecord } from '../containers/testdata/container-record.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { AuditPlan, ContainerAudit } from '../plan/plan.js';
import type { Audited } from './attribution.js';
import { execProbeChange, replan } from './plan-decisions.js';
import { containerAudit } from './testdata/container-audit.js';

const rules = (policy: string, over: Partial<ContainerAudit> = {}): ContainerAudit =>
  containerAudit({ policy, ...over });

/** A plan that audits the containers named in `audits` under the rules given (the same object each time). */
function plan(audits: Record<string, ContainerAudit>, execs = false): AuditPlan {
  return {
    auditOf: (c) => {
      const audit = audits[c.id];
      return audit ? { audited: true, audit } : { audited: false, reason: `no rule for ${c.id}` };
    },
    maxCommandBytes: 64,
    execs,
  };
}

const c = (id: string): ContainerRecord => containerRecord({ kind: 'container' }, { id, mntns: id.length });
const [a, b, d, e] = [c('a'), c('bb'), c('ddd'), c('eeee')];

describe('replan', () => {
  const shells = rules('shells');
  const execsOnly = rules('execs', { interactiveShells: false, execs: true });
  const before = new Map<string, Audited>([
    [a.id, { container: a, audit: shells }],
    [b.id, { container: b, audit: shells }],
    [d.id, { container: d, audit: execsOnly }],
  ]);

  it('leaves alone what the new plan decides the same way', () => {
    expect(replan(plan({ a: shells, bb: shells, ddd: execsOnly }), [a, b, d, e], before, new Set())).toEqual(
      [],
    );
  });

  it('stops auditing a container the plan no longer names, with the plan’s reason', () => {
    expect(replan(plan({ bb: shells, ddd: execsOnly }), [a, b, d], before, new Set())).toEqual([
      { action: 'stop', container: a, reason: 'no rule for a' },
    ]);
  });

  it('audits a newly named container late, unless its create waits in this batch', () => {
    const next = plan({ a: shells, bb: shells, ddd: execsOnly, eeee: shells });
    expect(replan(next, [e], before, new Set())).toEqual([
      { action: 'audit', container: e, audit: shells, late: true },
    ]);
    expect(replan(next, [e], before, new Set(['eeee']))).toEqual([
      { action: 'audit', container: e, audit: shells, late: false },
    ]);
  });

  it('re-rules a container whose rules changed: probes kept, dropped or added', () => {
    const otherShells = rules('shells-2');
    const next = plan({ a: otherShells, bb: execsOnly, ddd: shells });
    expect(replan(next, [a, b, d], before, new Set())).toEqual([
      { action: 'rerule', container: a, audit: otherShells, shells: 'keep', late: true },
      { action: 'rerule', container: b, audit: execsOnly, shells: 'drop-shells', late: true },
      { action: 'rerule', container: d, audit: shells, shells: 'add-shells', late: true },
    ]);
  });

  it('decides in the registry’s order', () => {
    const none = plan({});
    expect(replan(none, [d, b, a], before, new Set()).map((r) => r.container.id)).toEqual(['ddd', 'bb', 'a']);
  });
});

describe('execProbeChange', () => {
  it('starts the exec probe when the plan first asks for execs and stops it when none does', () => {
    expect(execProbeChange(plan({}, true), false)).toBe('start');
    expect(execProbeChange(plan({}, true), true)).toBeUndefined();
    expect(execProbeChange(plan({}, false), true)).toBe('stop');
    expect(execProbeChange(plan({}, false), false)).toBeUndefined();
  });
});
