import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecentErrors } from '../core/recent-errors.js';
import { OperatorClient, TokenError, errorText, isSafeOperatorUrl } from './operator-client.js';
import { FakeOperator, selfSignedCertificate } from '../../test-support/fake-operator.js';

let dir: string;
let tokenFile: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'operator-client-test-'));
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'token-1\n');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the operator client', () => {
  it('talks HTTPS to an operator whose CA it was given, and refuses one it was not', async () => {
    const tls = selfSignedCertificate();
    const operator = await FakeOperator.start({ token: 'token-1', tls });
    try {
      const trusting = new OperatorClient({ url: operator.url, tokenFile, ca: tls.cert });
      const answer = await trusting.request(
        'POST',
        '/v1/reports',
        {},
        { body: { node: 'n', boot: 'b', records: [] } },
      );
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toEqual({ accepted: 0, duplicates: 0 });
      trusting.close();
      const other = selfSignedCertificate();
      const wary = new OperatorClient({ url: operator.url, tokenFile, ca: other.cert });
      await expect(wary.request('GET', '/v1/plan', { node: 'n' })).rejects.toThrow(
        /certificate|self.signed/i,
      );
      wary.close();
    } finally {
      await operator.down();
    }
  });

  it('sends the token read from its file, and fails before sending without one', async () => {
    const operator = await FakeOperator.start({ token: 'token-2' });
    try {
      const client = new OperatorClient({ url: `${operator.url}/prefix/`, tokenFile });
      expect(client.urlFor('/v1/plan', { node: 'n a', version: undefined }).href).toBe(
        `${operator.url}/prefix/v1/plan?node=n+a`,
      );
      const base = new OperatorClient({ url: operator.url, tokenFile });
      expect((await base.request('GET', '/v1/plan', { node: 'n' })).status).toBe(401);
      await writeFile(tokenFile, 'token-2');
      expect((await base.request('GET', '/v1/plan', { node: 'n' })).status).toBe(503); // no plan yet
      expect(operator.requests.map((r) => r.authorization)).toEqual(['Bearer token-1', 'Bearer token-2']);
      await writeFile(tokenFile, '  \n');
      await expect(base.request('GET', '/v1/plan')).rejects.toThrow(TokenError);
      await rm(tokenFile);
      await expect(base.request('GET', '/v1/plan')).rejects.toThrow(TokenError);
      expect(operator.requests).toHaveLength(2);
      base.close();
      client.close();
    } finally {
      await operator.down();
    }
  });

  it('lets the token travel only over https, or plain http to the loopback', () => {
    expect(isSafeOperatorUrl(new URL('https://operator.ns.svc:8443'))).toBe(true);
    expect(isSafeOperatorUrl(new URL('http://127.0.0.1:8080'))).toBe(true);
    expect(isSafeOperatorUrl(new URL('http://[::1]:8080'))).toBe(true);
    expect(isSafeOperatorUrl(new URL('http://operator.ns.svc:8080'))).toBe(false);
    expect(isSafeOperatorUrl(new URL('ftp://127.0.0.1'))).toBe(false);
  });

  it('shows an error answer briefly', () => {
    expect(errorText('{"error":"invalid report","detail":"records.0.seq"}')).toBe(
      'invalid report: records.0.seq',
    );
    expect(errorText('{"error":"no"}')).toBe('no');
    expect(errorText('<html>' + 'x'.repeat(1000))).toHaveLength(512);
  });
});

describe('RecentErrors', () => {
  it('keeps the newest problems', () => {
    const errors = new RecentErrors(2);
    for (const m of ['a', 'b', 'c']) errors.add(m);
    expect(errors.list().map((e) => e.message)).toEqual(['b', 'c']);
  });
});
