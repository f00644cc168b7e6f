/**
 * The status a policy should have, pure: from its selection (select.ts), what the agents reported (the
 * ledger's figures, taken by the reconciler) and the status it has now (counters continue from it, condition
 * transition times are kept when nothing flipped).
 *
 * Conditions, always all three:
 * - Invalid: True (InvalidSpec) when anything in the spec cannot be applied; the message names each field.
 * - Ready: True when the policy is valid and not suspended, so its plans are out (Audited, or
 *   NoPodsSelected); False with reason Invalid or Suspended.
 * - Degraded: True when a ready policy does not audit all it selects or cannot tell that it does:
 *   unauditable pods (named), agents reporting errors, nodes whose agent has not reported, losses reported
 *   under the policy. False (AllAudited) otherwise; False with Ready's reason when the policy is not ready.
 *
 * A policy is cluster-scoped: whoever may read policies reads its status, while what its containers do is
 * their namespace's business. So what the agents report is shown as counts and categories only: losses and
 * coverage gaps by kind, reason and node (`problemSummary`; the ledger keeps no more), an agent's errors by
 * their leading words (`errorCategory`), never a path, a command or anything else a container could have
 * written. The detail stays in the pod's namespace (the AuditRecords' losses, Events) and the agent's log.
 * Condition messages are escaped (common/text/escape.ts) for `kubectl describe`.
 */
import type { ContainerAuditPolicyStatus, NodeStatus } from '../../api/v1alpha1/containerauditpolicy.js';
import type { Condition } from '../../api/v1alpha1/meta.js';
import { excerpt } from '../../common/text/escape.js';
import type { NodeReport, PolicyActivity, PolicyProblem } from '../ledger.js';
import { type ConditionUpdate, ConditionType, rfc3339, setCondition } from './conditions.js';
import type { PolicySelection } from './select.js';
import type { z } from 'zod';

type Status = ContainerAuditPolicyStatus;
type NodeStatusT = z.infer<typeof NodeStatus>;

/** Condition messages are for `kubectl describe`: long enough to name things, short enough to read. */
export const MAX_MESSAGE = 1024;
/** Bounds of the status schema. */
const MAX_NODES = 5000;
const MAX_NODE_ERRORS = 16;
/** Nodes a message names before it counts the rest. */
const MAX_NAMED_NODES = 5;

export const Reason = {
  invalidSpec: 'InvalidSpec',
  valid: 'Valid',
  audited: 'Audited',
  noPodsSelected: 'NoPodsSelected',
  invalid: 'Invalid',
  suspended: 'Suspended',
  unauditablePods: 'UnauditablePods',
  agentErrors: 'AgentErrors',
  agentsNotReporting: 'AgentsNotReporting',
  lossesReported: 'LossesReported',
  allAudited: 'AllAudited',
} as const;

export interface StatusInput {
  /** metadata.generation of the policy judged. */
  generation?: number;
  /** The status the policy has now. */
  previous?: Status;
  selection: PolicySelection;
  runtimeClass: string;
  /** What the ledger gathered since the last write (taken by the reconciler). */
  activity?: PolicyActivity;
  nodeReport: (node: string) => NodeReport | undefined;
  /** Losses reported under this policy that are still recent enough to show, newest last. */
  recentProblems: readonly PolicyProblem[];
  /** The operator started a moment ago: a node whose agent has not reported yet is not held against it. */
  excuseMissingReports: boolean;
  now: Date;
}

/** A condition message as `kubectl describe` shows it: controls escaped, at most `max` characters. */
export function truncate(text: string, max = MAX_MESSAGE): string {
  return excerpt(text, max);
}

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

function names(list: readonly string[], total: number): string {
  const more = total - list.length;
  return list.join(', ') + (more > 0 ? ` and ${more} more` : '');
}

const WORD = /^[a-z][a-z-]{0,23}$/;
const MAX_CATEGORY_WORDS = 6;

/**
 * What an agent's error is about, from its leading words ("readline capture: ...", "bpftrace exited: ..."):
 * lower-case words up to the first colon, stopping at anything else (a path, a number, a name, quotes), which
 * may have come from a container. "error" when it does not start with a word.
 */
export function errorCategory(message: string): string {
  const words: string[] = [];
  for (const token of message.trim().split(/\s+/)) {
    const last = token.endsWith(':');
    const word = last ? token.slice(0, -1) : token;
    if (!WORD.test(word)) break;
    words.push(word);
    if (last || words.length >= MAX_CATEGORY_WORDS) break;
  }
  return words.length > 0 ? words.join(' ') : 'error';
}

