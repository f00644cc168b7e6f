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
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Handoff, parseHandoff } from '../api/handoff/v1.js';
import { recordText } from '../api/records/text.js';
import type { LossRecord } from '../api/records/v1.js';
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
import { HEARTBEAT_FILE, HandoffSpool } from './handoff/spool.js';
import { WrapperDrops } from './handoff/wrapper-drops.js';
import { ExecDedup, type ExecSource } from './records/exec-dedup.js';
import type { AuditPlan, ContainerAudit } from './plan/plan.js';
import { commandRecord, containerRef, execArgvFields, recordContainerId } from './records/build.js';
import { type DropWindow, type LineLimits, DEFAULT_LINE_LIMITS, LineLimiter } from './records/line-limits.js';
import type { RecordSink } from './records/sink.js';
import { realFileOf } from './targets/overlay.js';
import { PinnedFiles } from './targets/pin.js';
import {
  type ReadlineFactsCache,
  type ReadlineResolution,
  resolveReadlineTargets,
} from './targets/resolve.js';
import { DEFAULT_RESOLVE_LIMITS, FileFactsCache, type ResolveLimits } from './targets/resolve-budget.js';
import { MAX_TARGETS_PER_CONTAINER, type ProbeTarget, TargetBook } from './targets/target-book.js';

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

interface Audited {
  container: ContainerRecord;
  audit: ContainerAudit;
}

const KNOWN_DIR = 'containers';

/** What was reported of one probe in one container. */
interface ProbeCoverage {
  container: ContainerRecord;
  audit: ContainerAudit;
  target: ProbeTarget & { bash: string; via: 'bash' | 'libreadline' };
}

/** Container-controlled text quoted in logs and in the agent's state is cut to this (escaped). */
const QUOTE_CHARS = 200;

/** A resolution past its deadline by this much is given up even if a file operation hangs. */
const RESOLVE_TIMEOUT_GRACE_MS = 250;

/**
 * How long a batch waits for its resolutions before attaching those done: enough for any real image (a few
 * ms), so one batch normally starts one bpftrace; a resolution still going then is a hostile image's.
 */
