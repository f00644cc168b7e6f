/**
 * What the agent audits: for each container it knows, whether it is audited and under which rules. In
 * standalone mode the plan comes from one policy file (standalone-policy.ts); in cluster mode from the
 * operator's per-node plan. The capture engine only asks these questions.
 */
import type { Alert } from '../../api/records/v1.js';
import type { ContainerRecord } from '../containers/registry.js';

export interface RuleOutcome {
  text: string;
  redacted: boolean;
  alerts: Alert[];
}

/** Redaction and alerts, compiled (common/rules). */
export interface CommandFilter {
  apply(command: string): RuleOutcome;
  /** A program's arguments, judged as the command line they make; each keeps its place. */
  applyArgv(args: readonly string[]): { args: string[]; redacted: boolean; alerts: Alert[] };
}

export interface ContainerAudit {
  policy: string;
  interactiveShells: boolean;
  execs: boolean;
  maxCommandBytes: number;
  filter: CommandFilter;
  /** Built-in redaction is on: lines inside a private key block (typed or pasted) are replaced whole. */
  redactKeyBlocks: boolean;
}

export interface AuditPlan {
  /** How the container is audited, or why not. */
  auditOf(
    container: ContainerRecord,
  ): { audited: true; audit: ContainerAudit } | { audited: false; reason: string };
  /** The largest maxCommandBytes of any rule: what the probe reads. */
  readonly maxCommandBytes: number;
  /** Whether any rule captures execs (the exec probe runs only then). */
  readonly execs: boolean;
}
