import type { Handoff } from '../../api/handoff/v1.js';
import {
  awaitsAcknowledgement,
  createTimes,
  mustAttach,
  readyToAcknowledge,
  RESOLVE_WAIT_MS,
  resolveWaitMs,
} from './batch.js';

const handoff = (verb: Handoff['verb'], id: string, time = '2026-01-01T00:00:00.000Z'): Handoff => ({
  version: 1,
  verb,
  time,
  id,
  root: null,
  bundle: verb === 'create' || verb === 'run' ? '/b' : null,
  pid: verb === 'delete' ? null : 10,
  exitCode: 0,
  wrapperPid: 9,
});

describe('the acknowledgement order of a batch', () => {
  it('acknowledges creates only: the wrapper holds runc create, not run, exec or delete', () => {
    expect(
      ['create', 'run', 'exec', 'delete'].map((v) =>
        awaitsAcknowledgement(handoff(v as Handoff['verb'], 'x')),
      ),
    ).toEqual([true, false, false, false]);
  });

  it('acknowledges in the order the creates came, those left from earlier batches first', () => {
    const left = [handoff('create', 'old')];
    const creates = [handoff('create', 'b'), handoff('create', 'a')];
    const { ready, waiting } = readyToAcknowledge(left, creates, new Set());
    expect(ready.map((h) => h.id)).toEqual(['old', 'b', 'a']);
    expect(waiting).toEqual([]);
  });

  it('holds back a create whose container is still being resolved, and only that one', () => {
    const creates = [handoff('create', 'a'), handoff('create', 'hostile'), handoff('create', 'c')];
    const first = readyToAcknowledge([], creates, new Set(['hostile']));
    expect(first.ready.map((h) => h.id)).toEqual(['a', 'c']);
    expect(first.waiting.map((h) => h.id)).toEqual(['hostile']);
    // Its resolution done, a later batch (with a create of its own) acknowledges it first.
    const next = readyToAcknowledge(first.waiting, [handoff('create', 'd')], new Set());
    expect(next.ready.map((h) => h.id)).toEqual(['hostile', 'd']);
    expect(next.waiting).toEqual([]);
  });

  it('attaches when there is a create to acknowledge, coverage to report, or the probes differ from the booked', () => {
    expect(mustAttach([], false, ['/p/1'], ['/p/1'])).toBe(false);
    expect(mustAttach([handoff('create', 'a')], false, [], [])).toBe(true);
    expect(mustAttach([], true, [], [])).toBe(true);
    expect(mustAttach([], false, ['/p/1', '/p/2'], ['/p/1'])).toBe(true);
    expect(mustAttach([], false, [], ['/p/1'])).toBe(true);
  });

  it('waits a little for resolutions, or for all of them after a plan change', () => {
    expect(resolveWaitMs(false)).toBe(RESOLVE_WAIT_MS);
    expect(resolveWaitMs(true)).toBe(Infinity);
  });

  it('dates each create by its first hand-off', () => {
    const times = createTimes([
      handoff('create', 'a', '2026-01-01T00:00:01.000Z'),
      handoff('create', 'a', '2026-01-01T00:00:09.000Z'),
      handoff('create', 'b', '2026-01-01T00:00:02.000Z'),
    ]);
    expect([...times]).toEqual([
      ['a', '2026-01-01T00:00:01.000Z'],
      ['b', '2026-01-01T00:00:02.000Z'],
    ]);
  });
});
