/**
 * A stand-in for bpftrace in unit tests of the capture supervisors: a shell script whose nth run prints
 * what the test wrote for that run, then exits with the given code or waits (until killed). No root needed.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FakeRun {
  stdout: string[];
  stderr?: string;
  /** Exit with this code a moment after printing (not before the supervisor saw it attach); else wait. */
  exit?: number;
}

/** Writes the script and its runs into `dir`; returns the script's path. */
export function fakeBpftrace(dir: string, runs: FakeRun[]): string {
  runs.forEach((run, i) => {
    writeFileSync(join(dir, `out.${i + 1}`), run.stdout.map((l) => `${l}\n`).join(''));
    writeFileSync(join(dir, `err.${i + 1}`), run.stderr ?? '');
    if (run.exit !== undefined) writeFileSync(join(dir, `exit.${i + 1}`), String(run.exit));
  });
  const script = join(dir, 'bpftrace');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `cd '${dir}'`,
      'n=$(( $(cat runs 2>/dev/null || echo 0) + 1 )); echo "$n" > runs',
      'cat "err.$n" >&2; cat "out.$n"',
      'if [ -f "exit.$n" ]; then sleep 0.2; exit "$(cat "exit.$n")"; fi',
      'exec sleep 1000',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return script;
}
