/**
 * The standalone agent's plan: one ContainerAuditPolicy read from a file (YAML or JSON, the same schema as
 * the CRD), matched against what the node knows about each container from its CRI annotations.
 *
 * What the node knows decides what a standalone policy may select on:
 *   selector.containers          the container name (io.kubernetes.cri.container-name)
 *   selector.namespaceSelector   only the label every namespace carries, kubernetes.io/metadata.name,
 *                                which is the pod's namespace (io.kubernetes.cri.sandbox-namespace)
 *   selector.podSelector         nothing: pod labels are not in CRI annotations; needs the cluster
 * A selector on anything else is refused at start with a message saying so, rather than guessed.
 * Containers started without CRI annotations (plain runc or ctr) have no namespace or name: they are audited
 * only by a policy whose selectors are empty. Pod sandboxes (pause containers) are never audited.
 */
import { readFile } from 'node:fs/promises';
import { CORE_SCHEMA, loadAll, mergeTag } from 'js-yaml';
import { ContainerAuditPolicy } from '../../api/v1alpha1/containerauditpolicy.js';
import { isEmptySelector, matchesSelector, selectorKeys } from '../../common/label-selector.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { AuditPlan, CommandFilter, ContainerAudit } from './plan.js';

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/**
 * YAML as kubectl reads a manifest: the YAML 1.2 core schema (timestamps stay strings, as the API has them)
 * with `<<` merge keys, which js-yaml 5 leaves out of its default and would otherwise keep as a literal key.
 */
const POLICY_YAML = CORE_SCHEMA.withTags(mergeTag);

export type CompileFilter = (
  spec: ContainerAuditPolicy['spec'],
) => { ok: true; filter: CommandFilter } | { ok: false; errors: { field: string; message: string }[] };

export class PolicyFileError extends Error {}

/** Parses and validates a policy document; throws PolicyFileError with every problem named by field. */
export function parsePolicyText(text: string, source: string): ContainerAuditPolicy {
  let docs: unknown[];
  try {
    docs = loadAll(text, { schema: POLICY_YAML }).filter((d) => d !== null && d !== undefined);
  } catch (error) {
    throw new PolicyFileError(`${source}: not YAML or JSON: ${(error as Error).message}`);
  }
  if (docs.length !== 1)
    throw new PolicyFileError(
      `${source}: expected exactly one ContainerAuditPolicy, found ${docs.length} documents`,
    );
  const parsed = ContainerAuditPolicy.safeParse(docs[0]);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '<root>'}: ${i.message}`);
    throw new PolicyFileError(`${source}: not a valid ContainerAuditPolicy:\n  ${problems.join('\n  ')}`);
  }
  return parsed.data;
}

/** Selector fields the node cannot evaluate (empty when the policy works standalone). */
export function standaloneSelectorProblems(policy: ContainerAuditPolicy): string[] {
  const { namespaceSelector, podSelector } = policy.spec.selector;
  const problems: string[] = [];
  if (!isEmptySelector(podSelector))
    problems.push(
      'spec.selector.podSelector: pod labels are not known on the node (CRI annotations do not carry them); this selector needs the cluster (run the agent with --operator)',
    );
  const other = selectorKeys(namespaceSelector).filter((k) => k !== NAMESPACE_NAME_LABEL);
  if (other.length > 0)
    problems.push(
      `spec.selector.namespaceSelector: only the label ${NAMESPACE_NAME_LABEL} is known on the node; ${other.join(', ')} need the cluster (run the agent with --operator)`,
    );
  return problems;
}

export class StandalonePolicyPlan implements AuditPlan {
  private readonly audit: ContainerAudit;

  constructor(
    private readonly policy: ContainerAuditPolicy,
    filter: CommandFilter,
  ) {
    const problems = standaloneSelectorProblems(policy);
    if (problems.length > 0) throw new PolicyFileError(problems.join('\n'));
    const { capture } = policy.spec;
    this.audit = {
      policy: policy.metadata.name ?? '',
      interactiveShells: capture.interactiveShells,
      execs: capture.execs,
      maxCommandBytes: capture.maxCommandBytes,
      filter,
      redactKeyBlocks: policy.spec.redact.builtins,
    };
  }

  get maxCommandBytes(): number {
    return this.audit.maxCommandBytes;
  }

  get execs(): boolean {
    return !this.policy.spec.suspend && this.audit.execs;
  }

  auditOf(
    container: ContainerRecord,
  ): { audited: true; audit: ContainerAudit } | { audited: false; reason: string } {
    const { spec } = this.policy;
    const { identity } = container;
    if (spec.suspend) return { audited: false, reason: 'the policy is suspended' };
    if (identity.kind === 'sandbox') return { audited: false, reason: 'a pod sandbox (pause) container' };
    const { namespaceSelector, containers } = spec.selector;
    if (!isEmptySelector(namespaceSelector)) {
      if (identity.podNamespace === undefined)
        return { audited: false, reason: 'no pod namespace in its annotations' };
      if (!matchesSelector(namespaceSelector, { [NAMESPACE_NAME_LABEL]: identity.podNamespace }))
        return { audited: false, reason: `namespace ${identity.podNamespace} is not selected` };
    }
    if (containers.length > 0 && !containers.includes(identity.containerName ?? ''))
      return {
        audited: false,
        reason:
          identity.containerName === undefined
            ? 'no container name in its annotations'
            : `container ${identity.containerName} is not selected`,
      };
    return { audited: true, audit: this.audit };
  }
}

/** Reads FILE, validates it, compiles its rules; every failure is a PolicyFileError that names the field. */
export async function loadStandalonePlan(
  path: string,
  compile: CompileFilter,
): Promise<StandalonePolicyPlan> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new PolicyFileError(`cannot read the policy file: ${(error as Error).message}`);
  }
  const policy = parsePolicyText(text, path);
  const compiled = compile(policy.spec);
  if (!compiled.ok)
    throw new PolicyFileError(
      `${path}: ${compiled.errors.map((e) => `${e.field}: ${e.message}`).join('\n  ')}`,
    );
  return new StandalonePolicyPlan(policy, compiled.filter);
}
