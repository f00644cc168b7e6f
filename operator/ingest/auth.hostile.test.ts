/**
 * Hostile input: anyone in the cluster can reach the agents' endpoint. A request must not be able to make the
 * operator ask the API server a TokenReview unless its token looks like the agent's (a JWT for our audience,
 * not expired), and what a source can make it ask for is rate limited. Clock injected.
 */
import type { V1TokenReviewStatus } from '@kubernetes/client-node';
import { AGENT_TOKEN_AUDIENCE } from '../../api/agentapi/v1.js';
import {
  AgentAuthenticator,
  EXPIRY_LEEWAY_MS,
  EXTRA_NODE_NAME,
  EXTRA_POD_NAME,
  EXTRA_POD_UID,
  preflightToken,
} from './auth.js';
import { agentJwt } from './testdata/tokens.js';

const NOW = Date.parse('2026-03-01T10:00:00Z');
const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const GOOD: V1TokenReviewStatus = {
  authenticated: true,
  audiences: [AGENT_TOKEN_AUDIENCE],
  user: {
    username: 'system:serviceaccount:container-auditor:agent',
    extra: { [EXTRA_POD_NAME]: ['agent-x1'], [EXTRA_POD_UID]: ['u1'], [EXTRA_NODE_NAME]: ['node-a'] },
  },
};

function setup(answer: (token: string) => V1TokenReviewStatus = () => ({ authenticated: false })) {
  let t = NOW;
  const reviews: string[] = [];
  const auth = new AgentAuthenticator({
    reviewer: {
      review: (token) => {
        reviews.push(token);
        return Promise.resolve(answer(token));
      },
    },
    pods: { get: () => Promise.resolve(undefined) },
    serviceAccount: { namespace: 'container-auditor', name: 'agent' },
    reviewRate: { burst: 5, perSecond: 2 },
    clock: { now: () => t },
  });
  return { auth, reviews, advance: (ms: number) => (t += ms) };
}

describe('preflightToken', () => {
  const exp = Math.floor(NOW / 1000) + 600;

  it('lets a JWT with our audience and a future exp through to the review', () => {
    expect(preflightToken(agentJwt({ exp }), AGENT_TOKEN_AUDIENCE, NOW)).toBeUndefined();
    expect(
      preflightToken(agentJwt({ exp, aud: AGENT_TOKEN_AUDIENCE }), AGENT_TOKEN_AUDIENCE, NOW),
    ).toBeUndefined();
  });

  it.each([
    ['an opaque string', 'not-a-token'],
    ['two parts', `${b64({ alg: 'RS256' })}.${b64({ aud: [AGENT_TOKEN_AUDIENCE], exp })}`],
    ['four parts', `${agentJwt({ exp })}.x`],
    ['an empty signature', `${b64({ alg: 'RS256' })}.${b64({ aud: [AGENT_TOKEN_AUDIENCE], exp })}.`],
    [
      'characters outside base64url',
      `${b64({ alg: 'RS256' })}.${b64({ aud: [AGENT_TOKEN_AUDIENCE], exp })}+/=.c2ln`,
    ],
    ['a header that is not JSON', `${b64('{alg')}.${b64({ aud: [AGENT_TOKEN_AUDIENCE], exp })}.c2ln`],
    ['a header without alg', `${b64({ typ: 'JWT' })}.${b64({ aud: [AGENT_TOKEN_AUDIENCE], exp })}.c2ln`],
    ['a payload that is not an object', `${b64({ alg: 'RS256' })}.${b64([AGENT_TOKEN_AUDIENCE])}.c2ln`],
    ['no exp', `${b64({ alg: 'RS256' })}.${b64({ aud: [AGENT_TOKEN_AUDIENCE] })}.c2ln`],
    ['a huge token', agentJwt({ exp, pad: 'x'.repeat(10_000) })],
  ])('refuses %s as malformed (401)', (_what, token) => {
    expect(preflightToken(token, AGENT_TOKEN_AUDIENCE, NOW)).toMatchObject({
      status: 401,
      reason: 'malformed-token',
    });
  });

  it('refuses another audience, or none (401)', () => {
    for (const aud of [['https://kubernetes.default.svc'], 'https://kubernetes.default.svc', [], 42])
      expect(preflightToken(agentJwt({ exp, aud }), AGENT_TOKEN_AUDIENCE, NOW)).toMatchObject({
        status: 401,
        reason: 'audience',
      });
  });

  it('refuses an expired token (401), with leeway for clock skew', () => {
    const past = Math.floor((NOW - EXPIRY_LEEWAY_MS) / 1000) - 1;
    expect(preflightToken(agentJwt({ exp: past }), AGENT_TOKEN_AUDIENCE, NOW)).toMatchObject({
      status: 401,
      reason: 'expired',
    });
    const justNow = Math.floor(NOW / 1000) - 5;
    expect(preflightToken(agentJwt({ exp: justNow }), AGENT_TOKEN_AUDIENCE, NOW)).toBeUndefined();
  });
});