/** An agent's errors as categories, most recent last, each once with how often it came. */
export function errorCategories(errors: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const e of errors) {
    const category = errorCategory(e);
    const n = (counts.get(category) ?? 0) + 1;
    counts.delete(category);
    counts.set(category, n);
  }
  return [...counts].map(([category, n]) => (n > 1 ? `${category} (${n} times)` : category));
}

function problemKey(p: PolicyProblem): string {
  return p.kind === 'loss' || p.kind === 'rejected' ? `${p.kind}:${p.reason}` : p.kind;
}

/**
 * The problems reported under a policy, counted by kind and reason, and the nodes they came from:
 * "2 containers not audited (coverage gap), 12 commands lost (kernel-lost-events) on nodes node-a, node-b".
 */
export function problemSummary(problems: readonly PolicyProblem[]): string {
  const groups = new Map<string, { first: PolicyProblem; reports: number; count: number; known: boolean }>();
  const nodes: string[] = [];
  for (const p of problems) {
    const key = problemKey(p);
    const group = groups.get(key) ?? { first: p, reports: 0, count: 0, known: true };
    group.reports++;
    if ((p.kind === 'loss' || p.kind === 'rejected') && p.count !== undefined) group.count += p.count;
    else if (p.kind === 'loss') group.known = false;
    groups.set(key, group);
    if (!nodes.includes(p.node)) nodes.push(p.node);
  }
  const parts = [...groups.values()].map(({ first, reports, count, known }) => {
    switch (first.kind) {
      case 'coverage-gap':
        return `${plural(reports, 'container')} not audited (coverage gap)`;
      case 'attached-late':
        return `${plural(reports, 'container')} audited late (earlier commands may be missing)`;
      case 'unattributed':
        return `${plural(reports, 'command')} without pod identity`;
      case 'loss':
        return known
          ? `${plural(count, 'command')} lost (${first.reason})`
          : `${plural(reports, 'loss', 'losses')} (${first.reason})`;
      case 'rejected':
        return `${plural(count, 'record')} not written (${first.reason})`;
    }
  });
  const where = names(nodes.slice(0, MAX_NAMED_NODES), nodes.length);
  return `${parts.join(', ')} on ${nodes.length === 1 ? 'node' : 'nodes'} ${where}`;
}

export function desiredStatus(input: StatusInput): Status {
  const { selection: sel, previous, activity, now } = input;
  const nodes = sel.active ? nodeStatuses(sel, input.nodeReport) : [];
  const readyUpdate = ready(sel);
  const updates = [readyUpdate, invalid(sel), degraded(input, nodes, readyUpdate)].map((c) => ({
    ...c,
    message: truncate(c.message),
    ...(input.generation !== undefined ? { observedGeneration: input.generation } : {}),
  }));
  let conditions: Condition[] = (previous?.conditions ?? []).filter((c) => OWN_TYPES.includes(c.type));
  for (const update of updates) conditions = setCondition(conditions, update, now);
  conditions.sort((a, b) => OWN_TYPES.indexOf(a.type) - OWN_TYPES.indexOf(b.type));

  const status: Status = {};
  if (input.generation !== undefined) status.observedGeneration = input.generation;
  status.conditions = conditions;
  if (sel.evaluated) {
    status.matchedPods = sel.matchedPods;
    status.auditedContainers = sel.auditedContainers;
    status.unauditablePods = sel.unauditablePods;
  }
  if (nodes.length > 0) status.nodes = nodes;
  status.commandsRecorded = (previous?.commandsRecorded ?? 0) + (activity?.commands ?? 0);
  const last = latest(previous?.lastCommandTime, activity?.lastCommandTime);
  if (last !== undefined) status.lastCommandTime = last;
  return status;
}

const OWN_TYPES: readonly string[] = [ConditionType.ready, ConditionType.invalid, ConditionType.degraded];

function latest(stored: string | undefined, reported: Date | undefined): string | undefined {
  if (reported === undefined) return stored;
  if (stored !== undefined && Date.parse(stored) >= reported.getTime()) return stored;
  return rfc3339(reported);
}

