import { TargetBook } from './target-book.js';

describe('TargetBook', () => {
  const bash = { key: '1:10', file: '/layers/1/bin/bash', probe: '/proc/9/fd/10' };
  const lib = { key: '1:20', file: '/layers/2/lib/libreadline.so.8', probe: '/proc/9/fd/11' };

  it('probes a shared file once, until its last holder goes', () => {
    const book = new TargetBook();
    expect(book.add('a', [bash])).toEqual([bash]);
    expect(book.add('b', [{ ...bash, probe: '/proc/9/fd/12' }, lib])).toEqual([lib]);
    expect(book.files()).toEqual([bash.probe, lib.probe]);
    expect(book.keys()).toEqual(new Set([bash.key, lib.key]));
    expect(book.heldBy('b')).toEqual(new Set([bash.key, lib.key]));
    expect(book.heldBy('nobody')).toEqual(new Set());
    expect(book.remove('a')).toEqual([]);
    expect(book.files()).toEqual([lib.probe, '/proc/9/fd/12']);
    expect(book.remove('b').sort()).toEqual([bash.key, lib.key]);
    expect(book.files()).toEqual([]);
  });

  it('is idempotent for a replayed container and an unknown removal', () => {
    const book = new TargetBook();
    book.add('a', [bash]);
    expect(book.add('a', [bash])).toEqual([]);
    expect(book.remove('nope')).toEqual([]);
    expect(book.has(bash.key)).toBe(true);
  });
});
