import { containerRecord } from '../containers/testdata/container-record.js';
import type { ContainerAudit } from '../plan/plan.js';
import {
  CoverageBook,
  covered,
  isLate,
  type PendingCoverage,
  probeGap,
  resolutionGap,
  type ShellTarget,
} from './coverage.js';
import { containerAudit } from './testdata/container-audit.js';

const audit: ContainerAudit = containerAudit({ policy: 'shells' });
const web = containerRecord(
  {
    kind: 'container',
    podNamespace: 'shop',
    podName: 'web-1',
    podUid: 'u1',
    containerName: 'web',
    image: 'img',
  },
  { id: 'web', mntns: 100 },
);
const api = containerRecord({ kind: 'container', containerName: 'api' }, { id: 'api', mntns: 200 });
const ref = {
  containerId: 'web',
  pod: { namespace: 'shop', name: 'web-1', uid: 'u1' },
  container: 'web',
  image: 'img',
  policy: 'shells',
};

const bash: ShellTarget = {
  key: '1:2',
  file: '/layers/1/bin/bash',
  probe: '/proc/7/fd/20',
  bash: '/bin/bash',
  via: 'bash',
};
const lib: ShellTarget = {
  key: '1:3',
  file: '/layers/1/lib/libreadline.so.8',
  probe: '/proc/7/fd/21',
  bash: '/usr/bin/bash',
  via: 'libreadline',
};

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms);
const iso = (ms: number) => at(ms).toISOString();

const pending = (over: Partial<PendingCoverage> = {}): PendingCoverage => ({
  container: web,
  audit,
  target: bash,
  fresh: true,
  why: 'create of the container',
  ...over,
});

describe('isLate', () => {
  it('is late when fresh and the wrapper no longer holds the create (or there was none in the batch)', () => {
    const created = iso(0);
    expect(isLate(true, T0 + 2000, created, 2000)).toBe(false); // at the deadline: still held
    expect(isLate(true, T0 + 2001, created, 2000)).toBe(true);
    expect(isLate(true, T0, undefined, 2000)).toBe(true); // no create in this batch: it may have run
    expect(isLate(false, T0 + 60_000, undefined, 2000)).toBe(false); // its probe was reported before
  });
});

describe('coverage records', () => {
  it('a gap from resolving readline names the shell, and notes the problem', () => {
    expect(resolutionGap(web, audit, { bash: '/bin/bash', reason: 'no readline' }, at(5))).toEqual({
      error: 'container web: /bin/bash cannot be probed: no readline',
      record: {
        kind: 'coverage',
        time: iso(5),
        ...ref,
        status: 'gap',
        bash: '/bin/bash',
        reason: 'no readline',
      },
    });
  });

  it('a gap of a container without bash names no shell, and one of a file names the file', () => {
    const none = resolutionGap(web, audit, { bash: undefined, reason: 'no bash in the container' }, at(0));
    expect(none.error).toBe('container web: no bash: no bash in the container');
    expect(Object.keys(none.record)).not.toContain('bash');
    const pinned = resolutionGap(web, audit, { bash: '/bin/bash', reason: 'moved', target: '/x' }, at(0));
    expect(pinned.record).toMatchObject({ bash: '/bin/bash', target: '/x', reason: 'moved' });
  });

  it('quotes a container’s path escaped and cut in the problem, whole in the record', () => {
    const path = `/bin/\x1b[31m${'a'.repeat(300)}`;
    const out = resolutionGap(web, audit, { bash: path, reason: 'r' }, at(0));
    expect(out.error).not.toContain('\x1b');
    expect(out.error!.length).toBeLessThan(260);
    expect(out.record.bash).toBe(path);
  });

  it('keeps the field order of the records as written before (records are compared as JSON)', () => {
    const gapFields = [
      'kind',
      'time',
      'containerId',
      'pod',
      'container',
      'image',
      'policy',
      'status',
      'bash',
      'target',
      'via',
      'reason',
    ];
    expect(Object.keys(covered(pending(), 'why', false, at(0)).record)).toEqual([
      ...gapFields,
      'coveredFrom',
      'late',
    ]);
    expect(Object.keys(probeGap(pending(), 'r', at(0)).record)).toEqual(gapFields);
  });
});

