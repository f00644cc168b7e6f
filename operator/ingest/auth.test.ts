import type { V1TokenReviewStatus } from '@kubernetes/client-node';
import { AGENT_TOKEN_AUDIENCE } from '../../api/agentapi/v1.js';
import {
  AgentAuthenticator,
  bearerToken,
  bindNode,
  EXTRA_NODE_NAME,
  EXTRA_POD_NAME,
  EXTRA_POD_UID,
  judgeReview,
  tokenLifetimeMs,
} from './auth.js';
import type { BoundPod } from './kube-clients.js';
import { apiError } from './testdata/fakes.js';
import { agentJwt } from './testdata/tokens.js';

const USER = 'system:serviceaccount:container-auditor:agent';

function review(
  over: Partial<V1TokenReviewStatus> = {},
  extra: Record<string, string[]> = {},
): V1TokenReviewStatus {
  return {
    authenticated: true,
    audiences: [AGENT_TOKEN_AUDIENCE],
    user: {
      username: USER,
      extra: {
        [EXTRA_POD_NAME]: ['agent-x1'],
        [EXTRA_POD_UID]: ['pod-uid-1'],
        [EXTRA_NODE_NAME]: ['node-a'],
        ...extra,
      },
    },
    ...over,
  };
}

describe('bearerToken', () => {
  it('takes the token of a Bearer header and refuses anything else with 401', () => {
    expect(bearerToken('Bearer abc.def')).toEqual({ ok: true, token: 'abc.def' });
    expect(bearerToken(undefined)).toMatchObject({ ok: false, status: 401, reason: 'missing-token' });
    expect(bearerToken('Basic dXNlcg==')).toMatchObject({
      ok: false,
      status: 401,
      reason: 'malformed-header',
    });
    expect(bearerToken('Bearer a b')).toMatchObject({ ok: false, reason: 'malformed-header' });
  });
});

describe('judgeReview', () => {
  const judge = (s: V1TokenReviewStatus) => judgeReview(s, USER, AGENT_TOKEN_AUDIENCE);

  it('accepts the agent ServiceAccount with the audience, bound to a pod on a node', () => {
    expect(judge(review())).toEqual({ ok: true, username: USER, node: 'node-a', pod: 'agent-x1' });
  });

  it('asks for the pod when the review names no node', () => {
    expect(judge(review({}, { [EXTRA_NODE_NAME]: [] }))).toEqual({
      ok: true,
      username: USER,
      pod: 'agent-x1',
      podUid: 'pod-uid-1',
    });
  });

  it('refuses an unauthenticated token (401) with the reviewer’s error', () => {
    expect(judge({ authenticated: false, error: 'invalid bearer token' })).toMatchObject({
      status: 401,
      reason: 'unauthenticated',
      message: 'invalid bearer token',
    });
  });

  it('refuses a review that does not confirm the audience (401)', () => {
    expect(judge(review({ audiences: [] }))).toMatchObject({ status: 401, reason: 'audience' });
    expect(judge(review({ audiences: ['https://kubernetes.default.svc'] }))).toMatchObject({
      reason: 'audience',
    });
  });

  it('refuses another user (403)', () => {
    expect(
      judge(review({ user: { username: 'system:serviceaccount:container-auditor:other' } })),
    ).toMatchObject({
      status: 403,
      reason: 'service-account',
    });
  });

  it('refuses a token bound to no pod (403)', () => {
    expect(judge(review({ user: { username: USER, extra: {} } }))).toMatchObject({
      status: 403,
      reason: 'unbound',
    });
  });
});

describe('bindNode', () => {
  it('lets an identity speak for its own node only', () => {
    const who = { username: USER, node: 'node-a', pod: 'agent-x1' };
    expect(bindNode(who, 'node-a')).toBeUndefined();
    expect(bindNode(who, 'node-b')).toMatchObject({ status: 403, reason: 'node' });
  });
});

describe('tokenLifetimeMs', () => {
  it('reads exp of a JWT, and nothing of anything else', () => {
    const jwt = (claims: object) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
    expect(tokenLifetimeMs(jwt({ exp: 100 }), 40_000)).toBe(60_000);
    expect(tokenLifetimeMs(jwt({}), 0)).toBeUndefined();
    expect(tokenLifetimeMs('opaque', 0)).toBeUndefined();
    expect(tokenLifetimeMs('a.%%%.b', 0)).toBeUndefined();
  });
});

