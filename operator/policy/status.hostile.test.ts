/**
 * Hostile input: a ContainerAuditPolicy is cluster-scoped, so whoever may read policies reads its status. What
 * a container controls (the paths of its shell and libraries, its files' names, what its commands print) must
 * not reach it: one tenant's paths would be readable by everyone who can read policies. The status says how
 * many and what kind; the detail stays in the pod's namespace. And what the status does say is escaped.
 */
import type { CoverageRecord, LossRecord } from '../../api/records/v1.js';
import { coverageProblem, lossProblem } from '../ingest/ingestor.js';
import { ReportLedger } from '../ledger.js';
import { desiredStatus, errorCategory } from './status.js';
import { reported, selection, statusInput } from './testdata/fixtures.js';

const SECRET_DIR = '/opt/acme-payroll-2027\u202e\n  Normal  Pulled  kubelet';
const HOSTILE_BASH = `${SECRET_DIR}/bin/bash`;

const header = { seq: 1, boot: 'b00t', time: '2026-03-01T11:59:00Z', node: 'node-a' };
const where = {
  containerId: 'c0ffee0123456789',
  pod: { namespace: 'tenant-a', name: 'payroll-0', uid: 'u1' },
  container: 'app',
  policy: 'p',
};
const gap: CoverageRecord = {
  kind: 'coverage',
  ...header,
  ...where,
  status: 'gap',
  bash: HOSTILE_BASH,
  target: `/proc/4242/root${HOSTILE_BASH}`,
  reason: `no readline in ${HOSTILE_BASH} nor in ${SECRET_DIR}/lib/libreadline.so.8`,
};
const late: CoverageRecord = { ...gap, seq: 2, status: 'covered', late: true, reason: `via ${HOSTILE_BASH}` };
const loss: LossRecord = {
  kind: 'loss',
  ...header,
  seq: 3,
  reason: 'bpftrace-exited',
  count: 4,
  detail: `ERROR: could not attach uprobe to ${HOSTILE_BASH}`,
};
// What an agent says about the same container in its state, as the agent words it today.
const agentErrors = [
  `container c0ffee0123456789: ${HOSTILE_BASH} cannot be probed: no readline`,
  `bpftrace exited: ERROR: ${HOSTILE_BASH}: no such file`,
  `${SECRET_DIR}: unreadable`,
];

function hostileStatus() {
  const ledger = new ReportLedger();
  for (const problem of [coverageProblem(gap), coverageProblem(late), lossProblem(loss)])
    if (problem) ledger.recordProblem('p', problem);
  return desiredStatus(
    statusInput({
      recentProblems: ledger.takeActivity('p')?.problems ?? [],
      nodeReport: () => reported({ errors: agentErrors }),
    }),
  );
}

describe('the policy status after a coverage gap with a hostile path', () => {
  it('carries no path, no part of one, and nothing the container wrote', () => {
    const text = JSON.stringify(hostileStatus());
    for (const fragment of [
      'acme',
      'payroll',
      '/opt',
      'bin/bash',
      'libreadline',
      'Pulled',
      '\u202e',
      'tenant-a',
    ])
      expect(text).not.toContain(fragment);
  });

  it('carries counts and categories instead', () => {
    const status = hostileStatus();
    const degraded = status.conditions!.find((c) => c.type === 'Degraded')!;
    expect(degraded).toMatchObject({ status: 'True', reason: 'AgentErrors' });
    expect(degraded.message).toContain(
      'losses reported: 1 container not audited (coverage gap), 1 container audited late (earlier commands may ' +
        'be missing), 4 commands lost (bpftrace-exited) on node node-a',
    );
    expect(status.nodes![0]!.errors).toEqual(['container', 'bpftrace exited', 'error']);
  });
});

describe('errorCategory', () => {
  it.each([
    ['readline capture: spawn bpftrace ENOENT', 'readline capture'],
    ['bpftrace exited: ERROR: /opt/x/bin/bash', 'bpftrace exited'],
    ['a queued record could not be read and was skipped: bad json', 'a queued record could not be'],
    ['container 3f2a: /opt/x/bin/bash cannot be probed: no readline', 'container'],
    ['/opt/x: unreadable', 'error'],
    ['payroll\u202ejpg.exe: x', 'error'],
    ['UPPER case: x', 'error'],
    ['x'.repeat(100), 'error'],
    ['', 'error'],
  ])('%j -> %j', (message, category) => {
    expect(errorCategory(message)).toBe(category);
  });
});

describe('condition messages', () => {
  it('show control and bidirectional formatting characters escaped', () => {
    const status = desiredStatus(
      statusInput({
        selection: selection({
          active: false,
          problems: [{ field: 'spec.redact.patterns[0]', message: 'does not compile: "a\u202e\n(b"' }],
        }),
      }),
    );
    for (const c of status.conditions!) expect(c.message).not.toMatch(/[\n\u202e]/);
    expect(status.conditions!.find((c) => c.type === 'Invalid')!.message).toContain('a\\u{202e}\\x0a(b');
  });
});
