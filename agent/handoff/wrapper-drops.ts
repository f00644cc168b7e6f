/**
 * Hand-offs the runc wrapper did not write (the agent was absent, or the spool was at its bound): the wrapper
 * counts them in `<spool>/dropped` (runc-wrapper/README.md), a number that only grows. Each container started
 * or exec run then may be unaudited, so the agent reports every increase as a `handoffs-dropped` loss. The
 * last count reported is kept in the state directory, so an agent restarted reports what dropped while it was
 * down, and nothing twice.
 */
import { readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';

const REPORTED_FILE = 'wrapper-dropped-reported';

/**
 * New drops since `reported`, given the wrapper's count `now`. A count below the last one reported means the
 * counter was reset (the spool is a tmpfs, emptied at boot): all of it is new.
 */
export function newWrapperDrops(reported: number, now: number): number {
  return now >= reported ? now - reported : now;
}

export class WrapperDrops {
  private reported: number | undefined;

  constructor(
    private readonly read: () => Promise<number | undefined>,
    private readonly stateDir: string,
  ) {}

  /** Drops not reported yet (0 when none, or when the counter cannot be read); they count as reported now. */
  async take(): Promise<number> {
    const now = await this.read();
    if (now === undefined) return 0;
    this.reported ??= await this.load();
    const fresh = newWrapperDrops(this.reported, now);
    if (now !== this.reported) {
      this.reported = now;
      await this.save(now);
    }
    return fresh;
  }

  private async load(): Promise<number> {
    const text = await readFile(join(this.stateDir, REPORTED_FILE), 'utf8').catch(() => '0');
    const n = Number(text.trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  private async save(count: number): Promise<void> {
    const path = join(this.stateDir, REPORTED_FILE);
    await writeFile(`${path}.tmp`, `${count}\n`);
    await rename(`${path}.tmp`, path);
  }
}
