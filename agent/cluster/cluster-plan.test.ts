import { type NodePlan, PlanRules } from '../../api/agentapi/v1.js';
import type { ContainerRecord } from '../containers/registry.js';
import { ClusterPlan, type CompileRules, compilePlanRules } from './cluster-plan.js';
import { containerRecord } from '../containers/testdata/container-record.js';

const container = (identity: ContainerRecord['identity']) => containerRecord(identity);

const shell = {
  kind: 'container' as const,
  podNamespace: 'shop',
  podName: 'web-1',
  podUid: 'uid-1',
  containerName: 'shell',
};

function rules(overrides: Record<string, unknown> = {}): PlanRules {
  return PlanRules.parse({
    capture: {},
    redact: {},
    alerts: [],
    outputs: {},
    ...overrides,
  });
}

function nodePlan(
  version: string,
  policies: Record<string, PlanRules>,
  containers: NodePlan['containers'],
): NodePlan {
  return { node: 'node-a', version, generatedAt: '2026-01-01T00:00:00Z', policies, containers };
}

const listed = (policy: string, podUid = 'uid-1', containerName = 'shell') => ({
  podNamespace: 'shop',
  podName: 'web-1',
  podUid,
  containerName,
  policy,
});

describe('the cluster plan', () => {
  it('audits nothing before the operator sent a plan, and never a sandbox', () => {
    const plan = new ClusterPlan();
    expect(plan.auditOf(container(shell))).toEqual({
      audited: false,
      reason: 'no plan from the operator yet',
    });
    expect(plan.version).toBeUndefined();
    expect(plan.maxCommandBytes).toBe(4096);
    expect(plan.execs).toBe(false);
    plan.update(nodePlan('v1', { p: rules() }, [listed('p')]));
    expect(plan.auditOf(container({ ...shell, kind: 'sandbox' }))).toMatchObject({ audited: false });
  });

  it('audits a container listed by pod uid and container name, under its policy', () => {
    const plan = new ClusterPlan(
      nodePlan('v1', { shells: rules({ capture: { maxCommandBytes: 512, execs: true } }) }, [
        listed('shells'),
      ]),
    );
    expect(plan.auditOf(container(shell))).toMatchObject({
      audited: true,
      audit: {
        policy: 'shells',
        interactiveShells: true,
        execs: true,
        maxCommandBytes: 512,
        redactKeyBlocks: true,
      },
    });
    expect(plan.auditOf(container({ ...shell, containerName: 'sidecar' }))).toEqual({
      audited: false,
      reason: 'not in the node plan (version v1)',
    });
    expect(plan.auditOf(container({ ...shell, podUid: 'uid-2' })).audited).toBe(false);
    // The node names containers by what CRI annotations say: without them, nothing to match.
    expect(plan.auditOf(container({ kind: 'unknown' }))).toMatchObject({
      audited: false,
      reason: expect.stringMatching(/no pod uid or container name/) as string,
    });
  });

  it('applies each policy its own rules, compiled for real', () => {
    const plan = new ClusterPlan(
      nodePlan(
        'v1',
        {
          cards: rules({ redact: { patterns: ['card=[0-9]{4}'] } }),
          plain: rules({
            redact: { builtins: false },
            alerts: [{ name: 'rm', pattern: 'rm -rf', severity: 'high' }],
          }),
        },
        [listed('cards', 'uid-1'), listed('plain', 'uid-2')],
      ),
    );
    const a = plan.auditOf(container(shell));
    const b = plan.auditOf(container({ ...shell, podUid: 'uid-2' }));
    if (!a.audited || !b.audited) throw new Error('both must be audited');
    expect(a.audit.filter.apply('pay card=1234 --password=x').text).toBe(
      'pay [REDACTED] --password=[REDACTED]',
    );
    expect(b.audit.filter.apply('rm -rf / --password=x')).toEqual({
      text: 'rm -rf / --password=x',
      redacted: false,
      alerts: [{ name: 'rm', severity: 'high' }],
    });
    expect(b.audit.redactKeyBlocks).toBe(false);
  });

  it('takes the largest limit and any exec capture over the policies', () => {
    const plan = new ClusterPlan(
      nodePlan(
        'v1',
        {
          a: rules({ capture: { maxCommandBytes: 100 } }),
          b: rules({ capture: { maxCommandBytes: 9000, interactiveShells: false, execs: true } }),
        },
        [],
      ),
    );
    expect(plan.maxCommandBytes).toBe(9000);
    expect(plan.execs).toBe(true);
    plan.update(nodePlan('v2', { a: rules({ capture: { maxCommandBytes: 100 } }) }, []));
    expect(plan.maxCommandBytes).toBe(100);
    expect(plan.execs).toBe(false);
  });

  it('audits nothing under a policy whose rules do not compile, and says so', () => {
    const plan = new ClusterPlan(
      nodePlan('v1', { bad: rules({ redact: { patterns: ['(a)\\1'] } }), good: rules() }, [
        listed('bad', 'uid-1'),
        listed('good', 'uid-2'),
        listed('missing', 'uid-3'),
      ]),
    );
    expect(plan.auditOf(container(shell))).toMatchObject({
      audited: false,
      reason: expect.stringMatching(
        /^policy bad: its rules do not compile on this node: spec\.redact\.patterns\[0\]/,
      ) as string,
    });
    expect(plan.auditOf(container({ ...shell, podUid: 'uid-2' })).audited).toBe(true);
    expect(plan.auditOf(container({ ...shell, podUid: 'uid-3' }))).toEqual({
      audited: false,
      reason: 'the plan names policy missing but carries no rules for it',
    });
    expect(plan.errors).toEqual([expect.stringMatching(/^policy bad: /)]);
    plan.update(nodePlan('v2', { good: rules() }, [listed('good', 'uid-2')]));
    expect(plan.errors).toEqual([]);
  });

  it('compiles a policy once, and hands out the same audit while its rules do not change', () => {
    let compiled = 0;
    const counting: CompileRules = (r) => {
      compiled++;
      return compilePlanRules(r);
    };
    const plan = new ClusterPlan(
      nodePlan('v1', { a: rules(), b: rules({ capture: { execs: true } }) }, [listed('a')]),
      counting,
    );
    expect(compiled).toBe(2);
    const before = plan.auditOf(container(shell));
    // v2: another container listed, a's rules unchanged, b's changed.
    plan.update(
      nodePlan('v2', { a: rules(), b: rules({ capture: { execs: false } }) }, [
        listed('a'),
        listed('b', 'uid-2'),
      ]),
    );
    expect(compiled).toBe(3);
    const after = plan.auditOf(container(shell));
    expect(before.audited && after.audited && before.audit === after.audit).toBe(true);
    expect(plan.version).toBe('v2');
    // v3: a's rules change: a new audit (the agent applies the new rules to its containers).
    plan.update(nodePlan('v3', { a: rules({ redact: { builtins: false } }) }, [listed('a')]));
    const changed = plan.auditOf(container(shell));
    expect(changed.audited && after.audited && changed.audit !== after.audit).toBe(true);
    expect(changed).toMatchObject({ audit: { redactKeyBlocks: false } });
  });
});
