/**
 * Who is calling: an agent proves itself with its projected ServiceAccount token (audience
 * AGENT_TOKEN_AUDIENCE). The operator asks the API server (TokenReview, spec.audiences [that audience]) and
 * accepts the token only when it is authenticated, the review confirms the audience, and the user is exactly
 * the agent's ServiceAccount. The token is then bound to a node: the node claim the API server puts in the
 * review for pod-bound tokens (extra `authentication.kubernetes.io/node-name`, Kubernetes 1.30+), or else the
 * node of the pod the token is bound to (extra pod-name and pod-uid: the pod is read and its uid checked). A
 * request may only speak for that node.
 *
 *   401  no token, not a Bearer token, not a JWT for our audience, expired, not authenticated (forged,
 *        another audience), bound pod gone
 *   403  another user than the agent's ServiceAccount, a token bound to no pod (or an unscheduled one), or
 *        a request for another node than the token's
 *   429  this source asked for too many reviews lately (Retry-After)
 *   503  the API server could not be asked (the agent retries)
 *
 * A TokenReview is an API call, so what a caller can make us ask for is bounded. Before any review, the token
 * must look like what the kubelet projects (`preflightToken`): a JWT (three base64url parts, a JSON header and
 * payload) whose unverified payload names our audience in `aud` and an `exp` not yet past. That is only a
 * filter, read and never trusted: the TokenReview stays the authority. Then positive reviews are cached for
 * `cacheTtlMs` (default 30 s, never past the token's own expiry), keyed by a hash of the token; definite
 * refusals for `negativeTtlMs` (default 2 s); failures to ask not at all. A review that is still needed takes
 * a token from its source's bucket (the caller's address; default burst 20, 2/s), else 429. Refused requests
 * are counted by reason, TokenReviews and Pod reads asked by kind (`asked`).
 */
import { type Clock, realClock } from '../../common/clock.js';
import { createHash } from 'node:crypto';
import type { V1TokenReviewStatus } from '@kubernetes/client-node';
import { z } from 'zod';
import { AGENT_TOKEN_AUDIENCE } from '../../api/agentapi/v1.js';
import { parseJson } from '../../api/parse-json.js';
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { Counters } from './counters.js';
import type { PodReader, TokenReviewer } from './kube-clients.js';
import { describeError } from '../../common/kube/errors.js';
import { KeyedTokenBuckets, type RateLimit } from '../../common/token-bucket.js';

export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';

export const REFUSAL_STATUS = {
  'missing-token': 401,
  'malformed-header': 401,
  'malformed-token': 401,
  expired: 401,
  unauthenticated: 401,
  audience: 401,
  'stale-binding': 401,
  'service-account': 403,
  unbound: 403,
  unscheduled: 403,
  node: 403,
  'rate-limited': 429,
  'review-failed': 503,
} as const;
export type RefusalReason = keyof typeof REFUSAL_STATUS;

export interface Refusal {
  ok: false;
  status: (typeof REFUSAL_STATUS)[RefusalReason];
  reason: RefusalReason;
  message: string;
  /** For 429: when to ask again. */
  retryAfterSeconds?: number;
}

export interface AgentIdentity {
  username: string;
  /** The node the token is bound to. */
  node: string;
  /** The agent pod the token is bound to. */
  pod: string;
}

export type AuthResult = { ok: true; identity: AgentIdentity } | Refusal;

export function refusal(reason: RefusalReason, message: string): Refusal {
  return { ok: false, status: REFUSAL_STATUS[reason], reason, message };
}

export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(header: string | undefined): { ok: true; token: string } | Refusal {
  if (header === undefined || header.trim() === '') return refusal('missing-token', 'no bearer token');
  const match = /^Bearer +([^\s]+)\s*$/i.exec(header);
  if (!match?.[1]) return refusal('malformed-header', 'Authorization is not "Bearer <token>"');
  return { ok: true, token: match[1] };
}

/** What a TokenReview says about the token, or why it is refused; a pod to look up when no node is named. */
export type Reviewed =
  | { ok: true; username: string; node: string; pod: string }
  | { ok: true; username: string; node?: undefined; pod: string; podUid: string }
  | Refusal;

const first = (extra: Record<string, string[]> | undefined, key: string): string | undefined =>
  extra?.[key]?.find((v) => v !== '');

