import { TargetBook } from './target-book.js';

describe('TargetBook', () => {
  const bash = { key: '1:10', file: '/layers/1/bin/bash' };
  const lib = { key: '1:20', file: '/layers/2/lib/libreadline.so.8' };

  it('probes a shared file once, until its last holder goes', () => {
    const book = new TargetBook();
    expect(book.add('a', [bash])).toEqual([bash]);
    expect(book.add('b', [{ ...bash, file: '/other/path/same/inode' }, lib])).toEqual([lib]);
    expect(book.files()).toEqual([bash.file, lib.file]);
    expect(book.remove('a')).toEqual([]);
    expect(book.files()).toEqual([lib.file, '/other/path/same/inode']);
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