describe('CoverageBook', () => {
  it('reports each booked probe once attached: covered from now, late as isLate says, in the order booked', () => {
    const book = new CoverageBook();
    book.add(pending());
    book.add(pending({ container: api, target: lib, fresh: false, why: 'shells audited from a new plan' }));
    expect(book.hasPending).toBe(true);
    const out = book.attached(new Map(), new Map([['web', iso(0)]]), 2000, at(3000));
    expect(out.map((o) => o.record)).toEqual([
      {
        kind: 'coverage',
        time: iso(3000),
        ...ref,
        status: 'covered',
        bash: '/bin/bash',
        target: bash.file,
        via: 'bash',
        reason: 'create of the container',
        coveredFrom: iso(3000),
        late: true,
      },
      {
        kind: 'coverage',
        time: iso(3000),
        containerId: 'api',
        container: 'api',
        policy: 'shells',
        status: 'covered',
        bash: '/usr/bin/bash',
        target: lib.file,
        via: 'libreadline',
        reason: 'shells audited from a new plan',
        coveredFrom: iso(3000),
        late: false,
      },
    ]);
    expect(out.every((o) => o.error === undefined)).toBe(true);
    expect(book.hasPending).toBe(false);
    expect(book.attached(new Map(), new Map(), 2000, at(4000))).toEqual([]);
  });

  it('is not late when the create is acknowledged with this attach, within the wrapper’s wait', () => {
    const book = new CoverageBook();
    book.add(pending());
    const [out] = book.attached(new Map(), new Map([['web', iso(0)]]), 2000, at(150));
    expect(out!.record.late).toBe(false);
  });

  it('reports a probe bpftrace rejected as a gap with its reason, and notes it', () => {
    const book = new CoverageBook();
    book.add(pending());
    const [out] = book.attached(new Map([[bash.probe, 'uprobe failed']]), new Map(), 2000, at(0));
    expect(out).toEqual({
      error: `container web: the readline probe on ${bash.file} failed: uprobe failed`,
      record: {
        kind: 'coverage',
        time: iso(0),
        ...ref,
        status: 'gap',
        bash: '/bin/bash',
        target: bash.file,
        via: 'bash',
        reason: 'uprobe failed',
      },
    });
  });

  it('reports every pending probe as a gap when bpftrace could not take the targets at all, and forgets them', () => {
    const book = new CoverageBook();
    book.add(pending());
    book.add(pending({ container: api, target: lib }));
    const out = book.attachFailed('spawn ENOENT', at(0));
    expect(out.map((o) => [o.record.containerId, o.record.status, o.record.reason])).toEqual([
      ['web', 'gap', 'bpftrace could not attach: spawn ENOENT'],
      ['api', 'gap', 'bpftrace could not attach: spawn ENOENT'],
    ]);
    expect(book.hasPending).toBe(false);
    // Not held: a later change of that probe says nothing of them.
    expect(book.probeChanged(bash.probe, 'gone', () => web, at(1))).toEqual([]);
  });

  it('tells every container holding a probe when it is lost and when a retry wins it back', () => {
    const book = new CoverageBook();
    book.add(pending());
    book.add(pending({ container: api, fresh: false }));
    book.attached(new Map(), new Map(), 2000, at(0));
    const current = (id: string) => ({ web, api })[id as 'web' | 'api'];
    const lost = book.probeChanged(bash.probe, 'bpftrace left it out', current, at(10));
    expect(lost.map((o) => [o.record.containerId, o.record.status, o.record.reason])).toEqual([
      ['web', 'gap', 'bpftrace left it out'],
      ['api', 'gap', 'bpftrace left it out'],
    ]);
    const back = book.probeChanged(bash.probe, undefined, current, at(20));
    expect(back.map((o) => o.record)).toEqual([
      {
        kind: 'coverage',
        time: iso(20),
        ...ref,
        status: 'covered',
        bash: '/bin/bash',
        target: bash.file,
        via: 'bash',
        reason: 'attached on a retry, after it could not be',
        coveredFrom: iso(20),
        late: true,
      },
      expect.objectContaining({ containerId: 'api', status: 'covered', late: true }),
    ]);
  });

  it('says nothing of a probe not reported yet (the next attach reports it)', () => {
    const book = new CoverageBook();
    book.add(pending());
    expect(book.probeChanged(bash.probe, 'lost', () => web, at(0))).toEqual([]);
  });

  it('forgets a holder that is no longer audited as the record reported, for good', () => {
    const book = new CoverageBook();
    book.add(pending());
    book.attached(new Map(), new Map(), 2000, at(0));
    const again = containerRecord({ kind: 'container' }, { id: 'web', initPid: 99 });
    expect(book.probeChanged(bash.probe, 'lost', () => again, at(1))).toEqual([]);
    expect(book.probeChanged(bash.probe, 'lost', () => web, at(2))).toEqual([]);
  });

  it('forgets what was reported of probes no longer asked for', () => {
    const book = new CoverageBook();
    book.add(pending());
    book.add(pending({ container: api, target: lib }));
    book.attached(new Map(), new Map(), 2000, at(0));
    expect(book.probes().sort()).toEqual([bash.probe, lib.probe].sort());
    book.keepProbes([lib.probe]);
    expect(book.probes()).toEqual([lib.probe]);
    expect(book.probeChanged(bash.probe, 'lost', () => web, at(1))).toEqual([]);
  });
});
