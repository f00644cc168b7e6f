import type { ReadlineTarget } from '../targets/resolve.js';
import { MAX_TARGETS_PER_CONTAINER } from '../targets/target-book.js';
import { noBashGap, overTargetLimit, probePlacement, resolutionTimedOut } from './booking.js';

const resolved: ReadlineTarget = {
  kind: 'target',
  bash: '/bin/bash',
  file: '/run/c1/rootfs/bin/bash',
  via: 'bash',
  dev: 66n,
  ino: 2n ** 60n + 5n, // xino: beyond 2^53, kept exact
};

describe('probePlacement', () => {
  it('probes the layer file an overlay shows, pinned within its layer', () => {
    const real = { file: '/layers/9/fs/bin/bash', layer: '/layers/9/fs', dev: 8n, ino: 77n };
    expect(probePlacement(resolved, real, '/run/c1/rootfs')).toEqual({
      key: '8:77',
      file: '/layers/9/fs/bin/bash',
      expected: { dev: 8n, ino: 77n, within: '/layers/9/fs' },
    });
  });

  it('probes the file as resolved, pinned within the container root, when it is on no overlay', () => {
    expect(probePlacement(resolved, undefined, '/run/c1/rootfs')).toEqual({
      key: `66:${2n ** 60n + 5n}`,
      file: '/run/c1/rootfs/bin/bash',
      expected: { dev: 66n, ino: 2n ** 60n + 5n, within: '/run/c1/rootfs' },
    });
  });
});

describe('overTargetLimit', () => {
  const held = (n: number) => new Set(Array.from({ length: n }, (_, i) => `k${i}`));

  it('lets a container hold up to the limit, counting what this resolution booked so far', () => {
    expect(overTargetLimit(held(MAX_TARGETS_PER_CONTAINER - 1), 0, 'new')).toBeUndefined();
    expect(overTargetLimit(held(MAX_TARGETS_PER_CONTAINER - 1), 1, 'new')).toBe(
      `more than ${MAX_TARGETS_PER_CONTAINER} distinct files define readline in this container`,
    );
    expect(overTargetLimit(held(MAX_TARGETS_PER_CONTAINER), 0, 'new')).toBeDefined();
  });

  it('never refuses a file the container holds already', () => {
    expect(overTargetLimit(held(MAX_TARGETS_PER_CONTAINER), 5, 'k3')).toBeUndefined();
  });
});

describe('noBashGap', () => {
  const candidates = ['/bin/bash', '/usr/bin/bash'];

  it('is a gap when nothing resolved from the container’s own candidates', () => {
    expect(noBashGap(0, candidates, candidates)).toBe(
      'no bash in the container (looked for /bin/bash, /usr/bin/bash)',
    );
  });

  it('is none when something resolved, or for the path of an exec (not the container’s candidates)', () => {
    expect(noBashGap(1, candidates, candidates)).toBeUndefined();
    expect(noBashGap(0, ['/opt/sh'], candidates)).toBeUndefined();
  });

  it('quotes a long list of candidates cut, controls escaped', () => {
    const many = Array.from({ length: 100 }, (_, i) => `/p${i}/\x1bbash`);
    const gap = noBashGap(0, many, many)!;
    expect(gap).not.toContain('\x1b');
    expect(gap.length).toBeLessThan(600);
  });
});

describe('resolutionTimedOut', () => {
  it('is a gap of the first candidate (or of bash when there is none), saying how long it waited', () => {
    expect(resolutionTimedOut(['/bin/bash', '/x'], 1250)).toEqual({
      kind: 'coverage',
      bash: '/bin/bash',
      reason: 'gave up looking for readline: the search did not end within 1250 ms',
    });
    expect(resolutionTimedOut([], 5).bash).toBe('bash');
  });
});
