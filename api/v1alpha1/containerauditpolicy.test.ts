import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import {
  ContainerAuditPolicy,
  ContainerAuditPolicySpec,
  DEFAULT_MAX_COMMAND_BYTES,
  durationSeconds,
} from './index.js';
import { BAD_POLICIES, VALID_SPEC, badSpec } from './testdata/bad-policies.js';

const examplesDir = join(import.meta.dirname, '..', '..', 'examples');

describe('ContainerAuditPolicy schema', () => {
  it.each(readdirSync(examplesDir).filter((f) => f.endsWith('.yaml')))('accepts the example %s', (file) => {
    const doc = load(readFileSync(join(examplesDir, file), 'utf8'));
    const parsed = ContainerAuditPolicy.safeParse(doc);
    expect(parsed.error?.issues ?? []).toEqual([]);
  });

  it('fills every default into an empty spec, as the CRD does', () => {
    expect(ContainerAuditPolicySpec.parse({})).toEqual({
      selector: { namespaceSelector: {}, podSelector: {}, containers: [] },
      capture: { interactiveShells: true, execs: false, maxCommandBytes: DEFAULT_MAX_COMMAND_BYTES },
      redact: { builtins: true, patterns: [] },
      alerts: [],
      outputs: { events: true, auditRecords: true },
      retention: { maxAge: '720h' },
      suspend: false,
    });
  });

  it('accepts the spec the bad cases start from', () => {
    expect(ContainerAuditPolicySpec.safeParse(VALID_SPEC).error?.issues ?? []).toEqual([]);
  });

  it.each(BAD_POLICIES.map((b) => [b.name, b] as const))('refuses %s, naming the field', (_name, bad) => {
    const parsed = ContainerAuditPolicySpec.safeParse(badSpec(bad));
    expect(parsed.success).toBe(false);
    const paths = (parsed.error?.issues ?? []).map((i) => i.path.join('.'));
    expect(paths.some((p) => p.startsWith(bad.zodPath))).toBe(true);
  });
});

describe('durationSeconds', () => {
  it.each([
    ['720h', 2_592_000],
    ['1h30m', 5_400],
    ['90s', 90],
    ['2h0m5s', 7_205],
  ])('reads %s as %i seconds', (text, seconds) => {
    expect(durationSeconds(text)).toBe(seconds);
  });
});
