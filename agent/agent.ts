/**
 * The capture engine: hand-offs in, records out.
 *
 *   spool ──> registry (which container, its mount namespace) ──> plan (audited? under which rules)
 *         ──> targets (the files that define readline, by real inode) ──> one bpftrace for all of them
 *   bpftrace line ──> container by mount namespace ──> redaction, alerts ──> record (seq, node, boot)
 *
 * A `runc create` waits (runc-wrapper) until the agent acknowledges its container: the agent acknowledges
 * once the container's probes are attached, or at once when there is nothing to attach, so a shell that is
 * a container's first process loses nothing. Hand-offs are handled in batches: every hand-off present is
 * applied, then the target set changes once, then the batch's creates are acknowledged.
 *
 * Lines from processes in no audited container (the host, unaudited containers) are dropped here and only
 * counted. The agent remembers the containers it audits in its state directory, so after a restart it finds
 * them again (and reports the time it was down as a loss).
 *
 * A plan may change while the agent runs (cluster mode: the operator's plan). `replan()` re-decides every
 * registered container on the loop, between hand-off batches: one newly audited gets its targets resolved and
 * probed (coverage says `late`), one no longer audited loses its probes, one whose rules changed keeps its
 * probes under the new rules. The probes themselves never restart for a plan: they read
 * `probeMaxCommandBytes` (cluster mode: the largest limit a policy may set) and each record is cut to its
 * container's limit; the exec probe starts when a plan first asks for execs and stops when none does.
 *
 * This file is the loop and its I/O (spool, state directory, bpftrace, sink); resolving and pinning the
 * targets is targets/target-resolver.ts. What they decide is in core/ (pure, unit-tested without root):
 * attribution, what becomes of a captured line or exec (the record, or why none, and the counters),
 * plan decisions, batch and acknowledgement order, booking, coverage and loss records, restart state. Wall
 * time and timers come from one injected clock (`AgentOptions.clock`).
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Handoff, parseHandoff } from '../api/handoff/v1.js';
import type { UnstampedRecord } from '../api/records/v1.js';
import { type Clock, realClock, type Timer } from '../common/clock.js';
import { type Logger, LogField } from '../common/logging.js';
import { excerpt } from '../common/text/escape.js';
import { PrivateKeyBlocks } from '../common/rules/key-blocks.js';
import { ExecCapture, type ExecCaptureLoss } from './capture/exec/capture.js';
import type { CapturedExec } from './capture/exec/parse.js';
import { mountNamespaceOf } from './capture/exec/script.js';
import { type CaptureLoss, type KernelDrop, ReadlineCapture } from './capture/readline/capture.js';
import type { CapturedLine } from './capture/readline/parse.js';
import { NsPidLookup } from './containers/proc-status.js';
import { type ContainerRecord, ContainerRegistry } from './containers/registry.js';
import { attribute, type Attribution, type Audited, type Captured } from './core/attribution.js';
import {
  type Counter,
  type Counts,
  type ExecGates,
  type ExecKey,
  execProgramToProbe,
  kernelDropOutcome,
  kernelExecOutcome,
  type LineGates,
  lineOutcome,
  runtimeExecOutcome,
} from './core/commands.js';
import {
  awaitsAcknowledgement,
  createTimes,
  mustAttach,
  readyToAcknowledge,
  resolveWaitMs,
} from './core/batch.js';
import { type CoverageOutput, CoverageBook, resolutionGap } from './core/coverage.js';
import {
  agentDownLoss,
  captureLoss,
  type LossRecordOut,
  monotonicToDate as monotonicAt,
  rateLimitedLoss,
  wrapperDropsLoss,
} from './core/losses.js';
import { execProbeChange, replan } from './core/plan-decisions.js';
import { quote } from './core/quote.js';
import { RecentErrors } from './core/recent-errors.js';
import { FOUND_AGAIN, KNOWN_DIR, rememberedFile, rescanOrder } from './core/restart.js';
import { HEARTBEAT_FILE, HandoffSpool } from './handoff/spool.js';
import { WrapperDrops } from './handoff/wrapper-drops.js';
import { ExecDedup } from './records/exec-dedup.js';
import type { AuditPlan, ContainerAudit } from './plan/plan.js';
import { type DropWindow, type LineLimits, DEFAULT_LINE_LIMITS, LineLimiter } from './records/line-limits.js';
import type { RecordSink } from './records/sink.js';
import { PinnedFiles } from './targets/pin.js';
import { DEFAULT_RESOLVE_LIMITS, type ResolveLimits } from './targets/resolve-budget.js';
import { TargetBook } from './targets/target-book.js';
import { TargetResolver } from './targets/target-resolver.js';

export interface AgentOptions {
  spoolDir: string;
  /** Where the agent remembers the containers it audits (survives an agent restart). */
  stateDir: string;
  plan: AuditPlan;
  /**
   * Bytes the probes read of each line (and argv), when the plan may change while the agent runs: at least
   * any plan's maxCommandBytes, since a probe is not restarted for a plan. Default: plan.maxCommandBytes.
   */
  probeMaxCommandBytes?: number;
  sink: RecordSink;
  logger: Logger;
  bpftrace?: string;
  /** The program that runs the exec script (default: agent/capture/exec/bpftrace-tracefs.sh, see there). */
  execBpftrace?: string;
  /** Bundles must lie under these directories; unset accepts any. */
  bundleRoots?: readonly string[];
  /** The wrapper's ack wait (its ack_timeout_ms): attaching later than this is reported as late. */
  ackWaitMs?: number;
  heartbeatMs?: number;
  /** Fallback poll of the spool, should an inotify event be missed. */
  pollMs?: number;
  procRoot?: string;
  /** What one container's lines and execs may cost (records/line-limits.ts). */
  lineLimits?: Readonly<LineLimits>;
  /** How often drops over those limits are reported, as one `rate-limited` loss per container. */
  lossReportMs?: number;
  /** What resolving readline for one container may cost (targets/resolve-budget.ts). */
  resolveLimits?: Readonly<ResolveLimits>;
  /** Wall time and timers (default: the real ones). */
  clock?: Clock;
}

