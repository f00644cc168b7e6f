import type { ContainerRecord } from '../containers/registry.js';
import type { ContainerAudit } from '../plan/plan.js';
import { compileCommandRules } from '../../common/rules/command-rules.js';
import { execLineFits } from '../../api/records/text.js';
import { AgentRecord } from '../../api/records/v1.js';
import { IDENTITY_LIMITS, MAX_COMMAND_TEXT } from '../../api/v1alpha1/auditrecord.js';
import {
  argvFields,
  commandRecord,
  containerRef,
  cutArgv,
  execArgvFields,
  recordContainerId,
} from './build.js';
import { containerRecord } from '../containers/testdata/container-record.js';

function rules(redact: { builtins: boolean; patterns: string[] }) {
  const compiled = compileCommandRules({
    redact,
    alerts: [{ name: 'rm', pattern: 'rm -rf', severity: 'high' }],
  });
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return compiled.rules;
}

const container: ContainerRecord = containerRecord(
  { kind: 'container', podNamespace: 'shop', podName: 'web-1', podUid: 'u1', containerName: 'app' },
  { id: 'abc', mntns: 7, pidns: 8 },
);

const audit: ContainerAudit = {
  policy: 'p',
  interactiveShells: true,
  execs: true,
  maxCommandBytes: 16,
  filter: rules({ builtins: false, patterns: ['hunter2'] }),
  redactKeyBlocks: true,
};

const line = (bytes: Buffer, truncated = false) => ({
  pid: 100,
  tid: 100,
  ns: 1n,
  uid: 0,
  cgroup: 1n,
  mntns: 7,
  bytes,
  truncated,
});

describe('records from captured lines', () => {
  const time = new Date('2026-01-02T03:04:05.678Z');

  it('names the container from its CRI identity and leaves out what is unknown', () => {
    expect(containerRef(container, 'p')).toEqual({
      containerId: 'abc',
      pod: { namespace: 'shop', name: 'web-1', uid: 'u1' },
      container: 'app',
      policy: 'p',
    });
    expect(containerRef({ ...container, identity: { kind: 'unknown' } })).toEqual({ containerId: 'abc' });
  });

  it('redacts, keeps the exact bytes around the redaction and base64s what is not UTF-8', () => {
    const bytes = Buffer.from('\xff pw hunter2', 'latin1');
    const record = commandRecord(line(bytes), container, audit, time, 5);
    expect(record).toMatchObject({
      kind: 'command',
      time: time.toISOString(),
      pid: 100,
      nsPid: 5,
      redacted: true,
      truncated: false,
    });
    expect(Buffer.from(record.commandBase64!, 'base64')).toEqual(Buffer.from('\xff pw [REDACTED]', 'latin1'));
  });

  it("cuts at the container's own limit when the probe read more", () => {
    const record = commandRecord(
      line(Buffer.from('echo 0123456789abcdef')),
      container,
      audit,
      time,
      undefined,
    );
    expect(record).toMatchObject({ command: 'echo 0123456789a', truncated: true });
    expect(record).not.toHaveProperty('nsPid');
  });

  it('never cuts a multi-byte character into a lie: the cut bytes are reported as bytes', () => {
    const record = commandRecord(line(Buffer.from('echo 日本語日本語')), container, audit, time, undefined);
    expect(Buffer.from(record.commandBase64!, 'base64')).toEqual(
      Buffer.from('echo 日本語日本語').subarray(0, 16),
    );
  });

  it('redacts a secret that spans arguments, and keeps each argument in its place', () => {
    const builtins = { ...audit, filter: rules({ builtins: true, patterns: [] }) };
    expect(
      argvFields(
        ['mysql', '--password', 'hunter2', '-e', 'select 1'].map((a) => Buffer.from(a)),
        builtins,
      ),
    ).toEqual({
      argv: ['mysql', '--password', '[REDACTED]', '-e', 'select 1'],
      redacted: true,
      alerts: [],
      fitCut: false,
    });
  });

  it('filters each argument of an exec, and alerts on the command line they make', () => {
    const fields = argvFields([Buffer.from('sh'), Buffer.from('-c'), Buffer.from('rm -rf / hunter2')], audit);
    expect(fields).toEqual({
      argv: ['sh', '-c', 'rm -rf / [REDACTED]'],
      redacted: true,
      alerts: [{ name: 'rm', severity: 'high' }],
      fitCut: false,
    });
  });

  it('cuts to the AuditRecord’s bound what redaction made longer than it, and says so', () => {
    // 32 one-byte secrets (a pattern's most replacements, MAX_MATCHES) in a line at the largest
    // maxCommandBytes: each marker is 9 bytes longer than its secret.
    const secrets = (n: number) => Buffer.from('q '.repeat(32) + 'x'.repeat(n - 64));
    const wide = {
      ...audit,
      maxCommandBytes: MAX_COMMAND_TEXT,
      filter: rules({ builtins: false, patterns: ['q'] }),
    };
    const record = commandRecord(line(secrets(MAX_COMMAND_TEXT)), container, wide, time, undefined);
    expect(record.command).toHaveLength(MAX_COMMAND_TEXT);
    expect(record).toMatchObject({ redacted: true, truncated: true });
    expect(AgentRecord.safeParse({ ...record, seq: 1, boot: 'b', node: 'n' }).success).toBe(true);
    const exec = execArgvFields([secrets(MAX_COMMAND_TEXT - 1)], wide);
    expect(exec).toMatchObject({ redacted: true, truncated: true });
    expect(execLineFits(exec.argv)).toBe(true);
  });

  it('keeps an exec whose quoted command line an AuditRecord could not hold to one it can', () => {
    const quotes = { ...audit, maxCommandBytes: MAX_COMMAND_TEXT };
    const fields = execArgvFields([Buffer.alloc(MAX_COMMAND_TEXT - 1, "'")], quotes);
    expect(fields.truncated).toBe(true);
    expect(execLineFits(fields.argv)).toBe(true);
    expect(fields.argv[0]!.length).toBeGreaterThan(MAX_COMMAND_TEXT / 4 - 4);
  });

  it('cuts a container’s identity to the AuditRecord’s bounds', () => {
    const long = containerRecord(
      {
        kind: 'container',
        podNamespace: 'shop',
        podName: 'web-1',
        containerName: 'app',
        image: 'i'.repeat(5000),
      },
      { id: 'c'.repeat(1024), mntns: 7, pidns: 8 },
    );
    const ref = containerRef(long, 'p');
    expect(ref.containerId).toBe('c'.repeat(IDENTITY_LIMITS.containerId));
    expect(ref.image).toBe('i'.repeat(IDENTITY_LIMITS.image));
    expect(recordContainerId('c'.repeat(1024))).toBe(ref.containerId);
  });
});

