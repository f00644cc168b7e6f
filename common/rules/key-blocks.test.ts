import { MAX_KEY_LINES, PrivateKeyBlocks } from './key-blocks.js';

describe('private key blocks typed line by line', () => {
  it('replaces the lines between BEGIN and END, per shell', () => {
    const blocks = new PrivateKeyBlocks();
    const typed = [
      'cat > id <<EOF',
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
      'QyNTUxOQAAACDa',
      '-----END OPENSSH PRIVATE KEY-----',
      'EOF',
    ];
    expect(typed.map((l) => blocks.inside('a', l))).toEqual([false, false, true, true, false, false]);
    // Another shell is not affected by an open block elsewhere.
    blocks.inside('a', '-----BEGIN RSA PRIVATE KEY-----');
    expect(blocks.inside('b', 'ls')).toBe(false);
    expect(blocks.inside('a', 'MIIEow')).toBe(true);
  });

  it('ignores a key given whole on one line and public keys', () => {
    const blocks = new PrivateKeyBlocks();
    expect(blocks.inside('a', 'echo "-----BEGIN PRIVATE KEY----- abc -----END PRIVATE KEY-----"')).toBe(
      false,
    );
    expect(blocks.inside('a', 'ls')).toBe(false);
    expect(blocks.inside('a', '-----BEGIN PUBLIC KEY-----')).toBe(false);
    expect(blocks.inside('a', 'MIIBIjAN')).toBe(false);
  });

  it('closes a block that never ends after MAX_KEY_LINES lines', () => {
    const blocks = new PrivateKeyBlocks();
    blocks.inside('a', '-----BEGIN EC PRIVATE KEY-----');
    const inside = Array.from({ length: MAX_KEY_LINES + 2 }, () => blocks.inside('a', 'x'));
    expect(inside.filter(Boolean)).toHaveLength(MAX_KEY_LINES);
    expect(inside.at(-1)).toBe(false);
  });

  it('follows PGP private key blocks and SSH2 keys too', () => {
    const blocks = new PrivateKeyBlocks();
    const pgp = [
      '-----BEGIN PGP PRIVATE KEY BLOCK-----',
      'Comment: x',
      '',
      'lQOYBF0',
      '=AbCd',
      '-----END PGP PRIVATE KEY BLOCK-----',
    ];
    expect(pgp.map((l) => blocks.inside('a', l))).toEqual([false, true, true, true, true, false]);
    const ssh2 = [
      '---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----',
      'AAAA',
      '---- END SSH2 ENCRYPTED PRIVATE KEY ----',
    ];
    expect(ssh2.map((l) => blocks.inside('a', l))).toEqual([false, true, false]);
    expect(blocks.inside('a', '-----BEGIN PGP PUBLIC KEY BLOCK-----')).toBe(false);
    expect(blocks.inside('a', 'mQINBF')).toBe(false);
  });
});
