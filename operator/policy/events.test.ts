import { policyEventName } from './events.js';

describe('policyEventName', () => {
  const policy = { name: 'p', uid: 'u', generation: 2 };

  it('is the same for the same judgement and differs otherwise', () => {
    const name = policyEventName(policy, 'InvalidPolicy', 'm');
    expect(name).toMatch(/^p\.[0-9a-f]{16}$/);
    expect(policyEventName(policy, 'InvalidPolicy', 'm')).toBe(name);
    expect(policyEventName({ ...policy, generation: 3 }, 'InvalidPolicy', 'm')).not.toBe(name);
    expect(policyEventName(policy, 'InvalidPolicy', 'n')).not.toBe(name);
  });

  it('stays a valid object name for the longest policy name', () => {
    expect(policyEventName({ name: 'x'.repeat(253) }, 'R', 'm').length).toBeLessThanOrEqual(253);
  });
});