/** Pure: judges a TokenReview status against the expected user and audience. */
export function judgeReview(status: V1TokenReviewStatus, expectedUser: string, audience: string): Reviewed {
  if (status.authenticated !== true)
    return refusal('unauthenticated', status.error ? status.error.slice(0, 256) : 'token not authenticated');
  if (!(status.audiences ?? []).includes(audience))
    return refusal('audience', `token not confirmed for the audience ${audience}`);
  const username = status.user?.username ?? '';
  if (username !== expectedUser)
    return refusal('service-account', `${username || 'the caller'} is not the agent's ServiceAccount`);
  const extra = status.user?.extra;
  const pod = first(extra, EXTRA_POD_NAME);
  const podUid = first(extra, EXTRA_POD_UID);
  if (!pod || !podUid) return refusal('unbound', 'the token is not bound to a pod, so to no node');
  const node = first(extra, EXTRA_NODE_NAME);
  return node ? { ok: true, username, node, pod } : { ok: true, username, pod, podUid };
}

/** Pure: may this identity speak for `node`? */
export function bindNode(identity: AgentIdentity, node: string): Refusal | undefined {
  if (identity.node === node) return undefined;
  return refusal('node', `the token is bound to node ${identity.node}, not ${node}`);
}

/** Far longer than any projected token (about 1 KiB); what is longer is not one. */
export const MAX_TOKEN_BYTES = 8192;
/** The operator's clock may run ahead of the API server's: a token this recently expired is still asked about. */
export const EXPIRY_LEEWAY_MS = 30_000;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A JWT's header and claims as far as the pre-filter reads them (unverified: the TokenReview decides). */
const JwtHeader = z.looseObject({ alg: z.string() });
const JwtClaims = z.looseObject({ aud: z.unknown().optional(), exp: z.unknown().optional() });

/** What a base64url JWT part encodes, if it is JSON of that shape; else undefined. */
function jwtPart<S extends z.ZodType>(schema: S, part: string): z.output<S> | undefined {
  if (!BASE64URL.test(part)) return undefined;
  const parsed = parseJson(schema, Buffer.from(part, 'base64url').toString('utf8'));
  return parsed.ok ? parsed.value : undefined;
}

/**
 * Pure, and no proof of anything: whether a token is worth a TokenReview. It must be a JWT (three base64url
 * parts, a JSON header with an `alg`, a JSON payload), its unverified `aud` must name `audience` and its `exp`
 * must not be past (EXPIRY_LEEWAY_MS). A token the kubelet projected for the agent always is; anything else is
 * refused here without asking the API server.
 */
export function preflightToken(token: string, audience: string, nowMs: number): Refusal | undefined {
  const malformed = refusal('malformed-token', 'the bearer token is not a JWT');
  if (token.length > MAX_TOKEN_BYTES) return malformed;
  const parts = token.split('.');
  if (parts.length !== 3 || !BASE64URL.test(parts[2]!)) return malformed;
  const header = jwtPart(JwtHeader, parts[0]!);
  const claims = jwtPart(JwtClaims, parts[1]!);
  if (!header || !claims) return malformed;
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(audience))
    return refusal('audience', `the token is not for the audience ${audience}`);
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp))
    return refusal('malformed-token', 'the token has no expiry');
  if (claims.exp * 1000 + EXPIRY_LEEWAY_MS <= nowMs) return refusal('expired', 'the token has expired');
  return undefined;
}

/** Milliseconds until the JWT's `exp` (read, not verified: only ever used to shorten the cache). */
export function tokenLifetimeMs(token: string, nowMs: number): number | undefined {
  const payload = token.split('.')[1];
  const claims = payload ? jwtPart(JwtClaims, payload) : undefined;
  return typeof claims?.exp === 'number' ? claims.exp * 1000 - nowMs : undefined;
}

/** TokenReviews one source may cause (those the cache answers are free). */
export const DEFAULT_REVIEW_RATE: RateLimit = { burst: 20, perSecond: 2 };

export interface AgentAuthenticatorOptions {
  reviewer: TokenReviewer;
  pods: PodReader;
  /** The agent's ServiceAccount: the only user accepted. */
  serviceAccount: { namespace: string; name: string };
  audience?: string;
  cacheTtlMs?: number;
  negativeTtlMs?: number;
  maxCacheEntries?: number;
  /** TokenReviews per source (the caller's address), default DEFAULT_REVIEW_RATE. */
  reviewRate?: RateLimit;
  /** Time (common/clock.ts): only `now` is read. */
  clock?: Pick<Clock, 'now'>;
  logger?: Logger;
}

interface CacheEntry {
  result: AuthResult;
  expires: number;
}

export type AskedCounter = 'tokenreviews' | 'pods';