const args = (...a: string[]) => a.map((s) => Buffer.from(s));
const text = (r: { args: Buffer[] }) => r.args.map((b) => b.toString());

describe('cutting argv to a container’s limit', () => {
  it('keeps argv whole when it fits with its NULs', () => {
    expect(cutArgv(args('ls', '-l'), 6)).toEqual({ args: args('ls', '-l'), cut: false });
  });

  it('cuts as the exec probe does: the string that straddles the bound in the middle, the rest left out', () => {
    const cut = cutArgv(args('curl', '--data', 'secretvalue', 'http://x'), 15);
    expect(text(cut)).toEqual(['curl', '--data', 'sec']);
    expect(cut.cut).toBe(true);
    // A string that fills the bound but for its NUL is cut too (it may go on).
    expect(cutArgv(args('abcd', 'e'), 4)).toEqual({ args: args('abcd'), cut: true });
    expect(cutArgv(args('ab', 'cd'), 3)).toEqual({ args: args('ab'), cut: true });
  });

  it('cuts every exec to the limit and says so, whatever reported it (kubectl exec args included)', () => {
    // A `runc exec` hand-off carries the args whole: the record keeps maxCommandBytes (16) of them.
    const long = ['sh', '-c', `echo ${'x'.repeat(100)}`];
    expect(execArgvFields(args(...long), audit)).toEqual({
      argv: ['sh', '-c', 'echo xxxxx'],
      redacted: false,
      alerts: [],
      truncated: true,
    });
    expect(execArgvFields(args('ls', '-l'), audit)).toMatchObject({ argv: ['ls', '-l'], truncated: false });
    // The exec probe already cut it (its own bound): still truncated, though what it kept fits.
    expect(execArgvFields(args('ls'), audit, true)).toMatchObject({ argv: ['ls'], truncated: true });
  });
});
