import type { Handoff } from '../../api/handoff/v1.js';
import { AgentRecord } from '../../api/records/v1.js';
import { compileCommandRules, REDACTED } from '../../common/rules/command-rules.js';
import { PrivateKeyBlocks } from '../../common/rules/key-blocks.js';
import type { CapturedExec } from '../capture/exec/parse.js';
import type { CapturedLine } from '../capture/readline/parse.js';
import { containerRecord } from '../containers/testdata/container-record.js';
import type { ContainerAudit } from '../plan/plan.js';
import { ExecDedup } from '../records/exec-dedup.js';
import { attribute, type Attribution, type Audited } from './attribution.js';
import {
  type ExecGates,
  type ExecKey,
  execProgramToProbe,
  kernelDropOutcome,
  kernelExecOutcome,
  type LineGates,
  lineOutcome,
  runtimeExecOutcome,
} from './commands.js';

function rules() {
  const compiled = compileCommandRules({
    redact: { builtins: false, patterns: ['hunter2'] },
    alerts: [{ name: 'rm', pattern: 'rm -rf', severity: 'high' }],
  });
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return compiled.rules;
}

const audit = (over: Partial<ContainerAudit> = {}): ContainerAudit => ({
  policy: 'p',
  interactiveShells: true,
  execs: true,
  maxCommandBytes: 32,
  filter: rules(),
  redactKeyBlocks: true,
  ...over,
});

const web = containerRecord({ kind: 'container', podNamespace: 'shop', containerName: 'web' }, { id: 'web' });
const entry: Audited = { container: web, audit: audit() };
const toWeb: Attribution = { to: 'container', entry };
const TIME = new Date('2026-01-02T03:04:05.678Z');

const line = (text: string | Buffer, over: Partial<CapturedLine> = {}): CapturedLine => ({
  pid: 100,
  tid: 100,
  ns: 5n,
  uid: 1000,
  cgroup: 1n,
  mntns: 1,
  bytes: Buffer.isBuffer(text) ? text : Buffer.from(text),
  truncated: false,
  ...over,
});

/** Gates that answer as told and note what was asked, in order; the key-block tracker is the real one. */
function lineGates(over = false, blocks = new PrivateKeyBlocks()) {
  const asked: string[] = [];
  const gates: LineGates = {
    overLimit: (id) => (asked.push(`limit ${id}`), over),
    inKeyBlock: (shell, text) => (asked.push(`key-block ${shell}`), blocks.inside(shell, text)),
    time: (ns) => (asked.push(`time ${ns}`), TIME),
    nsPid: (pid) => (asked.push(`nsPid ${pid}`), 7),
  };
  return { gates, asked };
}

