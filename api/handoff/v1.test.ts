import { MAX_HANDOFF_BYTES, parseHandoff } from './v1.js';

const create = {
  version: 1,
  verb: 'create',
  time: '2026-11-29T01:45:59.992699033Z',
  id: 'c1',
  root: '/run/containerd/runc/default',
  bundle: '/run/containerd/io.containerd.runtime.v2.task/default/c1',
  pid: 29517,
  exitCode: 0,
  wrapperPid: 29507,
};
const exec = {
  ...create,
  verb: 'exec',
  bundle: null,
  pid: 29632,
  process: { args: ['ls', '/'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false },
};
const text = (o: object) => JSON.stringify(o);

describe('parseHandoff', () => {
  it.each([
    ['create', create],
    ['exec', exec],
    [
      'delete of a container that is gone',
      { ...create, verb: 'delete', bundle: null, pid: null, exitCode: 1 },
    ],
    ['exec whose process file could not be read', { ...exec, process: null, processError: 'No such file' }],
  ])('accepts a %s hand-off as the wrapper writes it', (_name, handoff) => {
    expect(parseHandoff(text(handoff))).toEqual({ ok: true, handoff });
  });

  it.each([
    ['a newer format', { ...create, version: 2 }, 'version'],
    ['an unknown verb', { ...create, verb: 'pause' }, 'verb'],
    ['a container id with a slash', { ...create, id: '../../etc' }, 'id'],
    ['a relative bundle', { ...create, bundle: 'run/x' }, 'bundle'],
    ['a bundle with ..', { ...create, bundle: '/run/containerd/../../etc' }, 'bundle'],
    ['a bundle with a NUL byte', { ...create, bundle: '/run/x\u0000y' }, 'bundle'],
    ['a create without bundle', { ...create, bundle: null }, 'bundle'],
    ['a successful create without pid', { ...create, pid: null }, 'pid'],
    ['a pid that is not a pid', { ...create, pid: -1 }, 'pid'],
    ['a pid as a string', { ...create, pid: '29517' }, 'pid'],
    [
      'args that are not strings',
      { ...exec, process: { ...exec.process, args: ['ls', 1] } },
      'process.args.1',
    ],
    ['a process on a create', { ...create, process: exec.process }, 'process'],
    ['unknown fields', { ...create, env: ['SECRET=1'] }, '<root>'],
    ['a malformed time', { ...create, time: 'yesterday' }, 'time'],
  ])('refuses %s, naming the field', (_name, handoff, field) => {
    const result = parseHandoff(text(handoff));
    expect(result).toMatchObject({ ok: false, reason: 'invalid' });
    expect(result.ok ? '' : result.detail).toContain(`${field}:`);
  });

  it.each([
    ['truncated JSON', text(create).slice(0, 40)],
    ['an empty file', ''],
    ['binary garbage', '\u0000\u00ff\u0001'],
  ])('refuses %s as not JSON', (_name, input) => {
    expect(parseHandoff(input)).toMatchObject({ ok: false, reason: 'not-json' });
  });

  it('refuses an oversized file before parsing it', () => {
    const huge = text({ ...exec, process: { args: ['x'.repeat(MAX_HANDOFF_BYTES)] } });
    expect(parseHandoff(huge)).toMatchObject({ ok: false, reason: 'oversized' });
  });

  it('refuses JSON that is not an object', () => {
    expect(parseHandoff('[1,2]')).toMatchObject({ ok: false, reason: 'invalid' });
    expect(parseHandoff('null')).toMatchObject({ ok: false, reason: 'invalid' });
  });

  it('keeps bundles inside the configured roots', () => {
    const roots = ['/run/containerd/io.containerd.runtime.v2.task'];
    expect(parseHandoff(text(create), { bundleRoots: roots }).ok).toBe(true);
    expect(parseHandoff(text({ ...create, bundle: '/etc' }), { bundleRoots: roots })).toMatchObject({
      ok: false,
      reason: 'bundle-outside-roots',
    });
    // a sibling whose name merely starts with the root is outside it
    expect(
      parseHandoff(text({ ...create, bundle: '/run/containerd/io.containerd.runtime.v2.task-evil/x' }), {
        bundleRoots: roots,
      }).ok,
    ).toBe(false);
  });
});
