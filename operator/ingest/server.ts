/**
 * The agents' endpoint (api/agentapi/v1.ts): HTTPS, two routes.
 *
 *   GET  /v1/plan?node=N&version=V  the node's plan, as a long poll on the PlanSource; a client that hangs up
 *                                   ends its wait
 *   POST /v1/reports                a Report; answered once its records are written (ReportIngestor)
 *
 * Every request: 503 unless this replica leads (`isLeader()`), then the bearer token (auth.ts: 401/403), then
 * for reports the body, read up to MAX_REPORT_BYTES and no further (400 beyond), parsed as JSON and validated
 * with the Report schema (400 with zod's message), then the node of the request against the token's (403).
 * Each record is judged (ReportIngestor): 200 when all are done, 207 when those listed in `retry` must be
 * sent again, 503 when none could be written (the agent sends the report again; ingestion is idempotent).
 * Nothing a client sends can crash the process: every handler is guarded, and an unexpected error is a 500.
 *
 * TLS from a certificate and key file, reloaded when they change (cert-manager rotates them in place). Plain
 * HTTP only when explicitly asked (`insecureHttp`, for tests).
 *
 * Anyone in the cluster may reach this port, so what a client can hold is bounded (EndpointLimits): connections
 * in all and per source address (more are cut at once, before TLS), the TLS handshake, the request headers
 * (slow clients get 408 and the connection closes), the whole request with its body, idle kept-alive
 * connections. Token reviews are bounded in auth.ts (pre-filter, cache, a rate per source: 429).
 */
import { readFileSync, statSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import {
  MAX_REPORT_BYTES,
  PLAN_PATH,
  PLAN_WAIT_SECONDS,
  REPORTS_PATH,
  Report,
  type ErrorResponse,
} from '../../api/agentapi/v1.js';
import { parseJson } from '../../api/parse-json.js';
import { LogField, type Logger, silentLogger } from '../../common/logging.js';
import { excerpt } from '../../common/text/escape.js';
import type { AgentAuthenticator, AgentIdentity } from './auth.js';
import { Counters } from './counters.js';
import { IngestFailure, type ReportIngestor } from './ingestor.js';
import type { PlanSource } from './plan-source.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface IngestServerOptions {
  authenticator: Pick<AgentAuthenticator, 'identify' | 'bind'>;
  plans: PlanSource;
  ingestor: Pick<ReportIngestor, 'ingest'>;
  /** Only the leader serves agents. */
  isLeader: () => boolean;
  /** Serving certificate and key (PEM files). Required unless insecureHttp. */
  tls?: TlsFiles;
  /** Plain HTTP: for tests only. */
  insecureHttp?: boolean;
  /** Check the TLS files for changes this often (default 60 s; 0: never). */
  tlsReloadMs?: number;
  /** Longest wait of a plan long poll (default PLAN_WAIT_SECONDS). */
  planWaitMs?: number;
  maxBodyBytes?: number;
  /** After this, `close` cuts connections still open (default 5 s). */
  closeGraceMs?: number;
  limits?: Partial<EndpointLimits>;
  logger?: Logger;
}

/** What one client, or all of them, can hold of the endpoint. */
export interface EndpointLimits {
  /** Open connections in all; more are refused (each agent holds one or two). */
  maxConnections: number;
  /** Open connections from one address; more are cut at once. */
  maxConnectionsPerSource: number;
  /** The TLS handshake must end within this. */
  handshakeTimeoutMs: number;
  /** A request's headers must arrive within this (408). */
  headersTimeoutMs: number;
  /** A whole request, body included, must arrive within this (408); a long poll's wait is not part of it. */
  requestTimeoutMs: number;
  /** A kept-alive connection with no request is closed after this. */
  keepAliveTimeoutMs: number;
  /** How often the time-outs above are checked. */
  checkIntervalMs: number;
}

export const DEFAULT_ENDPOINT_LIMITS: EndpointLimits = {
  maxConnections: 10_000,
  maxConnectionsPerSource: 32,
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  checkIntervalMs: 1_000,
};

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** The most of an error message a log line quotes (escaped): it may quote what a client sent. */
const MAX_LOGGED_ERROR = 256;
const MAX_DETAIL = 4096;

