/**
 * Private keys pasted into a shell arrive one line at a time (a heredoc: `cat > key <<EOF`, then the key),
 * and a line-by-line redaction only recognises the BEGIN line. This tracks, per shell, whether a key block
 * is open, so that every line up to its END line is replaced whole. Pure; no regular expressions (the
 * markers are fixed strings).
 */

/** An RSA 16384-bit key in PEM is about 200 lines: a block left open longer is closed (and said so). */
export const MAX_KEY_LINES = 256;
/** Shells with an open block, at most; the oldest is forgotten first. */
const MAX_OPEN = 4096;

function opens(line: string): boolean {
  const begin = line.lastIndexOf('-----BEGIN ');
  if (begin < 0) return false;
  const rest = line.slice(begin);
  return rest.includes('PRIVATE KEY-----') && !rest.includes('-----END ');
}

function closes(line: string): boolean {
  return line.includes('-----END ') && line.includes('PRIVATE KEY-----');
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
