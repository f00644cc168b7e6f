/**
 * What the agents' reports tell about policies and nodes, between the report ingestion (which learns it) and
 * the policy reconciler (the only writer of policy status, which shows it). In memory and per operator
 * process: the counts are deltas since the last status write, added by the reconciler to what the status
 * already says, so a new leader continues from the written figures rather than from zero.
 */
import type { AgentState } from '../api/agentapi/v1.js';
import type { LossRecord } from '../api/records/v1.js';

/**
 * What went wrong under a policy, as the cluster-scoped policy status may show it: a kind, the node, and for
 * losses and rejections the agent's or the operator's reason (an enum) and a count. Never the detail (pod,
 * container, path, the agent's text): it is the pod's namespace's business, and stays in its AuditRecords
 * and Events.
 *
 *   coverage-gap   a container the policy selects cannot be audited (the agent found no readline to probe)
 *   attached-late  a container was audited only after it may have run commands
 *   unattributed   a command without pod identity, recorded nowhere
 *   loss           the agent lost commands (reason: LOSS_REASONS)
 *   rejected       records the operator can never write (reason: RejectionReason)
 */
export type PolicyProblem =
  | { kind: 'coverage-gap' | 'attached-late' | 'unattributed'; node: string }
  | { kind: 'loss'; node: string; reason: LossRecord['reason']; count?: number }
  /** reason: the operator's word for why (a RejectionReason of api/agentapi), never text from a report. */
  | { kind: 'rejected'; node: string; reason: string; count: number };
export type ProblemKind = PolicyProblem['kind'];

export interface PolicyActivity {
  /** Commands recorded since the reconciler last took the counts. */
  commands: number;
  lastCommandTime?: Date;
  /** Losses and coverage gaps reported under this policy, newest last (bounded). */
  problems: PolicyProblem[];
}

export interface NodeReport {
  state: AgentState;
  lastReportTime: Date;
}

const MAX_PROBLEMS = 64;

export class ReportLedger {
  private readonly activity = new Map<string, PolicyActivity>();
  private readonly nodes = new Map<string, NodeReport>();
  private readonly listeners = new Set<(policies: readonly string[]) => void>();

  /** Called with the policies whose figures changed (the reconciler enqueues them). */
  onChange(listener: (policies: readonly string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  recordCommands(policy: string, count: number, lastTime: Date): void {
    const a = this.entry(policy);
    a.commands += count;
    if (!a.lastCommandTime || lastTime > a.lastCommandTime) a.lastCommandTime = lastTime;
    this.changed([policy]);
  }

  recordProblem(policy: string, problem: PolicyProblem): void {
    const a = this.entry(policy);
    a.problems.push(problem);
    if (a.problems.length > MAX_PROBLEMS) a.problems.shift();
    this.changed([policy]);
  }

  /** An agent's state, from its latest report; every policy may show this node. */
  recordAgentState(node: string, state: AgentState, time: Date, policies: readonly string[]): void {
    this.nodes.set(node, { state, lastReportTime: time });
    this.changed(policies);
  }

  /** The counts since the last take, which are then reset (the reconciler adds them to the status). */
  takeActivity(policy: string): PolicyActivity | undefined {
    const a = this.activity.get(policy);
    this.activity.delete(policy);
    return a;
  }

  /** Puts counts back when a status write failed, so nothing is lost. */
  restoreActivity(policy: string, taken: PolicyActivity): void {
    const a = this.entry(policy);
    a.commands += taken.commands;
    if (taken.lastCommandTime && (!a.lastCommandTime || taken.lastCommandTime > a.lastCommandTime))
      a.lastCommandTime = taken.lastCommandTime;
    a.problems = [...taken.problems, ...a.problems].slice(-MAX_PROBLEMS);
  }

  nodeReport(node: string): NodeReport | undefined {
    return this.nodes.get(node);
  }

  private entry(policy: string): PolicyActivity {
    let a = this.activity.get(policy);
    if (!a) {
      a = { commands: 0, problems: [] };
      this.activity.set(policy, a);
    }
    return a;
  }

  private changed(policies: readonly string[]): void {
    for (const listener of this.listeners) listener(policies);
  }
}
