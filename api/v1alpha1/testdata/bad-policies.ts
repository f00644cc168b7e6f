/**
 * Policies that must be refused, each with the field the refusal must name. The same table runs against the
 * zod schema (unit) and the real API server with the generated CRD (integration), which proves that the CEL
 * rules and their TypeScript twins agree and that the CRD says what the schema says.
 */

export interface BadPolicy {
  /** What is wrong, in a few words (the test name). */
  name: string;
  /** Changes to VALID_SPEC (a shallow merge per top-level field). */
  spec: Record<string, unknown>;
  /** Substring of the API server's message that names the field (as in `spec.capture.maxCommandBytes`). */
  serverField: string;
  /** Path of a zod issue (joined with '.', relative to spec) that must be reported. */
  zodPath: string;
}

/** A valid spec that each case breaks in one place. */
export const VALID_SPEC = {
  selector: { namespaceSelector: {}, podSelector: {}, containers: ['app'] },
  capture: { interactiveShells: true, execs: false, maxCommandBytes: 4096 },
  redact: { builtins: true, patterns: ['secret=[^ ]+'] },
  alerts: [{ name: 'curl-pipe-shell', pattern: 'curl .*\\|\\s*(ba)?sh', severity: 'high' }],
  outputs: { events: true, auditRecords: true },
  retention: { maxAge: '720h' },
  suspend: false,
};

const capture = (c: Record<string, unknown>) => ({ capture: { ...VALID_SPEC.capture, ...c } });
const alert = (a: Record<string, unknown>) => ({ alerts: [{ ...VALID_SPEC.alerts[0], ...a }] });
const podSelector = (expr: Record<string, unknown>) => ({
  selector: { ...VALID_SPEC.selector, podSelector: { matchExpressions: [expr] } },
});

export const BAD_POLICIES: BadPolicy[] = [
  {
    name: 'maxCommandBytes of zero',
    spec: capture({ maxCommandBytes: 0 }),
    serverField: 'spec.capture.maxCommandBytes',
    zodPath: 'capture.maxCommandBytes',
  },
  {
    name: 'maxCommandBytes above the limit',
    spec: capture({ maxCommandBytes: 1048576 }),
    serverField: 'spec.capture.maxCommandBytes',
    zodPath: 'capture.maxCommandBytes',
  },
  {
    name: 'maxCommandBytes that is not a number',
    spec: capture({ maxCommandBytes: 'lots' }),
    serverField: 'spec.capture.maxCommandBytes',
    zodPath: 'capture.maxCommandBytes',
  },
  {
    name: 'a capture that records nothing',
    spec: capture({ interactiveShells: false, execs: false }),
    serverField: 'spec.capture',
    zodPath: 'capture',
  },
  {
    name: 'an unknown severity',
    spec: alert({ severity: 'urgent' }),
    serverField: 'spec.alerts[0].severity',
    zodPath: 'alerts.0.severity',
  },
  {
    name: 'duplicate alert names',
    spec: { alerts: [VALID_SPEC.alerts[0], { ...VALID_SPEC.alerts[0], pattern: 'nc -e' }] },
    serverField: 'spec.alerts[1]',
    zodPath: 'alerts',
  },
  {
    name: 'an alert name that is not a DNS label',
    spec: alert({ name: 'Curl Pipe' }),
    serverField: 'spec.alerts[0].name',
    zodPath: 'alerts.0.name',
  },
  {
    name: 'an empty alert pattern',
    spec: alert({ pattern: '' }),
    serverField: 'spec.alerts[0].pattern',
    zodPath: 'alerts.0.pattern',
  },
  {
    name: 'an alert without a pattern',
    spec: { alerts: [{ name: 'no-pattern', severity: 'low' }] },
    serverField: 'spec.alerts[0].pattern',
    zodPath: 'alerts.0.pattern',
  },
  {
    name: 'an empty redaction pattern',
    spec: { redact: { builtins: true, patterns: [''] } },
    serverField: 'spec.redact.patterns[0]',
    zodPath: 'redact.patterns.0',
  },
  {
    name: 'a malformed retention duration',
    spec: { retention: { maxAge: '30 days' } },
    serverField: 'spec.retention.maxAge',
    zodPath: 'retention.maxAge',
  },
  {
    name: 'a retention shorter than a minute',
    spec: { retention: { maxAge: '30s' } },
    serverField: 'spec.retention.maxAge',
    zodPath: 'retention.maxAge',
  },
  {
    name: 'a selector operator that does not exist',
    spec: podSelector({ key: 'app', operator: 'Like', values: ['web'] }),
    serverField: 'spec.selector.podSelector.matchExpressions[0].operator',
    zodPath: 'selector.podSelector.matchExpressions.0.operator',
  },
  {
    name: "operator 'In' without values",
    spec: podSelector({ key: 'app', operator: 'In', values: [] }),
    serverField: 'spec.selector.podSelector.matchExpressions[0].values',
    zodPath: 'selector.podSelector.matchExpressions.0.values',
  },
  {
    name: "operator 'Exists' with values",
    spec: podSelector({ key: 'app', operator: 'Exists', values: ['web'] }),
    serverField: 'spec.selector.podSelector.matchExpressions[0].values',
    zodPath: 'selector.podSelector.matchExpressions.0.values',
  },
  {
    name: 'a container name that is not a DNS label',
    spec: { selector: { ...VALID_SPEC.selector, containers: ['App_1'] } },
    serverField: 'spec.selector.containers[0]',
    zodPath: 'selector.containers.0',
  },
  {
    name: 'a container listed twice',
    spec: { selector: { ...VALID_SPEC.selector, containers: ['app', 'app'] } },
    serverField: 'spec.selector.containers[1]',
    zodPath: 'selector.containers',
  },
  {
    name: 'outputs that write nothing',
    spec: { outputs: { events: false, auditRecords: false } },
    serverField: 'spec.outputs',
    zodPath: 'outputs',
  },
  {
    name: 'an unknown field in spec',
    spec: { captur: { execs: true } },
    serverField: 'spec.captur',
    zodPath: '',
  },
  {
    name: 'a misspelt nested field',
    spec: { capture: { interactiveShell: true } },
    serverField: 'spec.capture.interactiveShell',
    zodPath: 'capture',
  },
];

export function badSpec(bad: BadPolicy): Record<string, unknown> {
  return { ...VALID_SPEC, ...bad.spec };
}
