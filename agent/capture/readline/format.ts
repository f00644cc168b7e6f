/**
 * What readline.bt.tpl prints (text mode, one event per line), as data: the parser (parse.ts) reads lines by
 * it, and format.test.ts checks the README's table and the template's header against it.
 */
import type { LineFormat, TallyFormat } from '../output-format.js';

/** Every line of a probe hit starts with these: they key its chunks and tell who called readline. */
const HIT = ['pid', 'tid', 'ns', 'uid', 'cgroup', 'mntns'] as const;

export const READLINE_LINES = {
  C: { fields: [...HIT, 'chunk'], words: 8, meaning: 'a full 64-byte chunk without a NUL' },
  L: { fields: [...HIT, 'chunk'], words: 8, meaning: 'the last chunk, zero after the NUL' },
  T: {
    fields: [...HIT, 'chunk'],
    words: 0,
    meaning: 'no NUL in the chunks read: the line is longer than the limit',
  },
  N: { fields: [...HIT], words: 0, meaning: 'readline returned NULL (end of input): not a command' },
  R: { fields: [], words: 0, meaning: "first line, from `BEGIN`: bpftrace's output loop runs" },
} as const satisfies Record<string, LineFormat>;

export type ReadlineTag = keyof typeof READLINE_LINES;

/** The drop tallies (bpftrace's own `@name[key]: value` map lines), printed once a second and on exit. */
export const READLINE_TALLIES = {
  rl_dropped_lines: { key: 'mntns', meaning: 'lines of that mount namespace dropped over its budget, total' },
  rl_dropped_bytes: { key: 'mntns', meaning: 'their bytes, total' },
} as const satisfies Record<string, TallyFormat>;