export type BodyResult = { ok: true; body: Buffer } | { ok: false; reason: 'too-large' | 'aborted' };

/** Reads a request body up to `maxBytes`; stops reading (and says so) as soon as it would be larger. */
export function readBody(stream: Readable, maxBytes: number, declaredLength?: number): Promise<BodyResult> {
  if (declaredLength !== undefined && declaredLength > maxBytes)
    return Promise.resolve({ ok: false, reason: 'too-large' });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult): void => {
      if (done) return;
      done = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buf.length;
      if (size > maxBytes) {
        stream.pause();
        finish({ ok: false, reason: 'too-large' });
        return;
      }
      chunks.push(buf);
    };
    const onEnd = (): void => finish({ ok: true, body: Buffer.concat(chunks, size) });
    const onError = (): void => finish({ ok: false, reason: 'aborted' });
    const onClose = (): void => finish({ ok: false, reason: 'aborted' });
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** A Report from a body: JSON, then the schema (api/parse-json.ts). The error says what is wrong, for a 400. */
export function parseReport(body: Buffer): { ok: true; report: Report } | { ok: false; detail: string } {
  const parsed = parseJson(Report, body.toString('utf8'));
  if (parsed.ok) return { ok: true, report: parsed.value };
  const detail = parsed.reason === 'not-json' ? `not JSON: ${parsed.detail}` : parsed.detail;
  return { ok: false, detail: detail.slice(0, MAX_DETAIL) };
}

type ServerCounter = string;