describe('AgentAuthenticator under a flood', () => {
  it('asks no TokenReview for tokens that are not JWTs for our audience', async () => {
    const { auth, reviews } = setup();
    const bogus = [
      ...Array.from({ length: 200 }, (_, i) => `bogus-${i}`),
      ...Array.from({ length: 200 }, (_, i) => agentJwt({ aud: ['https://kubernetes.default.svc'], n: i })),
      ...Array.from({ length: 200 }, (_, i) => agentJwt({ exp: 1_000, n: i })),
    ];
    const results = await Promise.all(bogus.map((t) => auth.identify(`Bearer ${t}`, '10.0.0.9')));
    expect(results.every((r) => !r.ok && r.status === 401)).toBe(true);
    expect(reviews).toHaveLength(0);
    expect(auth.asked.get('tokenreviews')).toBe(0);
    expect(auth.refused.snapshot()).toEqual({ 'malformed-token': 200, audience: 200, expired: 200 });
  });

  it('rate limits the reviews a source can cause: 429 with when to retry, other sources unaffected', async () => {
    const { auth, reviews, advance } = setup();
    const forged = (i: number) => `Bearer ${agentJwt({ jti: `forged-${i}` })}`;
    const first = [];
    for (let i = 0; i < 30; i++) first.push(await auth.identify(forged(i), '10.0.0.9'));
    expect(reviews).toHaveLength(5);
    expect(first.slice(0, 5).every((r) => !r.ok && r.status === 401)).toBe(true);
    expect(first.slice(5).every((r) => !r.ok && r.status === 429 && r.retryAfterSeconds === 1)).toBe(true);
    expect(auth.refused.get('rate-limited')).toBe(25);

    await expect(auth.identify(forged(100), '10.0.0.10')).resolves.toMatchObject({ status: 401 });
    expect(reviews).toHaveLength(6);

    advance(499);
    await expect(auth.identify(forged(101), '10.0.0.9')).resolves.toMatchObject({ status: 429 });
    advance(1);
    await expect(auth.identify(forged(102), '10.0.0.9')).resolves.toMatchObject({ status: 401 });
    expect(reviews).toHaveLength(7);
  });

  it('answers a token it reviewed from the cache, however limited its source is', async () => {
    const good = agentJwt({ jti: 'agent' });
    const { auth, reviews } = setup((token) => (token === good ? GOOD : { authenticated: false }));
    await expect(auth.identify(`Bearer ${good}`, '10.0.0.9')).resolves.toMatchObject({ ok: true });
    for (let i = 0; i < 10; i++) await auth.identify(`Bearer ${agentJwt({ jti: `f${i}` })}`, '10.0.0.9');
    await expect(auth.identify(`Bearer ${good}`, '10.0.0.9')).resolves.toMatchObject({ ok: true });
    expect(reviews).toHaveLength(5);
  });

  it('asks once for the same forged token sent again and again (refusals are cached briefly)', async () => {
    const { auth, reviews } = setup();
    const forged = `Bearer ${agentJwt({ jti: 'same' })}`;
    await Promise.all(Array.from({ length: 50 }, () => auth.identify(forged, '10.0.0.9')));
    for (let i = 0; i < 50; i++) await auth.identify(forged, '10.0.0.9');
    expect(reviews).toHaveLength(1);
  });
});
