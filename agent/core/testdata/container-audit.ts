/** A container's audit rules for the core's unit tests: no redaction, no alerts, 64-byte lines. */
import type { ContainerAudit } from '../../plan/plan.js';

export const containerAudit = (over: Partial<ContainerAudit> = {}): ContainerAudit => ({
  policy: 'p',
  interactiveShells: true,
  execs: false,
  maxCommandBytes: 64,
  filter: {
    apply: (text) => ({ text, redacted: false, alerts: [] }),
    applyArgv: (args) => ({ args: [...args], redacted: false, alerts: [] }),
  },
  redactKeyBlocks: false,
  ...over,
});
