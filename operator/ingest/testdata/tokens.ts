/**
 * Unsigned JWTs shaped like the agent's projected token, for unit tests of the authenticator: they pass its
 * pre-filter (auth.ts preflightToken), and only a TokenReview could tell them apart from real ones.
 */
import { AGENT_TOKEN_AUDIENCE } from '../../../api/agentapi/v1.js';

const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT with the agent's audience, expiring in the year 2100 unless `claims` say otherwise. */
export function agentJwt(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  return [
    part({ alg: 'RS256', kid: 'test', ...header }),
    part({
      aud: [AGENT_TOKEN_AUDIENCE],
      exp: 4_102_444_800,
      sub: 'system:serviceaccount:x:agent',
      ...claims,
    }),
    'c2lnbmF0dXJl',
  ].join('.');
}
