/**
 * The two CustomResourceDefinitions, assembled from the zod schemas in api/v1alpha1. Names, scope, short
 * names and printer columns live here; every field's type, bound, default, description and CEL rule comes
 * from the schema.
 */
import { dump } from 'js-yaml';
import { z } from 'zod';
import {
  AuditRecordSpec,
  AuditRecordStatus,
  ContainerAuditPolicySpec,
  ContainerAuditPolicyStatus,
  GROUP,
  POLICY_KIND,
  POLICY_PLURAL,
  RECORD_KIND,
  RECORD_PLURAL,
  VERSION,
} from '../v1alpha1/index.js';
import { type JsonSchema, toStructural } from './structural.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Cluster' | 'Namespaced';
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: PrinterColumn[];
}

const KINDS: KindDefinition[] = [
  {
    kind: POLICY_KIND,
    plural: POLICY_PLURAL,
    singular: 'containerauditpolicy',
    // 'auditpolicies' too: kubectl does not pluralize short names, and users type the plural of what they see.
    shortNames: ['auditpolicy', 'auditpolicies', 'cap'],
    scope: 'Cluster',
    description:
      'Selects containers whose Bash commands (and optionally every exec) are recorded, with redaction, alerts, outputs and retention.',
    spec: ContainerAuditPolicySpec,
    status: ContainerAuditPolicyStatus,
    printerColumns: [
      { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      { name: 'Matched Pods', type: 'integer', jsonPath: '.status.matchedPods' },
      { name: 'Audited Containers', type: 'integer', jsonPath: '.status.auditedContainers' },
      { name: 'Commands', type: 'integer', jsonPath: '.status.commandsRecorded' },
      { name: 'Last Command', type: 'date', jsonPath: '.status.lastCommandTime', priority: 1 },
      { name: 'Suspended', type: 'boolean', jsonPath: '.spec.suspend', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
  {
    kind: RECORD_KIND,
    plural: RECORD_PLURAL,
    singular: 'auditrecord',
    shortNames: ['ar'],
    scope: 'Namespaced',
    description:
      "The commands of one shell (or exec) session in an audited container, written by the operator from the node agent's reports.",
    spec: AuditRecordSpec,
    status: AuditRecordStatus,
    printerColumns: [
      { name: 'Pod', type: 'string', jsonPath: '.spec.pod.name' },
      { name: 'Container', type: 'string', jsonPath: '.spec.container.name' },
      { name: 'Node', type: 'string', jsonPath: '.spec.node' },
      { name: 'Kind', type: 'string', jsonPath: '.spec.session.kind', priority: 1 },
      { name: 'Commands', type: 'integer', jsonPath: '.status.counts.commands' },
      { name: 'Alerts', type: 'integer', jsonPath: '.status.counts.alerts' },
      { name: 'Last Command', type: 'date', jsonPath: '.status.lastCommandTime' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policy', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
];

function openApiOf(schema: z.ZodType): JsonSchema {
  // io: 'input' so that fields with defaults are optional in the CRD and carry `default:` instead.
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'throw',
  });
}

export function crdFor(def: KindDefinition): JsonSchema {
  const schema: JsonSchema = {
    type: 'object',
    description: def.description,
    properties: {
      apiVersion: { type: 'string', description: 'containeraudit.io/v1alpha1' },
      kind: { type: 'string', description: def.kind },
      // Validated by the API server itself; a structural schema may say no more than its type here.
      metadata: { type: 'object' },
      spec: toStructural(openApiOf(def.spec), '.spec'),
      status: toStructural(openApiOf(def.status), '.status'),
    },
    required: ['spec'],
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: ['containeraudit'],
      },
      scope: def.scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

export interface GeneratedFile {
  /** Path relative to the repository root. */
  path: string;
  content: string;
}

const HEADER =
  '# Generated from api/v1alpha1 by `make crds`. Do not edit: change the zod schema and regenerate.\n';

/** The CRD manifests exactly as committed under the chart's crds/ (a test fails when they drift). */
export function renderCrdFiles(): GeneratedFile[] {
  return KINDS.map((def) => ({
    path: `charts/container-auditor/crds/${GROUP}_${def.plural}.yaml`,
    content: HEADER + dump(crdFor(def), { lineWidth: -1, noRefs: true }),
  }));
}
