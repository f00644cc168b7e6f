import { eventName, labelValue, MAX_NAME, recordName, segment } from './naming.js';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const BOOT = '0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9';

describe('recordName', () => {
  const base = { pod: 'web-0', container: 'app', kind: 'shell' as const, pid: 4242, boot: BOOT, part: 1 };

  it('is <pod>-<container>-<pid>-<boot 8>-<part> for ordinary names', () => {
    expect(recordName(base)).toBe('web-0-app-4242-0f1e2d3c-1');
    expect(recordName({ ...base, part: 2 })).toBe('web-0-app-4242-0f1e2d3c-2');
    expect(recordName({ ...base, kind: 'exec', pid: 0 })).toBe('web-0-app-exec-0f1e2d3c-1');
  });

  it('is the same for the same session, different for another', () => {
    expect(recordName(base)).toBe(recordName({ ...base }));
    expect(recordName({ ...base, pid: 4243 })).not.toBe(recordName(base));
    expect(recordName({ ...base, boot: 'ffffffff-' + BOOT.slice(9) })).not.toBe(recordName(base));
  });

  it('cuts a long pod name and appends a hash, staying a valid name', () => {
    const pod = 'a'.repeat(250);
    const name = recordName({ ...base, pod });
    expect(name.length).toBeLessThanOrEqual(MAX_NAME);
    expect(name).toMatch(DNS_SUBDOMAIN);
    expect(name).toMatch(/-4242-0f1e2d3c-1-[0-9a-f]{8}$/);
    // Two long names that differ only past the cut stay apart.
    expect(recordName({ ...base, pod: pod + 'b' })).not.toBe(name);
  });

  it('replaces what is not allowed and says so with a hash', () => {
    const name = recordName({ ...base, container: 'App_1', boot: 'XY.z/1234567' });
    expect(name).toMatch(DNS_SUBDOMAIN);
    expect(name).toMatch(/^web-0-app-1-4242-xy-z-123-1-[0-9a-f]{8}$/);
  });

  it('gives a taken name an alternative that depends on the disambiguator', () => {
    const a = recordName({ ...base, disambiguator: 'uid-1/c1' });
    const b = recordName({ ...base, disambiguator: 'uid-2/c1' });
    expect(a).toMatch(/^web-0-app-4242-0f1e2d3c-1-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
    expect(a).not.toBe(recordName(base));
  });
});

describe('eventName', () => {
  it('is <pod>.<boot 8>.<seq>', () => {
    expect(eventName('web-0', BOOT, 17)).toBe('web-0.0f1e2d3c.17');
    expect(eventName('web-0', BOOT, 17, 'folded')).toBe('web-0.0f1e2d3c.17.folded');
  });

  it('stays a valid name for any pod and boot', () => {
    for (const [pod, boot] of [
      ['p'.repeat(253), BOOT],
      ['web-0', '-.-.-.-.'],
      ['Web_0', 'ABCDEFGH'],
    ] as const) {
      const name = eventName(pod, boot, 123456789);
      expect(name.length).toBeLessThanOrEqual(MAX_NAME);
      expect(name).toMatch(DNS_SUBDOMAIN);
    }
  });
});

describe('segment', () => {
  it('keeps lower-case letters, digits and inner dashes', () => {
    expect(segment('app-1')).toEqual({ text: 'app-1', changed: false });
    expect(segment('-A.b-')).toEqual({ text: 'a-b', changed: true });
    expect(segment('...')).toEqual({ text: 'x', changed: true });
  });
});

describe('labelValue', () => {
  it('keeps valid values and makes others valid, distinct and at most 63 characters', () => {
    expect(labelValue('web-0')).toBe('web-0');
    const long = labelValue('x'.repeat(100));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(LABEL_VALUE);
    expect(labelValue('x'.repeat(101))).not.toBe(long);
    expect(labelValue('a b/c')).toMatch(LABEL_VALUE);
    expect(labelValue('///')).toMatch(/^[0-9a-f]{8}$/);
  });
});