describe('lineOutcome', () => {
  it.each([['unknown'], ['not-audited'], ['stale'], ['not-captured']] as const)(
    'drops a line attributed to no container (%s): counted as dropped, no limiter asked',
    (why) => {
      const { gates, asked } = lineGates();
      expect(lineOutcome(line('ls'), { to: 'none', why }, gates)).toEqual({
        drop: why,
        counts: { linesCaptured: 1, linesDropped: 1 },
      });
      expect(asked).toEqual([]);
    },
  );

  it('writes a command record of an audited shell, counted as recorded', () => {
    const { gates, asked } = lineGates();
    const outcome = lineOutcome(line('ls -l'), toWeb, gates);
    expect(outcome).toEqual({
      write: {
        kind: 'command',
        time: '2026-01-02T03:04:05.678Z',
        containerId: 'web',
        pod: { namespace: 'shop' },
        container: 'web',
        policy: 'p',
        pid: 100,
        nsPid: 7,
        uid: 1000,
        command: 'ls -l',
        truncated: false,
        redacted: false,
        alerts: [],
      },
      containerId: 'web',
      counts: { linesCaptured: 1, commandsRecorded: 1 },
    });
    expect(asked).toEqual(['limit web', 'key-block 1/100', 'time 5', 'nsPid 100']);
    // What is written is a record the wire accepts once stamped.
    if (!('write' in outcome)) throw new Error('not written');
    expect(AgentRecord.safeParse({ seq: 1, boot: 'b', node: 'n', ...outcome.write }).success).toBe(true);
  });

  it('drops a line over its container limits as rate-limited, without looking it up', () => {
    const { gates, asked } = lineGates(true);
    expect(lineOutcome(line('ls'), toWeb, gates)).toEqual({
      drop: 'rate-limited',
      containerId: 'web',
      counts: { linesCaptured: 1, rateLimited: 1 },
    });
    expect(asked).toEqual(['limit web', 'key-block 1/100']);
  });

  it('follows a key block through rate-limited lines: its key lines are replaced whole when written', () => {
    const blocks = new PrivateKeyBlocks();
    const begin = '-----BEGIN OPENSSH PRIVATE KEY-----';
    lineOutcome(line(begin), toWeb, lineGates(true, blocks).gates); // dropped, yet the block opens
    const written = lineOutcome(line('b3BlbnNzaC1rZXktdjEAAAAA'), toWeb, lineGates(false, blocks).gates);
    expect(written).toMatchObject({ write: { command: REDACTED, redacted: true } });
  });

  it('leaves the key-block tracker alone for a container that does not redact key blocks', () => {
    const { gates, asked } = lineGates();
    const plain: Attribution = {
      to: 'container',
      entry: { container: web, audit: audit({ redactKeyBlocks: false }) },
    };
    lineOutcome(line('-----BEGIN OPENSSH PRIVATE KEY-----'), plain, gates);
    expect(asked).not.toContain('key-block 1/100');
  });

  it('applies the redaction and alert rules and the container limit', () => {
    const { gates } = lineGates();
    expect(lineOutcome(line('echo hunter2'), toWeb, gates)).toMatchObject({
      write: { command: `echo ${REDACTED}`, redacted: true, alerts: [] },
    });
    expect(lineOutcome(line('rm -rf /'), toWeb, gates)).toMatchObject({
      write: { command: 'rm -rf /', alerts: [{ name: 'rm', severity: 'high' }] },
    });
    expect(lineOutcome(line('x'.repeat(40)), toWeb, gates)).toMatchObject({
      write: { command: 'x'.repeat(32), truncated: true },
    });
  });
});

describe('kernelDropOutcome', () => {
  const drop = { mntns: 1, lines: 3, bytes: 120 };

  it('counts lines the kernel dropped for an audited container as rate-limited, charged to it', () => {
    expect(kernelDropOutcome(drop, toWeb)).toEqual({ counts: { rateLimited: 3 }, containerId: 'web' });
  });

  it('counts those of no audited container as dropped', () => {
    expect(kernelDropOutcome(drop, { to: 'none', why: 'unknown' })).toEqual({ counts: { linesDropped: 3 } });
  });
});

const exec = (over: Partial<CapturedExec> = {}): CapturedExec => ({
  pid: 200,
  tid: 200,
  ns: 9n,
  uid: 0,
  cgroup: 1n,
  mntns: 1,
  ppid: 100,
  filename: Buffer.from('/bin/ls'),
  filenameTruncated: false,
  argv: [Buffer.from('ls'), Buffer.from('-l')],
  truncated: false,
  argvBytes: 6,
  ...over,
});

function execGates(over = false, first: (key: ExecKey) => boolean = () => true) {
  const asked: string[] = [];
  const gates: ExecGates = {
    overLimit: (id) => (asked.push(`limit ${id}`), over),
    firstOfTwins: (key) => (asked.push(`twin ${key.source} ${key.firstArg}`), first(key)),
    time: (ns) => (asked.push(`time ${ns}`), TIME),
    nsPid: (pid) => (asked.push(`nsPid ${pid}`), 8),
  };
  return { gates, asked };
}