export class IngestServer {
  /** Responses by `<status> <error>` (e.g. `400 invalid-report`, `200 report`). */
  readonly counters = new Counters<ServerCounter>();
  private readonly server: Server | HttpsServer;
  private readonly log: Logger;
  private readonly polls = new Set<AbortController>();
  private readonly planWaitMs: number;
  private readonly maxBodyBytes: number;
  private readonly limits: EndpointLimits;
  /** Open connections by source address. */
  private readonly perSource = new Map<string, number>();
  private tlsStamp = '';
  private reloadTimer?: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly options: IngestServerOptions) {
    this.log = options.logger ?? silentLogger();
    this.planWaitMs = options.planWaitMs ?? PLAN_WAIT_SECONDS * 1000;
    this.maxBodyBytes = options.maxBodyBytes ?? MAX_REPORT_BYTES;
    const limits = (this.limits = { ...DEFAULT_ENDPOINT_LIMITS, ...options.limits });
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((e: unknown) => this.crashed(res, e));
    };
    const timeouts = {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs),
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    };
    if (options.tls) {
      this.server = createHttpsServer(
        { ...this.readTls(options.tls), ...timeouts, handshakeTimeout: limits.handshakeTimeoutMs },
        handler,
      );
      this.server.on('tlsClientError', (e: Error) =>
        this.log.debug('TLS handshake failed', { [LogField.error]: excerpt(e.message, MAX_LOGGED_ERROR) }),
      );
      const every = options.tlsReloadMs ?? 60_000;
      if (every > 0) {
        this.reloadTimer = setInterval(() => this.reloadTls(), every);
        this.reloadTimer.unref();
      }
    } else if (options.insecureHttp) {
      this.server = createHttpServer(timeouts, handler);
    } else {
      throw new Error('IngestServer needs tls files, or insecureHttp (tests only)');
    }
    // Set again on the server object: the options of createServer did not carry every one in each Node line.
    this.server.headersTimeout = timeouts.headersTimeout;
    this.server.requestTimeout = timeouts.requestTimeout;
    this.server.keepAliveTimeout = timeouts.keepAliveTimeout;
    this.server.maxConnections = limits.maxConnections;
    this.server.on('connection', (socket: Socket) => this.admit(socket));
    this.server.on('clientError', (e: Error & { code?: string }, socket) => {
      const timedOut = e.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      this.counters.inc(timedOut ? '408 timeout' : '400 bad-http');
      this.log.debug('Bad HTTP request', { [LogField.error]: excerpt(e.message, MAX_LOGGED_ERROR) });
      if (socket.writable)
        socket.end(
          timedOut
            ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'
            : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
        );
      socket.destroy();
    });
  }

  /** Open connections from `source` (tests, metrics). */
  connectionsFrom(source: string): number {
    return this.perSource.get(source) ?? 0;
  }

  /** A new TCP connection (before TLS): cut at once when its source holds its share already. */
  private admit(socket: Socket): void {
    const source = socket.remoteAddress ?? '';
    const open = this.perSource.get(source) ?? 0;
    if (open >= this.limits.maxConnectionsPerSource) {
      this.counters.inc('connections-refused');
      socket.destroy();
      return;
    }
    this.perSource.set(source, open + 1);
    socket.once('close', () => {
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left > 0) this.perSource.set(source, left);
      else this.perSource.delete(source);
    });
  }

  listen(port: number, host?: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.server.on('error', (e) =>
          this.log.error('Agent endpoint error', { [LogField.error]: e.message }),
        );
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting; long polls are answered at once, and every answer from now on closes its connection (a
   * keep-alive connection left open would hold `close` for the whole grace); connections still open after the
   * grace are cut.
   */
  async close(): Promise<void> {
    if (this.reloadTimer) clearInterval(this.reloadTimer);
    this.closing = true;
    for (const poll of this.polls) poll.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const grace = setTimeout(() => this.server.closeAllConnections(), this.options.closeGraceMs ?? 5_000);
    grace.unref();
    await closed;
    clearTimeout(grace);
  }

  /** Re-reads the TLS files if they changed. */
  reloadTls(): void {
    const tls = this.options.tls;
    if (!tls || !('setSecureContext' in this.server)) return;
    try {
      const stamp = this.stampOf(tls);
      if (stamp === this.tlsStamp) return;
      this.server.setSecureContext(this.readTls(tls));
      this.log.info('Reloaded the serving certificate', { [LogField.file]: tls.certFile });
    } catch (e) {
      this.log.error('Reloading the serving certificate failed', {
        [LogField.file]: tls.certFile,
        [LogField.error]: e instanceof Error ? e.message : String(e),
      });
    }
  }

  private stampOf(tls: TlsFiles): string {
    return [tls.certFile, tls.keyFile].map((f) => `${statSync(f).mtimeMs}:${statSync(f).size}`).join('|');
  }

  private readTls(tls: TlsFiles): { cert: Buffer; key: Buffer } {
    this.tlsStamp = this.stampOf(tls);
    return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://agent-endpoint');
    } catch {
      return this.fail(req, res, 400, 'invalid-url', 'the request URL does not parse');
    }
    const route = url.pathname === PLAN_PATH ? 'GET' : url.pathname === REPORTS_PATH ? 'POST' : undefined;
    if (!route) return this.fail(req, res, 404, 'not-found', `no route ${url.pathname}`);
    if (req.method !== route) {
      res.setHeader('Allow', route);
      return this.fail(req, res, 405, 'method-not-allowed', `${url.pathname} takes ${route}`);
    }
    if (!this.options.isLeader()) return this.notLeader(req, res);
    const identified = await this.options.authenticator.identify(
      req.headers.authorization,
      req.socket.remoteAddress ?? '',
    );
    if (!identified.ok) {
      if (identified.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
      if (identified.status === 429) res.setHeader('Retry-After', String(identified.retryAfterSeconds ?? 1));
      if (identified.status === 503) res.setHeader('Retry-After', '1');
      return this.fail(req, res, identified.status, identified.reason, identified.message);
    }
    if (route === 'GET') return this.plan(req, res, url, identified.identity);
    return this.report(req, res, identified.identity);
  }

  private async plan(req: IncomingMessage, res: ServerResponse, url: URL, who: AgentIdentity): Promise<void> {
    const node = url.searchParams.get('node') ?? '';
    if (!NODE_NAME.test(node))
      return this.fail(req, res, 400, 'invalid-node', 'query parameter node is required');
    const refused = this.options.authenticator.bind(who, node);
    if (refused) return this.fail(req, res, refused.status, refused.reason, refused.message);
    const version = url.searchParams.get('version') ?? undefined;
    let plan = this.options.plans.get(node);
    if (!plan) {
      res.setHeader('Retry-After', '1');
      return this.fail(req, res, 503, 'no-plan', 'no plan yet: the operator is starting');
    }
    if (version !== undefined && plan.version === version) {
      const poll = new AbortController();
      const hangUp = (): void => {
        if (!res.writableEnded) poll.abort();
      };
      res.on('close', hangUp);
      this.polls.add(poll);
      try {
        await this.options.plans.wait(node, version, this.planWaitMs, poll.signal);
      } catch (e) {
        if (!poll.signal.aborted) throw e;
      } finally {
        this.polls.delete(poll);
        res.off('close', hangUp);
      }
      if (res.destroyed || res.writableEnded) return; // the agent hung up
      if (!this.options.isLeader()) return this.notLeader(req, res);
      plan = this.options.plans.get(node) ?? plan;
    }
    this.send(res, 200, plan, 'plan');
  }

  private async report(req: IncomingMessage, res: ServerResponse, who: AgentIdentity): Promise<void> {
    const declared = req.headers['content-length'];
    const body = await readBody(
      req,
      this.maxBodyBytes,
      declared !== undefined ? Number(declared) : undefined,
    );
    if (!body.ok) {
      if (body.reason === 'aborted') {
        this.counters.inc('aborted');
        return;
      }
      return this.fail(req, res, 400, 'too-large', `a report is at most ${this.maxBodyBytes} bytes`);
    }
    const parsed = parseReport(body.body);
    if (!parsed.ok) return this.fail(req, res, 400, 'invalid-report', parsed.detail);
    const refused = this.options.authenticator.bind(who, parsed.report.node);
    if (refused) return this.fail(req, res, refused.status, refused.reason, refused.message);
    if (!this.options.isLeader()) return this.notLeader(req, res);
    try {
      const answer = await this.options.ingestor.ingest(parsed.report);
      // 207: some records are to be sent again (`retry`), the rest is done (api/agentapi/v1.ts).
      this.send(res, answer.retry ? 207 : 200, answer, 'report');
    } catch (e) {
      if (!(e instanceof IngestFailure)) throw e;
      res.setHeader('Retry-After', '1');
      this.fail(req, res, 503, 'write-failed', e.message);
    }
  }

  private notLeader(req: IncomingMessage, res: ServerResponse): void {
    res.setHeader('Retry-After', '1');
    // Behind a Service, the agent's next connection may reach the leader; a kept-alive one never would.
    res.setHeader('Connection', 'close');
    this.fail(req, res, 503, 'not-leader', 'this replica does not lead; retry');
  }

  private fail(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    error: string,
    detail: string,
  ): void {
    // A request body left unread is not drained (it may be large): the connection closes after the answer.
    if (!req.readableEnded) res.setHeader('Connection', 'close');
    const body: ErrorResponse = { error, detail };
    this.send(res, status, body, error);
    if (status >= 500)
      this.log.warn('Agent request failed', { [LogField.status]: status, [LogField.reason]: error });
    else this.log.debug('Agent request refused', { [LogField.status]: status, [LogField.reason]: error });
  }

  private send(res: ServerResponse, status: number, body: unknown, label: string): void {
    this.counters.inc(`${status} ${label}`);
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    if (this.closing) res.setHeader('Connection', 'close');
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
    });
    res.end(text);
  }

  private crashed(res: ServerResponse, e: unknown): void {
    this.log.error('Agent request handler failed', {
      // A client's bytes may be quoted in an error: an escaped excerpt at most.
      [LogField.error]: excerpt(e instanceof Error ? `${e.name}: ${e.message}` : String(e), MAX_LOGGED_ERROR),
    });
    try {
      if (!res.headersSent && !res.destroyed) {
        res.setHeader('Connection', 'close');
        this.send(
          res,
          500,
          { error: 'internal', detail: 'unexpected error' } satisfies ErrorResponse,
          'internal',
        );
      } else res.destroy();
    } catch {
      res.destroy();
    }
  }
}