function nodeStatuses(sel: PolicySelection, nodeReport: StatusInput['nodeReport']): NodeStatusT[] {
  return sel.nodes.slice(0, MAX_NODES).map(({ name }) => {
    const report = nodeReport(name);
    if (report === undefined) return { name };
    const { state, lastReportTime } = report;
    const node: NodeStatusT = { name };
    if (state.planVersion !== undefined) node.planVersion = state.planVersion;
    node.auditedContainers = state.auditedContainers;
    node.probesAttached = state.probesAttached;
    node.lastReportTime = rfc3339(lastReportTime);
    if (state.errors.length > 0) node.errors = errorCategories(state.errors).slice(-MAX_NODE_ERRORS);
    return node;
  });
}

function problemsText(sel: PolicySelection): string {
  return sel.problems.map((p) => `${p.field}: ${p.message}`).join('; ');
}

function invalid(sel: PolicySelection): ConditionUpdate {
  if (sel.problems.length > 0)
    return {
      type: ConditionType.invalid,
      status: 'True',
      reason: Reason.invalidSpec,
      message: problemsText(sel),
    };
  return {
    type: ConditionType.invalid,
    status: 'False',
    reason: Reason.valid,
    message: 'The spec is valid.',
  };
}

function ready(sel: PolicySelection): ConditionUpdate {
  const type = ConditionType.ready;
  if (sel.problems.length > 0)
    return {
      type,
      status: 'False',
      reason: Reason.invalid,
      message: `The policy is invalid and audits nothing: ${problemsText(sel)}`,
    };
  if (sel.suspended)
    return {
      type,
      status: 'False',
      reason: Reason.suspended,
      message: 'spec.suspend is true: nothing is captured.',
    };
  if (sel.matchedPods === 0)
    return { type, status: 'True', reason: Reason.noPodsSelected, message: 'The selector matches no pod.' };
  const parts = [
    `Audits ${plural(sel.auditedContainers, 'container')} on ${plural(sel.nodes.length, 'node')}`,
    ...sel.auditedElsewhere.map(
      (e) => `${plural(e.containers, 'selected container')} audited by older policy ${e.policy}`,
    ),
  ];
  if (sel.unscheduledPods > 0) parts.push(`${plural(sel.unscheduledPods, 'selected pod')} not on a node yet`);
  if (sel.unauditablePods > 0)
    parts.push(`${plural(sel.unauditablePods, 'selected pod')} unauditable (see Degraded)`);
  return { type, status: 'True', reason: Reason.audited, message: `${parts.join('; ')}.` };
}

function degraded(
  input: StatusInput,
  nodes: readonly NodeStatusT[],
  readyUpdate: ConditionUpdate,
): ConditionUpdate {
  const type = ConditionType.degraded;
  const sel = input.selection;
  if (!sel.active)
    return {
      type,
      status: 'False',
      reason: readyUpdate.reason,
      message: 'Not judged while the policy is not ready.',
    };
  const found: { reason: string; message: string }[] = [];
  if (sel.unauditablePods > 0)
    found.push({
      reason: Reason.unauditablePods,
      message:
        `${plural(sel.unauditablePods, 'selected pod')} cannot be audited (RuntimeClass is not ` +
        `${input.runtimeClass}): ${names(sel.unauditablePodNames, sel.unauditablePods)}`,
    });
  const erring = nodes.filter((n) => n.errors !== undefined);
  if (erring.length > 0)
    found.push({
      reason: Reason.agentErrors,
      message:
        erring
          .slice(0, MAX_NAMED_NODES)
          .map((n) => `the agent on node ${n.name} reports: ${n.errors!.join(', ')}`)
          .join('; ') +
        (erring.length > MAX_NAMED_NODES ? `; and ${erring.length - MAX_NAMED_NODES} more nodes` : '') +
        " (details in the agent's log)",
    });
  const silent = input.excuseMissingReports ? [] : nodes.filter((n) => n.lastReportTime === undefined);
  if (silent.length > 0)
    found.push({
      reason: Reason.agentsNotReporting,
      message: `no report from the agent on ${silent.length === 1 ? 'node' : 'nodes'} ${names(
        silent.slice(0, 5).map((n) => n.name),
        silent.length,
      )}`,
    });
  if (input.recentProblems.length > 0)
    found.push({
      reason: Reason.lossesReported,
      message:
        `losses reported: ${problemSummary(input.recentProblems)} ` +
        "(which containers, and why: Warning Events and AuditRecords in the pods' namespaces)",
    });
  if (found.length === 0)
    return {
      type,
      status: 'False',
      reason: Reason.allAudited,
      message: 'Every selected container is audited and every agent reports.',
    };
  return {
    type,
    status: 'True',
    reason: found[0]!.reason,
    message: found.map((f) => f.message).join('. ') + '.',
  };
}
