import type { ContainerAuditPolicyStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import { desiredStatus, MAX_MESSAGE, type StatusInput } from './status.js';
import { reported, selection, statusInput as input } from './testdata/fixtures.js';

const conditions = (status: ContainerAuditPolicyStatus) =>
  Object.fromEntries((status.conditions ?? []).map((c) => [c.type, c]));

describe('desiredStatus: conditions', () => {
  it.each<[string, Partial<StatusInput>, Record<string, [string, string]>, RegExp[]]>([
    [
      'a sound policy auditing everything',
      {},
      { Ready: ['True', 'Audited'], Invalid: ['False', 'Valid'], Degraded: ['False', 'AllAudited'] },
      [/^Audits 3 containers on 1 node\.$/m],
    ],
    [
      'a policy that selects nothing is ready',
      { selection: selection({ matchedPods: 0, auditedContainers: 0, nodes: [] }) },
      { Ready: ['True', 'NoPodsSelected'], Degraded: ['False', 'AllAudited'] },
      [/matches no pod/],
    ],
    [
      'an invalid policy: the field is named',
      {
        selection: selection({
          active: false,
          problems: [{ field: 'spec.redact.patterns[0]', message: 'backreferences are not supported' }],
        }),
      },
      { Ready: ['False', 'Invalid'], Invalid: ['True', 'InvalidSpec'], Degraded: ['False', 'Invalid'] },
      [/spec\.redact\.patterns\[0\]: backreferences/],
    ],
    [
      'a suspended policy',
      { selection: selection({ active: false, suspended: true }) },
      { Ready: ['False', 'Suspended'], Invalid: ['False', 'Valid'], Degraded: ['False', 'Suspended'] },
      [/spec\.suspend/],
    ],
    [
      'unauditable pods are named, the rest counted',
      { selection: selection({ unauditablePods: 7, unauditablePodNames: ['a/x', 'b/y'] }) },
      { Ready: ['True', 'Audited'], Degraded: ['True', 'UnauditablePods'] },
      [/7 selected pods cannot be audited \(RuntimeClass is not container-auditor\): a\/x, b\/y and 5 more/],
    ],
    [
      'an agent reporting errors',
      { nodeReport: () => reported({ errors: ['old', 'bpftrace exited: 1'] }) },
      { Degraded: ['True', 'AgentErrors'] },
      [/the agent on node node-a reports: old, bpftrace exited \(details in the agent's log\)/],
    ],
    [
      'a node whose agent never reported',
      { nodeReport: () => undefined },
      { Degraded: ['True', 'AgentsNotReporting'] },
      [/no report from the agent on node node-a/],
    ],
    [
      'a node whose agent never reported, right after start-up',
      { nodeReport: () => undefined, excuseMissingReports: true },
      { Degraded: ['False', 'AllAudited'] },
      [],
    ],
    [
      'losses reported under the policy',
      { recentProblems: [{ kind: 'loss', node: 'node-a', reason: 'queue-full', count: 12 }] },
      { Degraded: ['True', 'LossesReported'] },
      [/losses reported: 12 commands lost \(queue-full\) on node node-a/],
    ],
    [
      'several causes: the first gives the reason, the message tells all',
      {
        selection: selection({ unauditablePods: 1, unauditablePodNames: ['a/x'] }),
        nodeReport: () => undefined,
      },
      { Degraded: ['True', 'UnauditablePods'] },
      [/a\/x\. no report from the agent on node node-a\.$/],
    ],
    [
      'containers audited by an older policy, pods not scheduled yet',
      {
        selection: selection({
          auditedElsewhere: [{ policy: 'older', containers: 2 }],
          unscheduledPods: 1,
        }),
      },
      { Ready: ['True', 'Audited'] },
      [/2 selected containers audited by older policy older; 1 selected pod not on a node yet/],
    ],
  ])('%s', (_name, overrides, want, messages) => {
    const status = desiredStatus(input(overrides));
    const byType = conditions(status);
    expect(Object.keys(byType)).toEqual(['Ready', 'Invalid', 'Degraded']);
    for (const [type, [s, reason]] of Object.entries(want))
      expect(byType[type]).toMatchObject({ status: s, reason });
    const text = status.conditions!.map((c) => c.message).join('\n');
    for (const m of messages) expect(text).toMatch(m);
    for (const c of status.conditions!) expect(c.observedGeneration).toBe(3);
  });

  it('keeps transition times while statuses hold and moves only the one that flips', () => {
    const first = desiredStatus(input({ now: new Date('2026-03-01T10:00:00Z') }));
    const same = desiredStatus(input({ previous: first }));
    expect(same.conditions).toEqual(first.conditions);
    const flipped = desiredStatus(input({ previous: first, nodeReport: () => undefined }));
    const byType = conditions(flipped);
    expect(byType['Degraded']!.lastTransitionTime).toBe('2026-03-01T12:00:00Z');
    expect(byType['Ready']!.lastTransitionTime).toBe('2026-03-01T10:00:00Z');
  });

  it('drops condition types it does not own and orders its own', () => {
    const status = desiredStatus(
      input({
        previous: {
          conditions: [
            {
              type: 'Degraded',
              status: 'False',
              reason: 'AllAudited',
              message: '',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
            {
              type: 'Other',
              status: 'True',
              reason: 'X',
              message: '',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
        },
      }),
    );
    expect(status.conditions!.map((c) => [c.type, c.lastTransitionTime])).toEqual([
      ['Ready', '2026-03-01T12:00:00Z'],
      ['Invalid', '2026-03-01T12:00:00Z'],
      ['Degraded', '2026-01-01T00:00:00Z'],
    ]);
  });

  it('keeps messages short', () => {
    const problems = Array.from({ length: 64 }, (_, i) => ({
      field: `spec.redact.patterns[${i}]`,
      message: 'x'.repeat(100),
    }));
    const status = desiredStatus(input({ selection: selection({ active: false, problems }) }));
    for (const c of status.conditions!) expect(c.message.length).toBeLessThanOrEqual(MAX_MESSAGE);
  });
});

describe('desiredStatus: figures', () => {
  it('reports the selection and each node as its agent told it', () => {
    const status = desiredStatus(input({ nodeReport: () => reported({ errors: ['e'.repeat(2000)] }) }));
    expect(status).toMatchObject({
      observedGeneration: 3,
      matchedPods: 2,
      auditedContainers: 3,
      unauditablePods: 0,
      commandsRecorded: 0,
      nodes: [
        {
          name: 'node-a',
          planVersion: 'v1',
          auditedContainers: 3,
          probesAttached: 1,
          lastReportTime: '2026-03-01T11:59:30Z',
        },
      ],
    });
    expect(status.nodes![0]!.errors).toEqual(['error']);
    expect(status.lastCommandTime).toBeUndefined();
  });

  it('lists a node with no report by name only', () => {
    expect(desiredStatus(input({ nodeReport: () => undefined })).nodes).toEqual([{ name: 'node-a' }]);
  });

  it('adds the commands gathered since the last write to the stored count', () => {
    const status = desiredStatus(
      input({
        previous: { commandsRecorded: 10, lastCommandTime: '2026-03-01T11:00:00Z' },
        activity: { commands: 5, lastCommandTime: new Date('2026-03-01T11:30:00.900Z'), problems: [] },
      }),
    );
    expect(status.commandsRecorded).toBe(15);
    expect(status.lastCommandTime).toBe('2026-03-01T11:30:00Z');
  });

  it('never moves lastCommandTime back', () => {
    const status = desiredStatus(
      input({
        previous: { commandsRecorded: 1, lastCommandTime: '2026-03-01T11:00:00Z' },
        activity: { commands: 1, lastCommandTime: new Date('2026-03-01T10:00:00Z'), problems: [] },
      }),
    );
    expect(status.lastCommandTime).toBe('2026-03-01T11:00:00Z');
  });

  it('shows no figures for a spec that could not be read, and no nodes for a policy that is not ready', () => {
    const unread = desiredStatus(
      input({
        selection: selection({
          active: false,
          evaluated: false,
          problems: [{ field: 'spec', message: 'bad' }],
          nodes: [],
        }),
        previous: { commandsRecorded: 4 },
      }),
    );
    expect(unread).not.toHaveProperty('matchedPods');
    expect(unread).not.toHaveProperty('nodes');
    expect(unread.commandsRecorded).toBe(4);
    expect(
      desiredStatus(input({ selection: selection({ active: false, suspended: true }) })),
    ).not.toHaveProperty('nodes');
  });
});
