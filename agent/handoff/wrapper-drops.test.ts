import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WrapperDrops, newWrapperDrops } from './wrapper-drops.js';

describe('newWrapperDrops', () => {
  it('counts what the wrapper added since the last report', () => {
    expect(newWrapperDrops(0, 0)).toBe(0);
    expect(newWrapperDrops(3, 10)).toBe(7);
    expect(newWrapperDrops(10, 10)).toBe(0);
  });

  it('takes a counter below the last report as reset, and all of it as new', () => {
    expect(newWrapperDrops(10, 4)).toBe(4);
  });
});

describe('WrapperDrops', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'wrapper-drops-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports each drop once, across a restart of the agent', async () => {
    let counter: number | undefined = 5;
    const first = new WrapperDrops(() => Promise.resolve(counter), dir);
    expect(await first.take()).toBe(5); // dropped before this agent ever ran
    expect(await first.take()).toBe(0);
    counter = 8;
    expect(await first.take()).toBe(3);
    expect(readFileSync(join(dir, 'wrapper-dropped-reported'), 'utf8')).toBe('8\n');

    counter = 12; // while the agent was down
    const second = new WrapperDrops(() => Promise.resolve(counter), dir);
    expect(await second.take()).toBe(4);
  });

  it('reports nothing while the counter cannot be read, and catches up after', async () => {
    let counter: number | undefined = undefined;
    const drops = new WrapperDrops(() => Promise.resolve(counter), dir);
    expect(await drops.take()).toBe(0);
    counter = 2;
    expect(await drops.take()).toBe(2);
  });
});