export interface AgentStats {
  linesCaptured: number;
  commandsRecorded: number;
  execsRecorded: number;
  /** Exec records not written: the other source's twin of one already recorded (records/exec-dedup.ts). */
  execTwinsDropped: number;
  /** Lines from processes in no audited container: dropped, never written. */
  linesDropped: number;
  /** Lines and execs of audited containers over their limits (lineLimits, or the kernel's): reported as losses. */
  rateLimited: number;
  losses: number;
}

/** What the agent tells the operator about itself (api/agentapi/v1.ts AgentState, in part). */
export interface AgentCondition {
  auditedContainers: number;
  /** Files with a readline probe attached now. */
  probesAttached: number;
  /** Recent problems (probes that cannot attach, bpftrace exits, coverage gaps), newest last. */
  errors: { time: Date; message: string }[];
}

/** Problems kept for AgentCondition. */
const RECENT_ERRORS = 16;

export class Agent {
  readonly stats: AgentStats = {
    linesCaptured: 0,
    commandsRecorded: 0,
    execsRecorded: 0,
    execTwinsDropped: 0,
    linesDropped: 0,
    rateLimited: 0,
    losses: 0,
  };
  private readonly spool: HandoffSpool;
  /** A kubectl exec arrives as a hand-off and as a kernel exec: one record for both. */
  private readonly execDedup = new ExecDedup();
  private readonly wrapperDrops: WrapperDrops;
  /** When the wrapper's drop counter was last read (at start: the previous agent's last heartbeat). */
  private wrapperDropsCheckedAt: Date | undefined;
  private wrapperDropsBusy = false;
  private readonly registry: ContainerRegistry;
  private readonly capture: ReadlineCapture;
  /** Only while a rule captures execs. */
  private execCapture: ExecCapture | undefined;
  private readonly book = new TargetBook();
  /** Coverage to report at the next attach, and what was reported by probe (core/coverage.ts). */
  private readonly coverage = new CoverageBook();
  /** The files the probes are on, held open: bpftrace gets their /proc/<pid>/fd paths. */
  private readonly pins = new PinnedFiles();
  /** Resolves readline for the containers audited, pins and books what it finds. */
  private readonly targets: TargetResolver;
  /** Creates waiting for their container's resolutions before their probes are attached and they are acknowledged. */
  private awaitingAck: Handoff[] = [];
  private readonly limiter: LineLimiter;
  private readonly audited = new Map<string, Audited>();
  private readonly nsPids: NsPidLookup;
  private readonly keyBlocks = new PrivateKeyBlocks();
  private watcher: FSWatcher | undefined;
  private readonly clock: Clock;
  private timers: Timer[] = [];
  /** Set by inotify, the poll timer and internal changes; the loop drains whenever it is set. */
  private dirty = true;
  private resolveWake: (() => void) | undefined;
  private loop: Promise<void> = Promise.resolve();
  private running = false;
  private stopped = false;
  /** replan() callers waiting for the loop to re-decide every container. */
  private replanWaiters: (() => void)[] = [];
  private readonly errors: RecentErrors;