describe('AgentAuthenticator', () => {
  // Well-formed for the audience (expiring long after the tests' clock), so only the review judges them.
  const T1 = agentJwt({ sub: 't1' });
  const BAD = agentJwt({ sub: 'bad' });
  const T = agentJwt({ sub: 't' });

  function setup(answer: () => Promise<V1TokenReviewStatus>, pod?: () => Promise<BoundPod | undefined>) {
    let t = 1_000_000;
    const reviews: string[] = [];
    const podReads: string[] = [];
    const auth = new AgentAuthenticator({
      reviewer: {
        review: (token, audiences) => {
          expect(audiences).toEqual([AGENT_TOKEN_AUDIENCE]);
          reviews.push(token);
          return answer();
        },
      },
      pods: {
        get: (namespace, name) => {
          podReads.push(`${namespace}/${name}`);
          return pod ? pod() : Promise.resolve(undefined);
        },
      },
      serviceAccount: { namespace: 'container-auditor', name: 'agent' },
      clock: { now: () => t },
    });
    return { auth, reviews, podReads, advance: (ms: number) => (t += ms) };
  }

  it('caches a positive review for 30 s', async () => {
    const { auth, reviews, advance } = setup(() => Promise.resolve(review()));
    await expect(auth.identify(`Bearer ${T1}`)).resolves.toMatchObject({
      ok: true,
      identity: { node: 'node-a' },
    });
    advance(29_000);
    await auth.identify(`Bearer ${T1}`);
    expect(reviews).toHaveLength(1);
    advance(2_000);
    await auth.identify(`Bearer ${T1}`);
    expect(reviews).toHaveLength(2);
  });

  it('asks once for concurrent requests with the same token', async () => {
    const { auth, reviews } = setup(() => Promise.resolve(review()));
    await Promise.all([
      auth.identify(`Bearer ${T1}`),
      auth.identify(`Bearer ${T1}`),
      auth.identify(`Bearer ${T1}`),
    ]);
    expect(reviews).toHaveLength(1);
  });

  it('keeps a refusal only for a couple of seconds, and a failure to ask not at all', async () => {
    let answer: () => Promise<V1TokenReviewStatus> = () => Promise.resolve({ authenticated: false });
    const { auth, reviews, advance } = setup(() => answer());
    await expect(auth.identify(`Bearer ${BAD}`)).resolves.toMatchObject({ status: 401 });
    await auth.identify(`Bearer ${BAD}`);
    expect(reviews).toHaveLength(1);
    advance(2_001);
    answer = () => Promise.reject(apiError(500, 'InternalError'));
    await expect(auth.identify(`Bearer ${BAD}`)).resolves.toMatchObject({
      status: 503,
      reason: 'review-failed',
    });
    await auth.identify(`Bearer ${BAD}`);
    expect(reviews).toHaveLength(3);
    expect(auth.refused.snapshot()).toEqual({ unauthenticated: 2, 'review-failed': 2 });
  });

  it('binds a token without a node claim to the node of its pod, checking the pod uid', async () => {
    const noNode = () => Promise.resolve(review({}, { [EXTRA_NODE_NAME]: [] }));
    const ok = setup(noNode, () => Promise.resolve({ uid: 'pod-uid-1', nodeName: 'node-b' }));
    await expect(ok.auth.identify(`Bearer ${T}`)).resolves.toMatchObject({
      ok: true,
      identity: { node: 'node-b' },
    });
    expect(ok.podReads).toEqual(['container-auditor/agent-x1']);

    const replaced = setup(noNode, () => Promise.resolve({ uid: 'another-pod', nodeName: 'node-b' }));
    await expect(replaced.auth.identify(`Bearer ${T}`)).resolves.toMatchObject({
      status: 401,
      reason: 'stale-binding',
    });
    const gone = setup(noNode, () => Promise.resolve(undefined));
    await expect(gone.auth.identify(`Bearer ${T}`)).resolves.toMatchObject({
      status: 401,
      reason: 'stale-binding',
    });
    const pending = setup(noNode, () => Promise.resolve({ uid: 'pod-uid-1' }));
    await expect(pending.auth.identify(`Bearer ${T}`)).resolves.toMatchObject({
      status: 403,
      reason: 'unscheduled',
    });
  });

  it('counts refused binds', async () => {
    const { auth } = setup(() => Promise.resolve(review()));
    const result = await auth.identify(`Bearer ${T}`);
    if (!result.ok) throw new Error('expected an identity');
    expect(auth.bind(result.identity, 'node-b')).toMatchObject({ status: 403 });
    expect(auth.refused.get('node')).toBe(1);
  });

  it('never caches past the token’s expiry', async () => {
    const { auth, reviews, advance } = setup(() => Promise.resolve(review()));
    const token = agentJwt({ exp: Math.floor((1_000_000 + 5_000) / 1000) });
    await auth.identify(`Bearer ${token}`);
    advance(6_000);
    await auth.identify(`Bearer ${token}`);
    expect(reviews).toHaveLength(2);
  });
});
