/**
 * Keeps this node's plan current: a long poll on the operator's GET /v1/plan?node=N&version=V
 * (api/agentapi/v1.ts), which answers at once when the plan is not V any more, else when it changes, else
 * after PLAN_WAIT_SECONDS with the same plan.
 *
 *   200, a valid plan for this node, a new version   kept, written to <stateDir>/plan.json, emitted as 'plan'
 *   200, the same version                            polled again at once (the operator did the waiting)
 *   200, not a valid plan (or another node's)        ignored: the last plan stays in force; counted, logged
 *   401, 403, 503, other, no answer                  the last plan stays in force; retried with backoff
 *
 * The plan on disk is what a restarted agent audits by until the operator answers again, so an operator
 * outage never stops auditing. It is validated like an answer (it is a file others could have written).
 */
import { EventEmitter } from 'node:events';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NodePlan, PLAN_PATH, PLAN_WAIT_SECONDS } from '../../api/agentapi/v1.js';
import { parseJson } from '../../api/parse-json.js';
import { type Logger, LogField } from '../../common/logging.js';
import { Backoff, type BackoffPolicy } from '../../common/backoff.js';
import { realClock, sleep } from '../../common/clock.js';
import { RecentErrors } from '../core/recent-errors.js';
import { OPERATOR_RETRY_BACKOFF, type OperatorClient, errorText } from './operator-client.js';

export const PLAN_FILE = 'plan.json';

export interface PlanClientOptions {
  client: OperatorClient;
  node: string;
  /** Where the last plan is kept across restarts. */
  stateDir: string;
  logger: Logger;
  /** Over OPERATOR_RETRY_BACKOFF (operator-client.ts). */
  backoff?: Partial<BackoffPolicy>;
  /** How long a poll may take beyond the operator's wait. */
  pollMarginMs?: number;
  /** Shortest time between two polls that returned the same version (guards against a server that does not wait). */
  minPollIntervalMs?: number;
}

export interface PlanClientEvents {
  plan: [plan: NodePlan];
}

export interface PlanClientStats {
  /** Answers with a new version. */
  plans: number;
  /** Answers that were not a valid plan for this node. */
  invalid: number;
  /** Polls without an answer, or with a status other than 200. */
  failures: number;
}

export class PlanClient extends EventEmitter<PlanClientEvents> {
  readonly stats: PlanClientStats = { plans: 0, invalid: 0, failures: 0 };
  readonly errors = new RecentErrors(4);
  private plan: NodePlan | undefined;
  /** The operator has answered with a valid plan (new or the same) since this client started. */
  private answered = false;
  private readonly backoff: Backoff;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: PlanClientOptions) {
    super();
    this.backoff = new Backoff({ ...OPERATOR_RETRY_BACKOFF, ...options.backoff });
  }

  get current(): NodePlan | undefined {
    return this.plan;
  }

  /**
   * Undefined once the operator has answered with a plan in this run (the agent's readiness); otherwise why
   * not yet. A kept plan from an earlier run does not count: it may be stale. Later outages do not undo it:
   * the agent goes on auditing with the plan it has.
   */
  get notReadyReason(): string | undefined {
    if (this.answered) return undefined;
    const last = this.errors.list().at(-1);
    return `no plan from the operator yet${last ? ` (last: ${last.message})` : ''}`;
  }

  private get file(): string {
    return join(this.options.stateDir, PLAN_FILE);
  }

  /** The plan a previous run kept, if it is valid and this node's (it becomes the current plan). */
  async loadPersisted(): Promise<NodePlan | undefined> {
    const { logger } = this.options;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return undefined;
    }
    const parsed = this.check(text);
    if (!parsed.ok) {
      logger.warn('Ignoring the kept node plan', {
        [LogField.file]: this.file,
        [LogField.reason]: parsed.detail,
      });
      return undefined;
    }
    this.plan = parsed.plan;
    logger.info('Using the kept node plan until the operator answers', {
      [LogField.file]: this.file,
      [LogField.detail]: { version: parsed.plan.version, containers: parsed.plan.containers.length },
    });
    return parsed.plan;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  private check(text: string): { ok: true; plan: NodePlan } | { ok: false; detail: string } {
    const parsed = parseJson(NodePlan, text);
    if (!parsed.ok) return { ok: false, detail: parsed.detail };
    if (parsed.value.node !== this.options.node)
      return { ok: false, detail: `a plan for node ${parsed.value.node}, not ${this.options.node}` };
    return { ok: true, plan: parsed.value };
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      const started = Date.now();
      const outcome = await this.poll(signal);
      if (signal.aborted) break;
      if (outcome === 'failed') {
        this.stats.failures++;
        await sleep(realClock, this.backoff.next(), signal);
        continue;
      }
      if (outcome === 'invalid') {
        // The operator answers at once while our version differs from its own: no hot loop on a bad plan.
        await sleep(realClock, this.backoff.next(), signal);
        continue;
      }
      this.backoff.reset();
      if (outcome === 'same') {
        const waited = Date.now() - started;
        const min = this.options.minPollIntervalMs ?? 1000;
        if (waited < min) await sleep(realClock, min - waited, signal);
      }
    }
  }

  /** One long poll. */
  private async poll(signal: AbortSignal): Promise<'new' | 'same' | 'invalid' | 'failed'> {
    const { client, node, logger } = this.options;
    let response;
    try {
      response = await client.request(
        'GET',
        PLAN_PATH,
        { node, version: this.plan?.version },
        { timeoutMs: PLAN_WAIT_SECONDS * 1000 + (this.options.pollMarginMs ?? 15_000), signal },
      );
    } catch (error) {
      if (signal.aborted) return 'failed';
      this.failed(`cannot reach the operator for the plan: ${(error as Error).message}`);
      return 'failed';
    }
    if (response.status !== 200) {
      this.failed(`the operator answered ${response.status} for the plan: ${errorText(response.body)}`);
      return 'failed';
    }
    const parsed = this.check(response.body);
    if (!parsed.ok) {
      this.stats.invalid++;
      const message = `the operator sent a plan that is not valid; keeping version ${this.plan?.version ?? '(none)'}: ${parsed.detail}`;
      this.errors.add(message.slice(0, 1024));
      logger.error('Invalid node plan', { [LogField.reason]: parsed.detail.slice(0, 4096) });
      return 'invalid';
    }
    this.answered = true;
    if (parsed.plan.version === this.plan?.version) return 'same';
    this.plan = parsed.plan;
    this.stats.plans++;
    logger.info('New node plan', {
      [LogField.detail]: {
        version: parsed.plan.version,
        policies: Object.keys(parsed.plan.policies).length,
        containers: parsed.plan.containers.length,
      },
    });
    await this.persist(JSON.stringify(parsed.plan));
    this.emit('plan', parsed.plan);
    return 'new';
  }

  private failed(message: string): void {
    // The first failure of a run is worth a warning; the rest only at debug, or a long outage floods logs.
    const level = this.backoff.attempts === 0 ? 'warn' : 'debug';
    this.options.logger.log(level, 'Plan poll failed', { [LogField.error]: message });
    this.errors.add(message.slice(0, 1024));
  }

  private async persist(text: string): Promise<void> {
    const tmp = `${this.file}.tmp`;
    try {
      await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
      await writeFile(tmp, text, { mode: 0o600 });
      await rename(tmp, this.file);
    } catch (error) {
      this.options.logger.warn('Cannot keep the node plan', {
        [LogField.file]: this.file,
        [LogField.error]: (error as Error).message,
      });
    }
  }
}
