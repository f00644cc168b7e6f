/**
 * The shipped example policies must be valid all the way: the CRD's schema (api/) and the rules the operator
 * compiles (common/rules), which the schema cannot check (a pattern the linear-time engine refuses).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { ContainerAuditPolicy } from '../../api/v1alpha1/containerauditpolicy.js';
import { compileCommandRules } from './command-rules.js';

const dir = join(import.meta.dirname, '..', '..', 'examples');

describe.each(readdirSync(dir).filter((f) => f.endsWith('.yaml')))('examples/%s', (file) => {
  it('is a valid policy whose rules compile', () => {
    const policy = ContainerAuditPolicy.parse(load(readFileSync(join(dir, file), 'utf8')));
    expect(compileCommandRules(policy.spec)).toMatchObject({ ok: true });
  });
});