  constructor(private readonly options: AgentOptions) {
    const { logger } = options;
    this.clock = options.clock ?? realClock;
    this.errors = new RecentErrors(RECENT_ERRORS, this.clock);
    this.targets = new TargetResolver({
      clock: this.clock,
      logger,
      limits: options.resolveLimits ?? DEFAULT_RESOLVE_LIMITS,
      book: this.book,
      pins: this.pins,
      shellsAudited: (container) => this.shellsAudited(container),
      onGap: (container, audit, gap) =>
        this.writeCoverage([resolutionGap(container, audit, gap, this.now())]),
      onBooked: (p) => this.coverage.add(p),
      onProblem: (message) => this.noteError(message),
      onSettled: () => this.wake(),
    });
    this.wrapperDrops = new WrapperDrops(() => this.spool.droppedByWrapper(), options.stateDir);
    this.spool = new HandoffSpool({
      dir: options.spoolDir,
      logger,
      ...(options.bundleRoots ? { bundleRoots: options.bundleRoots } : {}),
    });
    this.registry = new ContainerRegistry({
      logger,
      ...(options.procRoot ? { procRoot: options.procRoot } : {}),
    });
    this.capture = new ReadlineCapture({
      maxCommandBytes: this.probeBytes,
      ...(options.bpftrace ? { bpftrace: options.bpftrace } : {}),
    });
    this.nsPids = new NsPidLookup(options.procRoot);
    this.limiter = new LineLimiter(options.lineLimits ?? DEFAULT_LINE_LIMITS);
    this.capture.on('line', (line) => this.onLine(line));
    this.capture.on('dropped', (drop) => this.onKernelDrop(drop));
    this.capture.on('loss', (loss) => this.onLoss(loss));
    this.capture.on('rejected', (r) => this.onProbeChange(r.target, r.reason));
    this.capture.on('recovered', (probe) => this.onProbeChange(probe));
    this.capture.on('error', (error) => {
      logger.error('Capture error', { [LogField.error]: error.message });
      this.noteError(`readline capture: ${error.message}`);
    });
    if (options.plan.execs) this.execCapture = this.newExecCapture();
  }

  private get probeBytes(): number {
    return this.options.probeMaxCommandBytes ?? this.options.plan.maxCommandBytes;
  }

  private newExecCapture(): ExecCapture {
    const capture = new ExecCapture({
      hostMntns: hostMountNamespace(this.options.procRoot),
      maxArgvBytes: this.probeBytes,
      ...(this.options.execBpftrace ? { bpftrace: this.options.execBpftrace } : {}),
    });
    capture.on('exec', (exec) => this.onKernelExec(exec));
    capture.on('loss', (loss) => this.onLoss(loss));
    capture.on('error', (error) => {
      this.options.logger.error('Exec capture error', { [LogField.error]: error.message });
      this.noteError(`exec capture: ${error.message}`);
    });
    return capture;
  }

  async start(): Promise<void> {
    const { spoolDir, stateDir, logger } = this.options;
    await this.spool.prepare();
    await mkdir(join(stateDir, KNOWN_DIR), { recursive: true, mode: 0o700 });
    const downSince = await this.previousHeartbeat();
    this.wrapperDropsCheckedAt = downSince;
    this.running = true;
    await this.execCapture?.start();
    await this.rescan(downSince);
    await this.spool.heartbeat();
    this.every(this.options.heartbeatMs ?? 1000, () => void this.spool.heartbeat().catch(() => undefined));
    this.every(this.options.pollMs ?? 1000, () => this.wake());
    this.every(this.options.lossReportMs ?? 1000, () => this.reportDrops());
    this.watcher = watch(spoolDir, () => this.wake());
    this.watcher.on('error', (error) =>
      logger.warn('Spool watch failed', { [LogField.error]: error.message }),
    );
    this.loop = this.run();
    logger.info('Agent started', { [LogField.file]: spoolDir });
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    for (const t of this.timers) t.cancel();
    this.watcher?.close();
    this.wake();
    await this.loop;
    await Promise.all([this.capture.stop(), this.execCapture?.stop()]);
    await this.targets.settle(); // bounded: each resolution by its deadline
    this.reportDrops();
    await this.pins.keepOnly(new Set());
    for (const resolve of this.replanWaiters.splice(0)) resolve();
  }