describe('kernelExecOutcome', () => {
  it('drops an exec of no container audited for execs, uncounted', () => {
    const { gates, asked } = execGates();
    expect(kernelExecOutcome(exec(), { to: 'none', why: 'not-captured' }, gates)).toEqual({
      drop: 'not-captured',
      counts: {},
    });
    expect(asked).toEqual([]);
  });

  it('writes an exec record from the kernel, counted as recorded', () => {
    const { gates, asked } = execGates();
    const outcome = kernelExecOutcome(exec(), toWeb, gates);
    expect(outcome).toEqual({
      write: {
        kind: 'exec',
        time: '2026-01-02T03:04:05.678Z',
        containerId: 'web',
        pod: { namespace: 'shop' },
        container: 'web',
        policy: 'p',
        source: 'kernel',
        pid: 200,
        ppid: 100,
        nsPid: 8,
        uid: 0,
        path: '/bin/ls',
        argv: ['ls', '-l'],
        redacted: false,
        alerts: [],
        truncated: false,
      },
      containerId: 'web',
      counts: { execsRecorded: 1 },
    });
    expect(asked).toEqual(['limit web', 'twin kernel ls', 'nsPid 200', 'time 9']);
    if (!('write' in outcome)) throw new Error('not written');
    expect(AgentRecord.safeParse({ seq: 1, boot: 'b', node: 'n', ...outcome.write }).success).toBe(true);
  });

  it('drops an exec over its container limits as rate-limited, before de-duplication', () => {
    const { gates, asked } = execGates(true);
    expect(kernelExecOutcome(exec(), toWeb, gates)).toEqual({
      drop: 'rate-limited',
      containerId: 'web',
      counts: { rateLimited: 1 },
    });
    expect(asked).toEqual(['limit web']);
  });

  it('drops the twin of an exec the wrapper handed off first, counted as a twin', () => {
    const { gates, asked } = execGates(false, () => false);
    expect(kernelExecOutcome(exec(), toWeb, gates)).toEqual({
      drop: 'exec-twin',
      containerId: 'web',
      counts: { execTwinsDropped: 1 },
    });
    expect(asked).toEqual(['limit web', 'twin kernel ls']);
  });

  it('leaves out a parent it does not know, keeps a path that is not UTF-8 in base64', () => {
    const { gates } = execGates();
    const outcome = kernelExecOutcome(exec({ ppid: 0, filename: Buffer.from([0x2f, 0xff]) }), toWeb, gates);
    if (!('write' in outcome)) throw new Error('not written');
    expect(outcome.write).not.toHaveProperty('ppid');
    expect(outcome.write).toMatchObject({ pathBase64: Buffer.from([0x2f, 0xff]).toString('base64') });
  });

  it('cuts argv to the container limit and says what the kernel cut', () => {
    const { gates } = execGates();
    const long = exec({ argv: [Buffer.from('echo'), Buffer.from('y'.repeat(40))] });
    expect(kernelExecOutcome(long, toWeb, gates)).toMatchObject({
      write: { argv: ['echo', 'y'.repeat(32 - 5)], truncated: true },
    });
    expect(kernelExecOutcome(exec({ truncated: true }), toWeb, gates)).toMatchObject({
      write: { truncated: true },
    });
    expect(kernelExecOutcome(exec({ filenameTruncated: true }), toWeb, gates)).toMatchObject({
      write: { truncated: true },
    });
  });

  it('redacts and judges argv by the container rules', () => {
    const { gates } = execGates();
    const argv = [Buffer.from('rm'), Buffer.from('-rf'), Buffer.from('hunter2')];
    expect(kernelExecOutcome(exec({ argv }), toWeb, gates)).toMatchObject({
      write: { redacted: true, alerts: [{ name: 'rm', severity: 'high' }] },
    });
  });
});

const handoff = (over: Partial<Handoff> = {}): Handoff => ({
  version: 1,
  verb: 'exec',
  time: '2026-01-02T03:04:06.000Z',
  id: 'web',
  root: null,
  bundle: null,
  pid: 300,
  exitCode: 0,
  wrapperPid: 299,
  process: { args: ['/bin/bash', '-c', 'true'], user: { uid: 1000, gid: 1000 } },
  ...over,
});

