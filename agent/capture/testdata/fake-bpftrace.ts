/**
 * A stand-in for bpftrace in unit tests of the capture supervisors: a shell script whose nth run prints
 * what the test wrote for that run, then exits with the given code or waits (until killed). No root needed.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
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

/** What a script-judging fake does with a script that contains `scriptHas`. */
export interface FakeRule {
  scriptHas: string;
  stderr: string;
  /** Wait without ever printing R (an attach that never ends), instead of exiting 1 at once. */
  hang?: boolean;
}

/**
 * A stand-in for bpftrace that judges each script by what it probes: the first rule whose text the script
 * contains decides (its stderr, then exit 1 or a hang); a script no rule matches attaches (R) and waits. Each
 * run's script is kept as `script.<n>`, and `runs` counts them. Rules are files, so a test may change them
 * between runs (`setFakeRules`).
 */
export function fakeBpftraceByScript(dir: string, rules: FakeRule[]): string {
  setFakeRules(dir, rules);
  const script = join(dir, 'bpftrace');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `cd '${dir}'`,
      'n=$(( $(cat runs 2>/dev/null || echo 0) + 1 )); echo "$n" > runs',
      'cp "$1" "script.$n"',
      'i=1',
      'while [ -f "rule.$i.has" ]; do',
      '  if grep -qF -f "rule.$i.has" "$1"; then',
      '    cat "rule.$i.err" >&2',
      '    if [ -f "rule.$i.hang" ]; then exec sleep 1000; fi',
      '    exit 1',
      '  fi',
      '  i=$((i + 1))',
      'done',
      'echo R',
      'exec sleep 1000',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return script;
}

/** Replaces the rules of a fakeBpftraceByScript in `dir`. */
export function setFakeRules(dir: string, rules: FakeRule[]): void {
  for (const name of readdirSync(dir)) if (name.startsWith('rule.')) rmSync(join(dir, name));
  rules.forEach((rule, i) => {
    writeFileSync(join(dir, `rule.${i + 1}.err`), `${rule.stderr}\n`);
    if (rule.hang) writeFileSync(join(dir, `rule.${i + 1}.hang`), '');
    // Written last: the fake's loop looks for it first.
    writeFileSync(join(dir, `rule.${i + 1}.has`), `${rule.scriptHas}\n`);
  });
}
