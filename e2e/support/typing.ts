/**
 * A person at a keyboard in a container: an interactive `bash -i` started by `ctr tasks exec --tty` (so
 * through the runtime, as `kubectl exec -it` would), on a terminal of its own (terminal.ts).
 */
import type { Containerd } from './containerd.js';
import { Terminal } from './terminal.js';

let execs = 0;

/** bash's default prompt as root with --norc (`bash-5.2# `). */
export const BASH_PROMPT = /bash-[\d.]+# /;

/** Opens `bash -i` in the container with a readable environment (UTF-8, no inputrc) and waits for its prompt. */
export async function openContainerShell(
  containerd: Containerd,
  namespace: string,
  id: string,
  /** readline's init file inside the container (e.g. one with `set disable-completion on`, so Tab is typed). */
  inputrc = '/dev/null',
): Promise<Terminal> {
  const inner = [
    'env',
    'LANG=C.UTF-8',
    `INPUTRC=${inputrc}`,
    'TERM=dumb',
    'HOME=/root',
    '/bin/bash',
    '--norc',
    '--noprofile',
    '-i',
  ];
  const exec = containerd.execArgs({ id, execId: `sh${process.pid}-${++execs}`, tty: true, args: inner });
  const terminal = Terminal.open(containerd.ctrCommand(namespace, exec));
  await terminal.waitForOutput(BASH_PROMPT);
  return terminal;
}
