/**
 * A stand-in for the operator's agent endpoints (api/agentapi/v1.ts), for the agent's tests: it serves a plan
 * with the long-poll semantics and takes reports, checking both with the wire's own schemas, and it can be
 * taken down and brought back on the same port, refuse tokens, or answer a chosen status. Plain HTTP, or
 * HTTPS with a certificate from `selfSignedCertificate`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type NodePlan,
  PLAN_PATH,
  REPORTS_PATH,
  type Rejection,
  type RejectionReason,
  Report,
  type Report as ReportType,
  type ReportResponse,
} from '../api/agentapi/v1.js';
import type { AgentRecord } from '../api/records/v1.js';
import { selfSignedCert } from '../e2e/support/credentials.js';

export interface FakeOperatorOptions {
  /** The token agents must present; a function to change it while running. */
  token?: string | (() => string);
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** The long poll's wait when the plan did not change. */
  waitMs?: number;
}

export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  status: number;
}

export class FakeOperator {
  /** Reports answered 200, in order. */
  readonly reports: ReportType[] = [];
  /** Records taken, each (node, boot, seq) once, in the order they came. */
  readonly records: AgentRecord[] = [];
  readonly requests: SeenRequest[] = [];
  /** Bodies refused with 400, and why. */
  readonly refused: { body: string; reason: string }[] = [];
  /** Decides a status before anything else (undefined: the normal answer). */
  override: ((method: string, path: string) => number | undefined) | undefined;
  /** How long a report waits before its answer (a slow operator). */
  reportLatencyMs = 0;
  /**
   * Judges each new record as the operator does: taken (undefined), a permanent rejection (its reason), or not
   * written for now ('retry'). The answer follows: 200, 207 with `retry`, or 503 when every record is retry.
   */
  judge: ((record: AgentRecord) => RejectionReason | 'retry' | undefined) | undefined;
  /** Records answered rejected, in order. */
  readonly rejected: AgentRecord[] = [];
  private plans = new Map<string, NodePlan>();
  private readonly seen = new Set<string>();
  private pollers: (() => void)[] = [];
  private readonly server: http.Server;
  private port = 0;

  private constructor(private readonly options: FakeOperatorOptions) {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    this.server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler);
  }

  static async start(options: FakeOperatorOptions = {}): Promise<FakeOperator> {
    const fake = new FakeOperator(options);
    await fake.up();
    return fake;
  }

  get url(): string {
    return `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** Serves `plan` to its node (or to `forNode`) from now on; waiting polls answer at once. */
  setPlan(plan: NodePlan, forNode = plan.node): void {
    this.plans.set(forNode, plan);
    const pollers = this.pollers;
    this.pollers = [];
    for (const p of pollers) p();
  }

  /** Takes connections (again, on the same port). */
  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Stops answering: closes the port and every open connection. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const p of this.pollers.splice(0)) p();
    await closed;
  }

  private token(): string | undefined {
    const { token } = this.options;
    return typeof token === 'function' ? token() : token;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const answer = (status: number, body: unknown) => {
      this.requests.push({
        method: req.method ?? '',
        path: url.pathname,
        query,
        authorization: req.headers.authorization,
        status,
      });
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const forced = this.override?.(req.method ?? '', url.pathname);
    if (forced !== undefined) return answer(forced, { error: 'forced by the test' });
    const token = this.token();
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`)
      return answer(401, { error: 'bad token' });
    if (req.method === 'GET' && url.pathname === PLAN_PATH) {
      const node = query.node ?? '';
      let plan = this.plans.get(node);
      if (plan && plan.version === query.version) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.options.waitMs ?? 1000);
          this.pollers.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        plan = this.plans.get(node);
      }
      if (!plan) return answer(503, { error: 'no plan for this node yet' });
      return answer(200, plan);
    }
    if (req.method === 'POST' && url.pathname === REPORTS_PATH) {
      if (this.reportLatencyMs > 0) await new Promise((r) => setTimeout(r, this.reportLatencyMs));
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        this.refused.push({ body, reason: 'not JSON' });
        return answer(400, { error: 'not JSON' });
      }
      const parsed = Report.safeParse(json);
      if (!parsed.success) {
        this.refused.push({ body, reason: parsed.error.message });
        return answer(400, { error: 'invalid report', detail: parsed.error.message.slice(0, 2000) });
      }
      let accepted = 0;
      let duplicates = 0;
      const rejected: Rejection[] = [];
      const retry: number[] = [];
      for (const r of parsed.data.records) {
        const key = `${r.node}/${r.boot}/${r.seq}`;
        if (this.seen.has(key)) {
          duplicates++;
          continue;
        }
        const verdict = this.judge?.(r);
        if (verdict === 'retry') {
          retry.push(r.seq);
          continue;
        }
        this.seen.add(key);
        if (verdict !== undefined) {
          rejected.push({ seq: r.seq, reason: verdict });
          this.rejected.push(r);
          continue;
        }
        this.records.push(r);
        accepted++;
      }
      if (retry.length > 0 && retry.length === parsed.data.records.length)
        return answer(503, { error: 'write-failed', detail: 'nothing could be written' });
      this.reports.push(parsed.data);
      const response: ReportResponse = {
        accepted,
        duplicates,
        ...(rejected.length > 0 ? { rejected } : {}),
        ...(retry.length > 0 ? { retry } : {}),
      };
      return answer(retry.length > 0 ? 207 : 200, response);
    }
    return answer(404, { error: 'not found' });
  }
}

/** A key and a self-signed certificate for 127.0.0.1 and localhost (openssl); also its own CA. */
export function selfSignedCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fake-operator-tls-'));
  try {
    const { certFile, keyFile } = selfSignedCert(dir, 'fake-operator');
    return {
      key: readFileSync(keyFile, 'utf8'),
      cert: readFileSync(certFile, 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