describe('runtimeExecOutcome', () => {
  const first = () => true;

  it('writes an exec record from the hand-off, at the wrapper time, counted as recorded', () => {
    expect(runtimeExecOutcome(handoff(), entry, first)).toEqual({
      write: {
        kind: 'exec',
        time: '2026-01-02T03:04:06.000Z',
        containerId: 'web',
        pod: { namespace: 'shop' },
        container: 'web',
        policy: 'p',
        source: 'runtime',
        pid: 300,
        uid: 1000,
        argv: ['/bin/bash', '-c', 'true'],
        redacted: false,
        alerts: [],
        truncated: false,
      },
      containerId: 'web',
      counts: { execsRecorded: 1 },
    });
  });

  it('records nothing of a container not audited, or not audited for execs, or of an exec that did not start', () => {
    expect(runtimeExecOutcome(handoff(), undefined, first)).toEqual({ drop: 'not-audited', counts: {} });
    const shellsOnly = { container: web, audit: audit({ execs: false }) };
    expect(runtimeExecOutcome(handoff(), shellsOnly, first)).toEqual({
      drop: 'not-captured',
      containerId: 'web',
      counts: {},
    });
    expect(runtimeExecOutcome(handoff({ pid: null, exitCode: 1 }), entry, first)).toEqual({
      drop: 'no-pid',
      containerId: 'web',
      counts: {},
    });
  });

  it('leaves out a uid the hand-off does not carry and cuts argv to the container limit', () => {
    const h = handoff({ process: { args: ['/bin/echo', 'z'.repeat(40)] } });
    const outcome = runtimeExecOutcome(h, entry, first);
    if (!('write' in outcome)) throw new Error('not written');
    expect(outcome.write).not.toHaveProperty('uid');
    expect(outcome.write).toMatchObject({ argv: ['/bin/echo', 'z'.repeat(32 - 10)], truncated: true });
  });

  it('keeps one record of an exec both sources saw, whichever came first, by the bytes of its first argument', () => {
    const dedup = new ExecDedup();
    const claim = (key: ExecKey) => dedup.admit(key.containerId, key.pid, key.firstArg, key.source, 0);
    const program = '/bin/é'; // not ASCII: the two sources must compare the same bytes
    const kernel = exec({ pid: 300, argv: [Buffer.from(program)] });
    expect(runtimeExecOutcome(handoff({ process: { args: [program] } }), entry, claim)).toHaveProperty(
      'write',
    );
    expect(kernelExecOutcome(kernel, toWeb, execGates(false, claim).gates)).toEqual({
      drop: 'exec-twin',
      containerId: 'web',
      counts: { execTwinsDropped: 1 },
    });
    // And the other way round.
    expect(kernelExecOutcome(kernel, toWeb, execGates(false, claim).gates)).toHaveProperty('write');
    expect(runtimeExecOutcome(handoff({ process: { args: [program] } }), entry, claim)).toMatchObject({
      drop: 'exec-twin',
    });
  });
});

describe('execProgramToProbe', () => {
  it('probes the absolute program of a runc exec in a container whose shells are audited', () => {
    expect(execProgramToProbe(handoff(), entry)).toBe('/bin/bash');
  });

  it('probes nothing for a relative program, a container without audited shells, or none audited', () => {
    expect(execProgramToProbe(handoff({ process: { args: ['bash'] } }), entry)).toBeUndefined();
    expect(execProgramToProbe(handoff({ process: {} }), entry)).toBeUndefined();
    const execsOnly = { container: web, audit: audit({ interactiveShells: false }) };
    expect(execProgramToProbe(handoff(), execsOnly)).toBeUndefined();
    expect(execProgramToProbe(handoff(), undefined)).toBeUndefined();
  });
});

describe('with attribute()', () => {
  it('gives a line of a re-registered container to no one (stale), counted as dropped', () => {
    const again = containerRecord({ kind: 'container' }, { id: 'web', initPid: 99 });
    const attribution = attribute(again, new Map([['web', entry]]), 'line');
    expect(lineOutcome(line('ls'), attribution, lineGates().gates)).toMatchObject({ drop: 'stale' });
  });
});