export class AgentAuthenticator {
  readonly refused = new Counters<RefusalReason>();
  /** API calls made: TokenReviews and Pod reads. */
  readonly asked = new Counters<AskedCounter>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<AuthResult>>();
  private readonly user: string;
  private readonly audience: string;
  private readonly cacheTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxEntries: number;
  private readonly clock: Pick<Clock, 'now'>;
  private readonly log: Logger;
  private readonly sources: KeyedTokenBuckets;
  private lastSweep = 0;

  constructor(private readonly options: AgentAuthenticatorOptions) {
    this.user = serviceAccountUser(options.serviceAccount.namespace, options.serviceAccount.name);
    this.audience = options.audience ?? AGENT_TOKEN_AUDIENCE;
    this.cacheTtlMs = options.cacheTtlMs ?? 30_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 2_000;
    this.maxEntries = options.maxCacheEntries ?? 4096;
    this.clock = options.clock ?? realClock;
    this.log = options.logger ?? silentLogger();
    this.sources = new KeyedTokenBuckets(options.reviewRate ?? DEFAULT_REVIEW_RATE, () => this.clock.now());
  }

  /**
   * Who the caller is (before the request says which node it speaks for). `source` is the caller's address:
   * reviews are rate limited per source. Counts refusals.
   */
  async identify(authorization: string | undefined, source = ''): Promise<AuthResult> {
    const bearer = bearerToken(authorization);
    const result = bearer.ok
      ? (preflightToken(bearer.token, this.audience, this.clock.now()) ??
        (await this.review(bearer.token, source)))
      : bearer;
    if (!result.ok) this.refused.inc(result.reason);
    return result;
  }

  /** The identity may speak for `node`, or the refusal (counted). */
  bind(identity: AgentIdentity, node: string): Refusal | undefined {
    const r = bindNode(identity, node);
    if (r) this.refused.inc(r.reason);
    return r;
  }

  private review(token: string, source: string): Promise<AuthResult> {
    const key = createHash('sha256').update(token).digest('hex');
    const now = this.clock.now();
    const cached = this.cache.get(key);
    if (cached && cached.expires > now) return Promise.resolve(cached.result);
    if (cached) this.cache.delete(key);
    const running = this.inflight.get(key);
    if (running) return running;
    this.sweep(now);
    if (!this.sources.take(source)) {
      const seconds = Math.max(1, Math.ceil(this.sources.retryAfterMs(source) / 1000));
      return Promise.resolve({
        ...refusal('rate-limited', 'too many token reviews from this address; retry later'),
        retryAfterSeconds: seconds,
      });
    }
    const promise = this.ask(token)
      .then((result) => {
        this.remember(key, token, result);
        return result;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }

  private async ask(token: string): Promise<AuthResult> {
    let judged: Reviewed;
    this.asked.inc('tokenreviews');
    try {
      judged = judgeReview(
        await this.options.reviewer.review(token, [this.audience]),
        this.user,
        this.audience,
      );
    } catch (e) {
      this.log.warn('TokenReview failed', { [LogField.error]: describeError(e) });
      return refusal('review-failed', 'the token could not be reviewed; retry');
    }
    if (!judged.ok) return judged;
    if (judged.node !== undefined)
      return { ok: true, identity: { username: judged.username, node: judged.node, pod: judged.pod } };
    // No node claim (Kubernetes before 1.30): the bound pod says where the agent runs.
    let pod;
    this.asked.inc('pods');
    try {
      pod = await this.options.pods.get(this.options.serviceAccount.namespace, judged.pod);
    } catch (e) {
      this.log.warn('Reading the Pod of an agent token failed', { [LogField.error]: describeError(e) });
      return refusal('review-failed', 'the pod of the token could not be read; retry');
    }
    if (!pod || pod.uid !== judged.podUid)
      return refusal('stale-binding', `the pod ${judged.pod} of the token is gone`);
    if (!pod.nodeName) return refusal('unscheduled', `the pod ${judged.pod} of the token runs on no node`);
    return { ok: true, identity: { username: judged.username, node: pod.nodeName, pod: judged.pod } };
  }

  /** Forgets the buckets of sources that are quiet again, once a minute. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    this.sources.sweep();
  }

  private remember(key: string, token: string, result: AuthResult): void {
    if (!result.ok && result.reason === 'review-failed') return;
    const now = this.clock.now();
    let ttl = result.ok ? this.cacheTtlMs : this.negativeTtlMs;
    const lifetime = tokenLifetimeMs(token, now);
    if (lifetime !== undefined) ttl = Math.min(ttl, lifetime);
    if (ttl <= 0) return;
    this.cache.set(key, { result, expires: now + ttl });
    // Oldest first: entries are added in time order.
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
  }
}
