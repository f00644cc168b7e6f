import { AuditRecord, MAX_COMMANDS_PER_RECORD } from './index.js';

const record = {
  apiVersion: 'containeraudit.io/v1alpha1',
  kind: 'AuditRecord',
  metadata: { name: 'web-0-app-4242-1', namespace: 'shop' },
  spec: {
    pod: { name: 'web-0', uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' },
    container: { name: 'app', id: 'c0ffee', image: 'registry.example/web:1.2' },
    node: 'node-a',
    policy: 'production-shells',
    session: { kind: 'shell', pid: 4242, start: '2026-11-29T10:00:00Z' },
  },
  status: {
    phase: 'Active',
    commands: [
      {
        seq: 1,
        time: '2026-11-29T10:00:01.250Z',
        pid: 4242,
        uid: 0,
        command: 'ls -la /',
      },
    ],
  },
};

describe('AuditRecord schema', () => {
  it('accepts a record and fills the defaults', () => {
    const parsed = AuditRecord.parse(record);
    expect(parsed.spec.session.part).toBe(1);
    expect(parsed.status?.commands?.[0]).toMatchObject({ truncated: false, redacted: false });
  });

  it('refuses an unknown session kind', () => {
    const bad = { ...record, spec: { ...record.spec, session: { ...record.spec.session, kind: 'ssh' } } };
    expect(AuditRecord.safeParse(bad).error?.issues[0]?.path).toEqual(['spec', 'session', 'kind']);
  });

  it(`bounds a record at ${MAX_COMMANDS_PER_RECORD} commands`, () => {
    const commands = Array.from({ length: MAX_COMMANDS_PER_RECORD + 1 }, (_, seq) => ({
      ...record.status.commands[0],
      seq,
    }));
    const parsed = AuditRecord.safeParse({ ...record, status: { commands } });
    expect(parsed.error?.issues[0]?.path).toEqual(['status', 'commands']);
  });
});
