/**
 * Private keys pasted into a shell arrive one line at a time (a heredoc: `cat > key <<EOF`, then the key),
 * and a line-by-line redaction only recognises the BEGIN line. This tracks, per shell, whether a key block
 * is open, so that every line up to its END line is replaced whole: PEM and OpenSSH keys, PGP private key
 * blocks (`-----BEGIN PGP PRIVATE KEY BLOCK-----`) and SSH2 keys (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY
 * ----`). Pure; no regular expressions (the markers are fixed strings).
 */

/** An RSA 16384-bit key in PEM is about 200 lines: a block left open longer is closed (and said so). */
export const MAX_KEY_LINES = 256;
/** Shells with an open block, at most; the oldest is forgotten first. */
const MAX_OPEN = 4096;

/** How a private key block's BEGIN or END line ends: PEM and OpenSSH, PGP, and SSH2 (RFC 4716, four dashes). */
const KEY_ENDINGS = [
  'PRIVATE KEY-----',
  'PRIVATE KEY BLOCK-----',
  'SECRET KEY BLOCK-----',
  'PRIVATE KEY ----',
];

/** Whether `line` from `at` on holds a marker `BEGIN`/`END` followed by a key type and one of KEY_ENDINGS. */
function marks(line: string, marker: 'BEGIN ' | 'END '): number {
  const at = Math.max(line.lastIndexOf(`-----${marker}`), line.lastIndexOf(`---- ${marker}`));
  if (at < 0) return -1;
  const rest = line.slice(at);
  return KEY_ENDINGS.some((ending) => rest.includes(ending)) ? at : -1;
}

function opens(line: string): boolean {
  const begin = marks(line, 'BEGIN ');
  return begin >= 0 && marks(line, 'END ') < begin;
}

function closes(line: string): boolean {
  return marks(line, 'END ') >= 0;
}

export class PrivateKeyBlocks {
  private readonly open = new Map<string, number>();

  /**
   * Feeds one line of a shell; true when the line is inside an open key block and must be replaced whole.
   * The BEGIN and END lines themselves are left to the line redaction (they carry no key material).
   */
  inside(shell: string, line: string): boolean {
    const lines = this.open.get(shell);
    if (lines !== undefined) {
      if (closes(line) || lines >= MAX_KEY_LINES) {
        this.open.delete(shell);
        return false;
      }
      this.open.set(shell, lines + 1);
      return true;
    }
    if (opens(line)) {
      if (this.open.size >= MAX_OPEN) this.open.delete(this.open.keys().next().value!);
      this.open.set(shell, 0);
    }
    return false;
  }

  /** Forgets a shell (it exited, or its container went away). */
  forget(shell: string): void {
    this.open.delete(shell);
  }
}
