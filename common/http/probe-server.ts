/**
 * A probe and metrics endpoint: plain HTTP on its own port, apart from any authenticated API, so that kubelet
 * probes and Prometheus need no client certificates or tokens. The operator serves one (default 8081, beside
 * the agents' HTTPS API), and so does the agent (the chart's readiness probe).
 *
 * - `/healthz`: 200 while the process can answer at all (liveness).
 * - `/readyz`: 200 when every readiness check passes (informers synced); otherwise 503 with one line per
 *   reason, so `kubectl describe pod` shows why.
 * - `/metrics`: the registry in Prometheus text format, version 0.0.4 (404 without one).
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LogField, type Logger, silentLogger } from '../logging.js';

/** Prometheus' text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What /metrics serves: a prom-client registry (the operator's, operator/runtime/metrics.ts). */
export interface MetricsSource {
  /** The exposition text, read at scrape time. */
  metrics(): Promise<string>;
}

export const DEFAULT_PROBE_PORT = 8081;

/** Undefined when ready; otherwise why not. */
export type ReadinessCheck = () => string | undefined;

export interface ProbeServerOptions {
  registry?: MetricsSource;
  readinessChecks?: readonly ReadinessCheck[];
  /** Default 8081; 0 picks a free port (tests). */
  port?: number;
  /** Default: all interfaces (kubelet probes the pod IP). */
  host?: string;
  logger?: Logger;
  /** After this, `close` cuts connections still open (default 5 s). */
  closeGraceMs?: number;
}

const TEXT = 'text/plain; charset=utf-8';

export class ProbeServer {
  private readonly server: Server;
  private readonly logger: Logger;

  constructor(private readonly options: ProbeServerOptions) {
    this.logger = options.logger ?? silentLogger();
    this.server = createServer((request, response) => this.handle(request, response));
    // Probes are tiny; a client that sends nothing for long is not a probe.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 10_000;
  }

  /** Starts listening; resolves with the port (useful with port 0). */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(this.options.port ?? DEFAULT_PROBE_PORT, this.options.host, () => {
        this.server.off('error', onError);
        const port = (this.server.address() as AddressInfo).port;
        this.logger.info('Serving probes and metrics', { [LogField.port]: port });
        resolve(port);
      });
    });
  }

  /** Stops accepting connections, lets answers in progress finish, then closes whatever is left. */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      const cut = setTimeout(() => this.server.closeAllConnections(), this.options.closeGraceMs ?? 5_000);
      this.server.close(() => {
        clearTimeout(cut);
        resolve();
      });
      // Keep-alive connections with no request in flight (a scraper's) would hold close() forever.
      this.server.closeIdleConnections();
    });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return this.reply(response, request, 405, TEXT, 'method not allowed\n', { Allow: 'GET, HEAD' });
    }
    switch (path) {
      case '/healthz':
        return this.reply(response, request, 200, TEXT, 'ok\n');
      case '/readyz': {
        const reasons = this.notReady();
        return reasons.length === 0
          ? this.reply(response, request, 200, TEXT, 'ok\n')
          : this.reply(response, request, 503, TEXT, reasons.map((r) => `${r}\n`).join(''));
      }
      case '/metrics': {
        const registry = this.options.registry;
        if (!registry) return this.reply(response, request, 404, TEXT, 'not found\n');
        void registry.metrics().then(
          (text) => this.reply(response, request, 200, METRICS_CONTENT_TYPE, text),
          (error: unknown) => {
            this.logger.error('Rendering metrics failed', { [LogField.error]: String(error) });
            this.reply(response, request, 500, TEXT, 'metrics unavailable\n');
          },
        );
        return;
      }
      default:
        return this.reply(response, request, 404, TEXT, 'not found\n');
    }
  }

  private notReady(): string[] {
    const reasons: string[] = [];
    for (const check of this.options.readinessChecks ?? []) {
      try {
        const reason = check();
        if (reason !== undefined) reasons.push(reason);
      } catch (error) {
        reasons.push(`readiness check failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return reasons;
  }

  private reply(
    response: ServerResponse,
    request: IncomingMessage,
    status: number,
    contentType: string,
    body: string,
    headers: Record<string, string> = {},
  ): void {
    const bytes = Buffer.from(body, 'utf8');
    response.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': bytes.length,
      'Cache-Control': 'no-store',
      ...headers,
    });
    response.end(request.method === 'HEAD' ? undefined : bytes);
  }
}