  /** Calls `tick` every `ms` on the agent's clock, until stop(). */
  private every(ms: number, tick: () => void): void {
    const slot = this.timers.length;
    const arm = (): void => {
      this.timers[slot] = this.clock.setTimer(() => {
        if (this.stopped) return;
        arm();
        tick();
      }, ms);
    };
    arm();
  }

  /**
   * The plan changed: every registered container is decided again, on the loop, after the hand-offs at hand.
   * Resolves once that is done and the probes match (or the agent stopped).
   */
  replan(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.replanWaiters.push(resolve));
    this.wake();
    return done;
  }

  /** For the operator: how many containers are audited, how many files are probed, what went wrong lately. */
  get condition(): AgentCondition {
    return {
      auditedContainers: this.audited.size,
      probesAttached: this.capture.targets.length,
      errors: [...this.errors.list()],
    };
  }

  /** Kept for the agent's state; controls escaped (it may quote a container's paths). */
  private noteError(message: string): void {
    this.errors.add(excerpt(message, 1024));
  }

  private now(): Date {
    return new Date(this.clock.now());
  }

  /**
   * A monotonic time of the probes (bpftrace's nsecs) as wall time on the agent's clock. process.hrtime is not
   * a second clock: it is the probes' own (CLOCK_MONOTONIC), read only to know how long ago `ns` was.
   */
  private monotonicToDate(ns: bigint): Date {
    return monotonicAt(ns, process.hrtime.bigint(), this.clock.now());
  }

  private writeCoverage(outputs: readonly CoverageOutput[]): void {
    for (const { record, error } of outputs) {
      if (error !== undefined) this.noteError(error);
      this.options.sink.write(record);
    }
  }

  private writeLoss(record: LossRecordOut | undefined): void {
    if (!record) return;
    this.options.sink.write(record);
    this.stats.losses++;
  }

  /** The running exec bpftrace, if any. */
  execBpftracePid(): number | undefined {
    return this.execCapture?.bpftracePid();
  }

  /** The running bpftrace (tests kill it). */
  bpftracePid(): number | undefined {
    return this.capture.bpftracePid();
  }

  get probedFiles(): readonly string[] {
    return this.capture.targets;
  }

  // ---- hand-offs ----

  private wake(): void {
    this.dirty = true;
    this.resolveWake?.();
  }

  private async run(): Promise<void> {
    while (this.running) {
      if (!this.dirty) await new Promise<void>((resolve) => (this.resolveWake = resolve));
      this.dirty = false;
      if (!this.running) break;
      const replanned = this.replanWaiters.splice(0);
      try {
        const creates: Handoff[] = [];
        await this.spool.drain(async (h) => {
          if (await this.apply(h)) creates.push(h);
        });
        if (replanned.length > 0) await this.reevaluate(creates);
        // Resolutions are quick but for a hostile image (bounded by its budget): wait a little for all, then
        // attach and acknowledge the containers whose resolutions are done; the others follow when theirs are.
        await this.targets.settle(resolveWaitMs(replanned.length > 0));
        const { ready, waiting } = readyToAcknowledge(this.awaitingAck, creates, this.targets.containers());
        this.awaitingAck = waiting;
        if (mustAttach(ready, this.coverage.hasPending, this.book.files(), this.capture.requested))
          await this.attach(ready);
      } catch (error) {
        const message = quote(String(error));
        this.options.logger.error('Hand-off batch failed', { [LogField.error]: message });
        this.noteError(`hand-off batch failed: ${message}`);
      }
      for (const resolve of replanned) resolve();
    }
  }

  /** After a plan change: audits, stops auditing or re-rules each registered container; the exec probe follows. */
  private async reevaluate(creates: readonly Handoff[]): Promise<void> {
    const { logger, plan } = this.options;
    const inBatch = new Set(creates.map((h) => h.id));
    for (const change of replan(plan, this.registry.all(), this.audited, inBatch)) {
      const { container } = change;
      switch (change.action) {
        case 'stop':
          this.audited.delete(container.id);
          this.book.remove(container.id);
          logger.info('Container no longer audited', {
            [LogField.containerId]: container.id,
            [LogField.reason]: change.reason,
          });
          break;
        case 'audit':
          this.startAuditing(container, change.audit, 'audited from a new plan', change.late);
          break;
        case 'rerule':
          this.audited.set(container.id, { container, audit: change.audit });
          if (change.shells === 'drop-shells') this.book.remove(container.id);
          else if (change.shells === 'add-shells')
            this.targets.add(
              container,
              container.bashCandidates,
              'shells audited from a new plan',
              change.late,
            );
          break;
      }
    }
    const exec = execProbeChange(plan, this.execCapture !== undefined);
    if (exec === 'start') {
      try {
        const capture = this.newExecCapture();
        await capture.start();
        this.execCapture = capture;
      } catch (error) {
        logger.error('Cannot start the exec probe', { [LogField.error]: (error as Error).message });
        this.noteError(`exec probe: ${(error as Error).message}`);
      }
    } else if (exec === 'stop' && this.execCapture) {
      const capture = this.execCapture;
      this.execCapture = undefined;
      await capture.stop();
    }
  }

  /** Applies one hand-off; true for a create to acknowledge after the batch's attach. */
  private async apply(h: Handoff): Promise<boolean> {
    const outcome = await this.registry.onHandoff(h);
    switch (h.verb) {
      case 'create':
      case 'run': {
        const container = this.registry.byId(h.id);
        if (outcome.ok && container) {
          await this.remember(h);
          this.audit(container, `${h.verb} of the container`);
        }
        return awaitsAcknowledgement(h);
      }
      case 'exec':
        // A short program may be gone before the agent looks (the registry then cannot check its pid): the
        // hand-off alone, from the root-owned spool, still says it ran in that container.
        if (outcome.ok || outcome.reason === 'process-gone') this.onExec(h);
        return false;
      case 'delete':
        if (!this.registry.byId(h.id)) await this.forget(h.id);
        return false;
    }
  }

  /** Decides whether a registered container is audited and, if so, what to probe for it. */
  private audit(container: ContainerRecord, why: string, late = false): void {
    const decision = this.options.plan.auditOf(container);
    if (!decision.audited) {
      this.options.logger.info('Container not audited', {
        [LogField.containerId]: container.id,
        [LogField.reason]: decision.reason,
      });
      return;
    }
    this.startAuditing(container, decision.audit, why, late);
  }

  private startAuditing(container: ContainerRecord, audit: ContainerAudit, why: string, late = false): void {
    this.audited.set(container.id, { container, audit });
    if (audit.interactiveShells) this.targets.add(container, container.bashCandidates, why, late);
  }

  /** The container's audit now, if it still audits its shells (it may be gone, or re-planned, meanwhile). */
  private shellsAudited(container: ContainerRecord): ContainerAudit | undefined {
    const entry = this.audited.get(container.id);
    return entry?.container === container && entry.audit.interactiveShells ? entry.audit : undefined;
  }

  /** A probe left out (with why) or brought back after its coverage was reported. */
  private onProbeChange(probe: string, reason?: string): void {
    this.writeCoverage(
      this.coverage.probeChanged(probe, reason, (id) => this.audited.get(id)?.container, this.now()),
    );
  }

  /** Probes the booked targets, then acknowledges the batch's creates and reports coverage. */
  private async attach(creates: readonly Handoff[]): Promise<void> {
    const files = this.book.files();
    this.coverage.keepProbes(files);
    // Probes the capture could not attach, with why: the others are attached; these are retried.
    let left = new Map<string, string>();
    try {
      const outcome = await this.capture.setTargets(files);
      left = new Map(outcome.rejected.map((r) => [r.target, r.reason]));
    } catch (error) {
      this.options.logger.error('Cannot attach the readline probes', {
        [LogField.error]: (error as Error).message,
        [LogField.detail]: files,
      });
      this.noteError(`cannot attach the readline probes: ${(error as Error).message}`);
      this.writeCoverage(this.coverage.attachFailed((error as Error).message, this.now()));
    }
    // bpftrace no longer asks for the files no container holds: their pins may go (pin.ts).
    await this.pins.keepOnly(this.book.keys());
    this.writeCoverage(
      this.coverage.attached(left, createTimes(creates), this.options.ackWaitMs ?? 2000, this.now()),
    );
    for (const h of creates) {
      await this.spool.acknowledge(h.id).catch((error: unknown) =>
        this.options.logger.warn('Cannot acknowledge', {
          [LogField.containerId]: h.id,
          [LogField.error]: String(error),
        }),
      );
    }
  }

  /**
   * A `runc exec` (kubectl exec): recorded when the policy captures execs, since it may never reach a shell;
   * and a shell exec'd from a path not seen at create is probed from now on.
   */
  private onExec(h: Handoff): void {
    const entry = this.audited.get(h.id);
    const outcome = runtimeExecOutcome(h, entry, (key) => this.firstOfTwins(key));
    if ('write' in outcome) this.options.sink.write(outcome.write);
    this.count(outcome.counts);
    const program = execProgramToProbe(h, entry);
    if (entry && program)
      this.targets.add(
        entry.container,
        [program],
        `attached when an exec of ${quote(program)} was handed off`,
      );
  }

  // ---- restarts ----

  /** Keeps the create hand-off of a container, so that a restarted agent finds it again. */
  private async remember(h: Handoff): Promise<void> {
    await writeFile(join(this.options.stateDir, KNOWN_DIR, rememberedFile(h.id)), JSON.stringify(h), {
      mode: 0o600,
    });
  }

  private async forget(id: string): Promise<void> {
    const drops = this.limiter.forget(id);
    if (drops) this.reportDrop(drops);
    this.audited.delete(id);
    const gone = this.book.remove(id);
    if (gone.length > 0) this.dirty = true; // the loop re-checks the target set after this batch
    await rm(join(this.options.stateDir, KNOWN_DIR, rememberedFile(id)), { force: true });
    await this.spool.release(id);
  }

  private async previousHeartbeat(): Promise<Date | undefined> {
    try {
      return (await stat(join(this.options.spoolDir, HEARTBEAT_FILE))).mtime;
    } catch {
      return undefined;
    }
  }

  /** Re-registers the containers a previous agent audited; those gone are forgotten. */
  private async rescan(downSince: Date | undefined): Promise<void> {
    const dir = join(this.options.stateDir, KNOWN_DIR);
    let found = 0;
    for (const name of rescanOrder(await readdir(dir))) {
      const path = join(dir, name);
      const parsed = parseHandoff(await readFile(path, 'utf8').catch(() => ''), {
        ...(this.options.bundleRoots ? { bundleRoots: this.options.bundleRoots } : {}),
      });
      if (!parsed.ok) {
        await rm(path, { force: true });
        continue;
      }
      const outcome = await this.registry.onHandoff(parsed.handoff);
      const container = this.registry.byId(parsed.handoff.id);
      if (!outcome.ok || !container) {
        await rm(path, { force: true });
        continue;
      }
      found++;
      this.audit(container, FOUND_AGAIN);
    }
    if (found > 0) {
      await this.targets.settle();
      await this.attach([]);
      this.writeLoss(agentDownLoss(found, downSince, this.now()));
    }
  }

  // ---- captured lines ----

  /**
   * A line of an audited shell becomes a record, unless its container is over its limits (records/line-limits.ts):
   * then it is counted, and reported as a loss (core/commands.ts decides). The work a line takes is charged
   * to its container.
   */
  private onLine(line: CapturedLine): void {
    const outcome = lineOutcome(line, this.attribution(line.mntns, 'line'), this.lineGates);
    if ('write' in outcome) this.write(outcome.write, outcome.containerId);
    this.count(outcome.counts);
  }

  /**
   * The loop's answers to the core's questions about a line or an exec, made once (not per event: they sit on
   * the hot path). performance.now() (monotonic) marks when the limiter admitted the event, so that `write`
   * charges the container what the event cost: a duration; the clock dates the drops.
   */
  private workStarted = 0;
  private readonly lineGates: LineGates = {
    overLimit: (id) => this.admit(id, 'line'),
    inKeyBlock: (shell, text) => this.keyBlocks.inside(shell, text),
    time: (ns) => this.monotonicToDate(ns),
    nsPid: (pid, mntns) => this.nsPids.of(pid, mntns),
  };
  private readonly execGates: ExecGates = {
    overLimit: (id) => this.admit(id, 'exec'),
    firstOfTwins: (key) => this.firstOfTwins(key),
    time: (ns) => this.monotonicToDate(ns),
    nsPid: (pid, mntns) => this.nsPids.of(pid, mntns),
  };

  /** True when the container is over its limits for one more line or exec; else marks the work's start. */
  private admit(containerId: string, kind: 'line' | 'exec'): boolean {
    this.workStarted = performance.now();
    return this.limiter.admit(containerId, kind, this.workStarted, this.clock.now()) !== undefined;
  }

  /**
   * Lines a container's shells returned that the probe counted instead of printing, over the container's
   * kernel budget (capture/readline/script.ts): reported with its other drops, as a `rate-limited` loss.
   */
  private onKernelDrop(drop: KernelDrop): void {
    const outcome = kernelDropOutcome(drop, this.attribution(drop.mntns, 'line'));
    this.count(outcome.counts);
    if (outcome.containerId === undefined) return;
    this.limiter.droppedInKernel(
      outcome.containerId,
      drop.lines,
      drop.bytes,
      performance.now(),
      this.clock.now(),
    );
  }

  private onKernelExec(exec: CapturedExec): void {
    const outcome = kernelExecOutcome(exec, this.attribution(exec.mntns, 'exec'), this.execGates);
    if ('write' in outcome) this.write(outcome.write, outcome.containerId);
    this.count(outcome.counts);
  }

  /** Writes a record of a captured event and charges its container what it took since the limiter admitted it. */
  private write(record: UnstampedRecord, containerId: string): void {
    this.options.sink.write(record);
    const done = performance.now();
    this.limiter.charge(containerId, done - this.workStarted, done);
  }

  private count(counts: Counts): void {
    for (const [counter, n] of Object.entries(counts) as [Counter, number][]) this.stats[counter] += n;
  }

  /** Which audited container a line or exec of mount namespace `mntns` belongs to, if any (core/attribution.ts). */
  private attribution(mntns: number, kind: Captured): Attribution {
    return attribute(this.registry.byMntns(mntns), this.audited, kind);
  }

  /** False for the other source's view of an exec already recorded (records/exec-dedup.ts). */
  private firstOfTwins(key: ExecKey): boolean {
    return this.execDedup.admit(key.containerId, key.pid, key.firstArg, key.source, this.clock.now());
  }

  /** The drops over the line limits since the last report: one `rate-limited` loss per container. */
  private reportDrops(): void {
    for (const window of this.limiter.takeDrops()) this.reportDrop(window);
    void this.reportWrapperDrops();
  }

  /** Hand-offs the wrapper dropped since the last check (handoff/wrapper-drops.ts) become one loss record. */
  private async reportWrapperDrops(): Promise<void> {
    if (this.wrapperDropsBusy) return; // one read at a time: two would report the same drops twice
    this.wrapperDropsBusy = true;
    const since = this.wrapperDropsCheckedAt;
    const until = this.now();
    this.wrapperDropsCheckedAt = until;
    const count = await this.wrapperDrops.take().catch(() => 0);
    this.wrapperDropsBusy = false;
    this.writeLoss(wrapperDropsLoss(count, since, until, this.now()));
  }

  private reportDrop(window: DropWindow): void {
    this.writeLoss(
      rateLimitedLoss(window, this.audited.get(window.key), this.limiter.describe(window), this.now()),
    );
  }

  private onLoss(loss: CaptureLoss | ExecCaptureLoss): void {
    if (loss.reason === 'bpftrace-exited') this.noteError(`bpftrace exited: ${loss.detail ?? ''}`);
    this.writeLoss(captureLoss(loss, (ns) => this.monotonicToDate(ns), this.now()));
  }
}

/**
 * The host's mount namespace, whose execs never leave the kernel: pid 1's (the agent runs with hostPID), or
 * the agent's own where pid 1 cannot be inspected (a standalone agent on the host shares the host's).
 */
function hostMountNamespace(procRoot?: string): number {
  try {
    return mountNamespaceOf(1, procRoot);
  } catch {
    return mountNamespaceOf('self', procRoot);
  }
}