const RESOLVE_WAIT_MS = 100;

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
  /** The files the probes are on, held open: bpftrace gets their /proc/<pid>/fd paths. */
  private readonly pins = new PinnedFiles();
  /** What files are (ELF, readline), by identity, across resolutions. */
  private readonly resolveCache: ReadlineFactsCache = new FileFactsCache();
  /** Resolutions under way, with the container each is for. */
  private readonly resolving = new Map<Promise<void>, string>();
  /** Creates waiting for their container's resolutions before their probes are attached and they are acknowledged. */
  private awaitingAck: Handoff[] = [];
  private readonly limiter: LineLimiter;
  private readonly audited = new Map<string, Audited>();
  private readonly nsPids: NsPidLookup;
  private readonly keyBlocks = new PrivateKeyBlocks();
  private watcher: FSWatcher | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** Set by inotify, the poll timer and internal changes; the loop drains whenever it is set. */
  private dirty = true;
  private resolveWake: (() => void) | undefined;
  private loop: Promise<void> = Promise.resolve();
  private running = false;
  private stopped = false;
  /** replan() callers waiting for the loop to re-decide every container. */
  private replanWaiters: (() => void)[] = [];
  private readonly errors: { time: Date; message: string }[] = [];

  constructor(private readonly options: AgentOptions) {
    const { logger } = options;
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
    this.timers.push(
      setInterval(() => void this.spool.heartbeat().catch(() => undefined), this.options.heartbeatMs ?? 1000),
      setInterval(() => this.wake(), this.options.pollMs ?? 1000),
      setInterval(() => this.reportDrops(), this.options.lossReportMs ?? 1000),
    );
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
    for (const t of this.timers) clearInterval(t);
    this.watcher?.close();
    this.wake();
    await this.loop;
    await Promise.all([this.capture.stop(), this.execCapture?.stop()]);
    await this.settle(); // bounded: each resolution by its deadline
    this.reportDrops();
    await this.pins.keepOnly(new Set());
    for (const resolve of this.replanWaiters.splice(0)) resolve();
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
      errors: [...this.errors],
    };
  }

  /** Kept for the agent's state; controls escaped (it may quote a container's paths). */
  private noteError(message: string): void {
    this.errors.push({ time: new Date(), message: excerpt(message, 1024) });
    if (this.errors.length > RECENT_ERRORS) this.errors.splice(0, this.errors.length - RECENT_ERRORS);
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
        await this.settle(replanned.length > 0 ? Infinity : RESOLVE_WAIT_MS);
        this.awaitingAck.push(...creates);
        const waiting = new Set(this.resolving.values());
        const ready = this.awaitingAck.filter((h) => !waiting.has(h.id));
        this.awaitingAck = this.awaitingAck.filter((h) => waiting.has(h.id));
        if (
          ready.length > 0 ||
          this.pendingCoverage.length > 0 ||
          this.book.files().join('\n') !== this.capture.requested.join('\n')
        )
          await this.attach(ready);
      } catch (error) {
        const message = excerpt(String(error), QUOTE_CHARS);
        this.options.logger.error('Hand-off batch failed', { [LogField.error]: message });
        this.noteError(`hand-off batch failed: ${message}`);
      }
      for (const resolve of replanned) resolve();
    }
  }

  /** After a plan change: audits, stops auditing or re-rules each registered container; the exec probe follows. */
  private async reevaluate(creates: readonly Handoff[]): Promise<void> {
    const { logger, plan } = this.options;
    for (const container of this.registry.all()) {
      const before = this.audited.get(container.id);
      const decision = plan.auditOf(container);
      // A container may have run unprobed until now, unless its create waits in this very batch.
      const late = !creates.some((h) => h.id === container.id);
      if (!decision.audited) {
        if (!before) continue;
        this.audited.delete(container.id);
        this.book.remove(container.id);
        logger.info('Container no longer audited', {
          [LogField.containerId]: container.id,
          [LogField.reason]: decision.reason,
        });
        continue;
      }
      const { audit } = decision;
      if (!before) {
        this.audit(container, 'audited from a new plan', late);
        continue;
      }
      if (before.audit === audit) continue;
      this.audited.set(container.id, { container, audit });
      if (before.audit.interactiveShells && !audit.interactiveShells) this.book.remove(container.id);
      else if (!before.audit.interactiveShells && audit.interactiveShells)
        this.addTargets(container, container.bashCandidates, 'shells audited from a new plan', late);
    }
    if (plan.execs && !this.execCapture) {
      try {
        const capture = this.newExecCapture();
        await capture.start();
        this.execCapture = capture;
      } catch (error) {
        logger.error('Cannot start the exec probe', { [LogField.error]: (error as Error).message });
        this.noteError(`exec probe: ${(error as Error).message}`);
      }
    } else if (!plan.execs && this.execCapture) {
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
        return h.verb === 'create';
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
    const { audit } = decision;
    this.audited.set(container.id, { container, audit });
    if (audit.interactiveShells) this.addTargets(container, container.bashCandidates, why, late);
  }

  /**
   * Starts resolving readline for the candidates; the batch attaches once every resolution it started is
   * done (settle). They run side by side, each within its budget (resolveLimits, and a timer should a file
   * operation itself hang), so a container whose image makes resolving costly holds up the others' probes and
   * acknowledgements by that budget at most. Gaps become coverage records when the resolution is done.
   */
  private addTargets(
    container: ContainerRecord,
    candidates: readonly string[],
    why: string,
    /** Reported late even when its probe was attached already (the container ran unaudited until now). */
    late = false,
  ): void {
    const limits = this.options.resolveLimits ?? DEFAULT_RESOLVE_LIMITS;
    const resolution = resolveReadlineTargets(container.rootfs, candidates, {
      limits,
      cache: this.resolveCache,
    });
    const timeoutMs = limits.deadlineMs + RESOLVE_TIMEOUT_GRACE_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<ReadlineResolution[]>((resolve) => {
      timer = setTimeout(
        () =>
          resolve([
            {
              kind: 'coverage',
              bash: candidates[0] ?? 'bash',
              reason: `gave up looking for readline: the search did not end within ${timeoutMs} ms`,
            },
          ]),
        timeoutMs,
      );
    });
    const done: Promise<void> = Promise.race([resolution, timedOut])
      .then((resolved) => this.bookTargets(container, candidates, why, late, resolved))
      .catch((error: unknown) => {
        const message = excerpt(String(error), QUOTE_CHARS);
        this.options.logger.error('Cannot resolve readline', {
          [LogField.containerId]: container.id,
          [LogField.error]: message,
        });
        this.noteError(`container ${container.id}: cannot resolve readline: ${message}`);
      })
      .finally(() => {
        clearTimeout(timer);
        this.resolving.delete(done);
        this.wake(); // its container's probes and acknowledgement, if they wait for it
      });
    this.resolving.set(done, container.id);
  }

  /** Waits for the resolutions under way (and those started meanwhile), at most `maxWaitMs`. */
  private async settle(maxWaitMs = Infinity): Promise<void> {
    const deadline = performance.now() + maxWaitMs;
    while (this.resolving.size > 0) {
      const all = Promise.all(this.resolving.keys());
      const left = deadline - performance.now();
      if (left === Infinity) {
        await all;
        continue;
      }
      if (left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  /** The container's audit now, if it still audits its shells (it may be gone, or re-planned, meanwhile). */
  private shellsAudited(container: ContainerRecord): ContainerAudit | undefined {
    const entry = this.audited.get(container.id);
    return entry?.container === container && entry.audit.interactiveShells ? entry.audit : undefined;
  }

  /**
   * Pins the resolved targets (the files the probes go on, held open: targets/pin.ts) and books them; gaps,
   * and targets that changed since they were checked, become coverage records now.
   */
  private async bookTargets(
    container: ContainerRecord,
    candidates: readonly string[],
    why: string,
    late: boolean,
    resolved: readonly ReadlineResolution[],
  ): Promise<void> {
    const gap = (bash: string | undefined, reason: string, target?: string): void => {
      const audit = this.shellsAudited(container);
      if (!audit) return;
      this.noteError(
        `container ${container.id}: ${bash ? `${excerpt(bash, QUOTE_CHARS)} cannot be probed` : 'no bash'}: ${reason}`,
      );
      this.options.sink.write({
        kind: 'coverage',
        time: new Date().toISOString(),
        ...containerRef(container, audit.policy),
        status: 'gap',
        ...(bash !== undefined ? { bash } : {}),
        ...(target !== undefined ? { target } : {}),
        reason,
      });
    };
    if (!this.shellsAudited(container)) return;
    const targets: (ProbeTarget & { bash: string; via: 'bash' | 'libreadline' })[] = [];
    for (const r of resolved) {
      if (r.kind === 'coverage') {
        gap(r.bash, r.reason);
        continue;
      }
      // The probe binds to the file the overlay shows (a layer's, shared by the image's containers).
      const real = await realFileOf(r.file);
      const key = real ? `${real.dev}:${real.ino}` : `${r.dev}:${r.ino}`;
      const file = real?.file ?? r.file;
      const held = this.book.heldBy(container.id);
      if (!held.has(key) && held.size + targets.length >= MAX_TARGETS_PER_CONTAINER) {
        gap(
          r.bash,
          `more than ${MAX_TARGETS_PER_CONTAINER} distinct files define readline in this container`,
        );
        continue;
      }
      const pinned = await this.pins.pin(
        key,
        file,
        real
          ? { dev: real.dev, ino: real.ino, within: real.layer }
          : { dev: r.dev, ino: r.ino, within: container.rootfs },
      );
      if (!pinned.ok) {
        gap(r.bash, pinned.reason, file);
        continue;
      }
      targets.push({ key, file, probe: pinned.probe, bash: r.bash, via: r.via });
    }
    if (resolved.length === 0 && candidates === container.bashCandidates)
      gap(undefined, `no bash in the container (looked for ${excerpt(candidates.join(', '), 512)})`);
    const audit = this.shellsAudited(container);
    if (!audit) return; // forgotten meanwhile: its pins go at the next attach
    const fresh = new Set(this.book.add(container.id, targets).map((t) => t.key));
    for (const t of targets)
      this.pendingCoverage.push({ container, audit, target: t, fresh: late || fresh.has(t.key), why });
  }

  private pendingCoverage: (ProbeCoverage & { fresh: boolean; why: string })[] = [];

  /**
   * Coverage reported, by probe and container: when the capture later leaves a probe out (it could not be
   * attached again) or brings it back (a retry attached it), every container using it hears of it.
   */
  private readonly coverageByProbe = new Map<string, Map<string, ProbeCoverage>>();

  private holdCoverage(p: ProbeCoverage): void {
    const holders = this.coverageByProbe.get(p.target.probe) ?? new Map<string, ProbeCoverage>();
    holders.set(p.container.id, p);
    this.coverageByProbe.set(p.target.probe, holders);
  }

  /** A probe left out (with why) or brought back after its coverage was reported. */
  private onProbeChange(probe: string, reason?: string): void {
    const holders = this.coverageByProbe.get(probe);
    if (!holders) return; // not reported yet: attach() reports it
    const now = new Date().toISOString();
    for (const [id, p] of holders) {
      if (this.audited.get(id)?.container !== p.container) {
        holders.delete(id);
        continue;
      }
      if (reason !== undefined) {
        this.probeGap(p, reason);
        continue;
      }
      this.options.sink.write({
        kind: 'coverage',
        time: now,
        ...containerRef(p.container, p.audit.policy),
        status: 'covered',
        bash: p.target.bash,
        target: p.target.file,
        via: p.target.via,
        reason: 'attached on a retry, after it could not be',
        coveredFrom: now,
        late: true,
      });
    }
  }

  /** A container's probe that bpftrace could not attach: a gap, until a retry attaches it. */
  private probeGap(p: ProbeCoverage, reason: string): void {
    this.noteError(`container ${p.container.id}: the readline probe on ${p.target.file} failed: ${reason}`);
    this.options.sink.write({
      kind: 'coverage',
      time: new Date().toISOString(),
      ...containerRef(p.container, p.audit.policy),
      status: 'gap',
      bash: p.target.bash,
      target: p.target.file,
      via: p.target.via,
      reason,
    });
  }

  /** Probes the booked targets, then acknowledges the batch's creates and reports coverage. */
  private async attach(creates: readonly Handoff[]): Promise<void> {
    const files = this.book.files();
    for (const probe of this.coverageByProbe.keys())
      if (!files.includes(probe)) this.coverageByProbe.delete(probe);
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
      for (const p of this.pendingCoverage)
        this.probeGap(p, `bpftrace could not attach: ${(error as Error).message}`);
      this.pendingCoverage = [];
    }
    // bpftrace no longer asks for the files no container holds: their pins may go (pin.ts).
    await this.pins.keepOnly(this.book.keys());
    const now = new Date();
    for (const p of this.pendingCoverage) {
      this.holdCoverage(p);
      const reason = left.get(p.target.probe);
      if (reason !== undefined) {
        this.probeGap(p, reason);
        continue;
      }
      const handoff = creates.find((h) => h.id === p.container.id);
      const deadline = handoff ? Date.parse(handoff.time) + (this.options.ackWaitMs ?? 2000) : 0;
      this.options.sink.write({
        kind: 'coverage',
        time: now.toISOString(),
        ...containerRef(p.container, p.audit.policy),
        status: 'covered',
        bash: p.target.bash,
        target: p.target.file,
        via: p.target.via,
        reason: p.why,
        coveredFrom: now.toISOString(),
        // Late: the container may have been running unprobed (the wrapper stopped waiting, or no create).
        late: p.fresh && now.getTime() > deadline,
      });
    }
    this.pendingCoverage = [];
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
    const args = h.process?.args ?? [];
    if (
      entry?.audit.execs &&
      h.pid !== null &&
      this.isFirstOfTwins(entry.container.id, h.pid, Buffer.from(args[0] ?? ''), 'runtime')
    ) {
      this.options.sink.write({
        kind: 'exec',
        time: new Date(h.time).toISOString(),
        ...containerRef(entry.container, entry.audit.policy),
        source: 'runtime',
        pid: h.pid,
        ...(h.process?.user ? { uid: h.process.user.uid } : {}),
        ...execArgvFields(
          args.map((a) => Buffer.from(a)),
          entry.audit,
        ),
      });
      this.stats.execsRecorded++;
    }
    const program = args[0];
    if (!entry || !entry.audit.interactiveShells || !program?.startsWith('/')) return;
    this.addTargets(
      entry.container,
      [program],
      `attached when an exec of ${excerpt(program, QUOTE_CHARS)} was handed off`,
    );
  }

  // ---- restarts ----

  /** Keeps the create hand-off of a container, so that a restarted agent finds it again. */
  private async remember(h: Handoff): Promise<void> {
    await writeFile(join(this.options.stateDir, KNOWN_DIR, `${h.id}.json`), JSON.stringify(h), {
      mode: 0o600,
    });
  }

  private async forget(id: string): Promise<void> {
    const drops = this.limiter.forget(id);
    if (drops) this.reportDrop(drops);
    this.audited.delete(id);
    const gone = this.book.remove(id);
    if (gone.length > 0) this.dirty = true; // the loop re-checks the target set after this batch
    await rm(join(this.options.stateDir, KNOWN_DIR, `${id}.json`), { force: true });
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
    for (const name of (await readdir(dir)).sort()) {
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
      this.audit(container, 'found again after an agent restart');
    }
    if (found > 0) {
      await this.settle();
      await this.attach([]);
      const loss: Omit<LossRecord, 'seq' | 'boot' | 'node'> = {
        kind: 'loss',
        time: new Date().toISOString(),
        reason: 'agent-down',
        ...(downSince ? { since: downSince.toISOString() } : {}),
        until: new Date().toISOString(),
        detail: `the agent was not running; ${found} audited container(s) were unprobed in that window`,
      };
      this.options.sink.write(loss);
      this.stats.losses++;
    }
  }

  // ---- captured lines ----

  /**
   * A line of an audited shell becomes a record, unless its container is over its limits (records/line-limits.ts):
   * then it is counted, and reported as a loss. The work a line takes is charged to its container.
   */
  private onLine(line: CapturedLine): void {
    this.stats.linesCaptured++;
    const container = this.registry.byMntns(line.mntns);
    const entry = container && this.audited.get(container.id);
    if (!entry || entry.container !== container || !entry.audit.interactiveShells) {
      this.stats.linesDropped++;
      return;
    }
    const started = performance.now();
    const over = this.limiter.admit(container.id, 'line', started, Date.now());
    // A key block's state follows every line, dropped ones included (cheap: two string searches).
    const inKeyBlock =
      entry.audit.redactKeyBlocks &&
      this.keyBlocks.inside(`${line.mntns}/${line.pid}`, line.bytes.toString('latin1'));
    if (over) {
      this.stats.rateLimited++;
      return;
    }
    const time = monotonicToDate(line.ns);
    this.options.sink.write(
      commandRecord(
        line,
        entry.container,
        entry.audit,
        time,
        this.nsPids.of(line.pid, line.mntns),
        inKeyBlock,
      ),
    );
    this.stats.commandsRecorded++;
    const done = performance.now();
    this.limiter.charge(container.id, done - started, done);
  }

  /**
   * Lines a container's shells returned that the probe counted instead of printing, over the container's
   * kernel budget (capture/readline/script.ts): reported with its other drops, as a `rate-limited` loss.
   */
  private onKernelDrop(drop: KernelDrop): void {
    const container = this.registry.byMntns(drop.mntns);
    const entry = container && this.audited.get(container.id);
    if (!entry || entry.container !== container || !entry.audit.interactiveShells) {
      this.stats.linesDropped += drop.lines;
      return;
    }
    this.stats.rateLimited += drop.lines;
    this.limiter.droppedInKernel(container.id, drop.lines, drop.bytes, performance.now(), Date.now());
  }

  private onKernelExec(exec: CapturedExec): void {
    const container = this.registry.byMntns(exec.mntns);
    const entry = container && this.audited.get(container.id);
    if (!entry || entry.container !== container || !entry.audit.execs) return;
    const started = performance.now();
    if (this.limiter.admit(container.id, 'exec', started, Date.now())) {
      this.stats.rateLimited++;
      return;
    }
    if (!this.isFirstOfTwins(container.id, exec.pid, exec.argv[0] ?? Buffer.alloc(0), 'kernel')) return;
    const path = recordText(exec.filename);
    const nsPid = this.nsPids.of(exec.pid, exec.mntns);
    this.options.sink.write({
      kind: 'exec',
      time: monotonicToDate(exec.ns).toISOString(),
      ...containerRef(entry.container, entry.audit.policy),
      source: 'kernel',
      pid: exec.pid,
      ...(exec.ppid > 0 ? { ppid: exec.ppid } : {}),
      ...(nsPid !== undefined ? { nsPid } : {}),
      uid: exec.uid,
      path: path.text,
      ...(path.base64 !== undefined ? { pathBase64: path.base64 } : {}),
      ...execArgvFields(exec.argv, entry.audit, exec.truncated || exec.filenameTruncated),
    });
    this.stats.execsRecorded++;
    const done = performance.now();
    this.limiter.charge(container.id, done - started, done);
  }

  /** False (and counted) for the other source's view of an exec already recorded. */
  private isFirstOfTwins(containerId: string, pid: number, firstArg: Buffer, source: ExecSource): boolean {
    if (this.execDedup.admit(containerId, pid, firstArg.toString('latin1'), source, Date.now())) return true;
    this.stats.execTwinsDropped++;
    return false;
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
    this.wrapperDropsCheckedAt = new Date();
    const count = await this.wrapperDrops.take().catch(() => 0);
    this.wrapperDropsBusy = false;
    if (count === 0) return;
    this.stats.losses++;
    this.options.sink.write({
      kind: 'loss',
      time: new Date().toISOString(),
      reason: 'handoffs-dropped',
      count,
      ...(since ? { since: since.toISOString() } : {}),
      until: this.wrapperDropsCheckedAt.toISOString(),
      detail:
        `the runc wrapper wrote no hand-off for ${count} container start(s) or exec(s) (the agent was absent, ` +
        'or the spool was at its bound): those containers and execs may be unaudited',
    });
  }

  private reportDrop(window: DropWindow): void {
    const entry = this.audited.get(window.key);
    this.stats.losses++;
    this.options.sink.write({
      kind: 'loss',
      time: new Date().toISOString(),
      ...(entry
        ? containerRef(entry.container, entry.audit.policy)
        : { containerId: recordContainerId(window.key) }),
      reason: 'rate-limited',
      count: window.count,
      since: new Date(window.sinceMs).toISOString(),
      until: new Date(window.untilMs).toISOString(),
      detail: this.limiter.describe(window),
    });
  }

  private onLoss(loss: CaptureLoss | ExecCaptureLoss): void {
    this.stats.losses++;
    if (loss.reason === 'bpftrace-exited') this.noteError(`bpftrace exited: ${loss.detail ?? ''}`);
    this.options.sink.write({
      kind: 'loss',
      time: new Date().toISOString(),
      reason: loss.reason,
      ...(loss.count !== undefined ? { count: loss.count } : {}),
      ...(loss.fromNs !== undefined ? { since: monotonicToDate(loss.fromNs).toISOString() } : {}),
      ...(loss.toNs !== undefined ? { until: monotonicToDate(loss.toNs).toISOString() } : {}),
      ...(loss.detail !== undefined ? { detail: loss.detail.slice(0, 2048) } : {}),
    });
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

/** bpftrace's nsecs and process.hrtime are both CLOCK_MONOTONIC: a past monotonic time as wall time. */
export function monotonicToDate(ns: bigint, nowNs = process.hrtime.bigint(), nowMs = Date.now()): Date {
  return new Date(nowMs - Number(nowNs - ns) / 1e6);
}
