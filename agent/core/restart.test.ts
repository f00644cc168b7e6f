import { agentDownLoss } from './losses.js';
import { KNOWN_DIR, rememberedFile, rescanOrder } from './restart.js';

describe('restart state', () => {
  it('keeps one file per container, under the state directory’s containers/', () => {
    expect(KNOWN_DIR).toBe('containers');
    expect(rememberedFile('abc123')).toBe('abc123.json');
  });

  it('registers the remembered containers again in the order of their names, whatever readdir says', () => {
    expect(rescanOrder(['c.json', 'a.json', 'b.json'])).toEqual(['a.json', 'b.json', 'c.json']);
  });

  it('reports the time down as one loss from the last heartbeat when containers were found again', () => {
    const now = new Date('2026-01-01T00:10:00.000Z');
    expect(agentDownLoss(2, new Date('2026-01-01T00:00:00.000Z'), now)).toEqual({
      kind: 'loss',
      time: '2026-01-01T00:10:00.000Z',
      reason: 'agent-down',
      since: '2026-01-01T00:00:00.000Z',
      until: '2026-01-01T00:10:00.000Z',
      detail: 'the agent was not running; 2 audited container(s) were unprobed in that window',
    });
  });

  it('leaves out since when there was no heartbeat, and reports nothing when no container was found', () => {
    const now = new Date('2026-01-01T00:10:00.000Z');
    expect(agentDownLoss(1, undefined, now)).not.toHaveProperty('since');
    expect(agentDownLoss(0, new Date(0), now)).toBeUndefined();
  });
});
