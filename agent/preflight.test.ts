import { kernelVersion, memlockLimit } from './preflight.js';

describe('preflight parsing', () => {
  it('reads the kernel version', () => {
    expect(kernelVersion('6.1.0-18-amd64')).toEqual([6, 1]);
    expect(kernelVersion('5.10.0')).toEqual([5, 10]);
    expect(kernelVersion('weird')).toBeUndefined();
  });

  it('reads the memlock limit', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units\nMax locked memory         8388608              8388608              bytes\n';
    expect(memlockLimit(limits)).toBe(8388608);
    expect(memlockLimit(limits.replaceAll('8388608', 'unlimited'))).toBe(Infinity);
    expect(memlockLimit('')).toBeUndefined();
  });
});
