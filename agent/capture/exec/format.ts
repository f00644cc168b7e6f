/**
 * What exec.bt.tpl prints (text mode, one event per line), as data: the parser (parse.ts) reads lines by it,
 * and format.test.ts checks the README's table against it.
 */
import type { LineFormat } from '../output-format.js';

/** Every line of an exec starts with these: they key its lines and tell who exec'd. */
const EXEC = ['pid', 'tid', 'ns', 'uid', 'cgroup', 'mntns'] as const;

export const EXEC_LINES = {
  P: { fields: [...EXEC, 'chunk'], words: 8, meaning: '64 bytes of the path, without a NUL' },
  Q: { fields: [...EXEC, 'chunk'], words: 8, meaning: "the path's last chunk, zero from its NUL on" },
  A: {
    fields: [...EXEC, 'chunk'],
    words: 8,
    meaning: '64 bytes of argv (NUL-separated strings), zero past kept',
  },
  E: {
    fields: [...EXEC, 'ppid', 'argbytes', 'kept', 'pchunks', 'achunks'],
    words: 0,
    meaning: 'the exec is complete: what was printed for it',
  },
  R: { fields: [], words: 0, meaning: 'first line, from `BEGIN`: the tracepoint is attached' },
} as const satisfies Record<string, LineFormat>;

export type ExecTag = keyof typeof EXEC_LINES;
