/**
 * Resolution and booking of a container's readline targets: the I/O between a container audited and its
 * probes booked. Resolutions run side by side, each within its budget (ResolveLimits, and a timer should a
 * file operation itself hang); what they find is pinned (pin.ts) and booked (target-book.ts); gaps and booked
 * probes go to the agent through callbacks, which decide what to report (core/coverage.ts). The decisions are
 * in core/booking.ts.
 */
import type { Clock, Timer } from '../../common/clock.js';
import { type Logger, LogField } from '../../common/logging.js';
import type { ContainerRecord } from '../containers/registry.js';
import {
  noBashGap,
  overTargetLimit,
  probePlacement,
  RESOLVE_TIMEOUT_GRACE_MS,
  resolutionTimedOut,
} from '../core/booking.js';
import type { PendingCoverage, ShellTarget } from '../core/coverage.js';
import { quote } from '../core/quote.js';
import type { ContainerAudit } from '../plan/plan.js';
import { realFileOf } from './overlay.js';
import type { PinnedFiles } from './pin.js';
import { type ReadlineFactsCache, type ReadlineResolution, resolveReadlineTargets } from './resolve.js';
import { FileFactsCache, type ResolveLimits } from './resolve-budget.js';
import type { TargetBook } from './target-book.js';

export interface TargetResolverOptions {
  clock: Clock;
  logger: Logger;
  limits: Readonly<ResolveLimits>;
  book: TargetBook;
  /** The files the probes are on, held open: bpftrace gets their /proc/<pid>/fd paths. */
  pins: PinnedFiles;
  /** The container's audit now, if it still audits its shells (it may be gone, or re-planned, meanwhile). */
  shellsAudited(container: ContainerRecord): ContainerAudit | undefined;
  /** A shell of a container still audited that cannot be probed (`bash` unset: none at all). */
  onGap(
    container: ContainerRecord,
    audit: ContainerAudit,
    gap: { bash: string | undefined; reason: string; target?: string },
  ): void;
  /** A probe booked for a container, its coverage to report at the next attach. */
  onBooked(p: PendingCoverage): void;
  /** A resolution that failed, for the agent's state. */
  onProblem(message: string): void;
  /** A resolution ended: the loop may attach and acknowledge what waited for it. */
  onSettled(): void;
}

export class TargetResolver {
  /** What files are (ELF, readline), by identity, across resolutions. */
  private readonly cache: ReadlineFactsCache = new FileFactsCache();
  /** Resolutions under way, with the container each is for. */
  private readonly resolving = new Map<Promise<void>, string>();

  constructor(private readonly options: TargetResolverOptions) {}

  /** The containers whose resolutions are under way. */
  containers(): Set<string> {
    return new Set(this.resolving.values());
  }

  /**
   * Starts resolving readline for the candidates; the batch attaches once every resolution it started is done
   * (settle), so a container whose image makes resolving costly holds up the others' probes and
   * acknowledgements by its budget at most. Gaps are reported when the resolution is done.
   */
  add(
    container: ContainerRecord,
    candidates: readonly string[],
    why: string,
    /** Reported late even when its probe was attached already (the container ran unaudited until now). */
    late = false,
  ): void {
    const { limits, clock, logger } = this.options;
    const resolution = resolveReadlineTargets(container.rootfs, candidates, { limits, cache: this.cache });
    const timeoutMs = limits.deadlineMs + RESOLVE_TIMEOUT_GRACE_MS;
    let timer: Timer | undefined;
    const timedOut = new Promise<ReadlineResolution[]>((resolve) => {
      timer = clock.setTimer(() => resolve([resolutionTimedOut(candidates, timeoutMs)]), timeoutMs);
    });
    const done: Promise<void> = Promise.race([resolution, timedOut])
      .then((resolved) => this.book(container, candidates, why, late, resolved))
      .catch((error: unknown) => {
        const message = quote(String(error));
        logger.error('Cannot resolve readline', {
          [LogField.containerId]: container.id,
          [LogField.error]: message,
        });
        this.options.onProblem(`container ${container.id}: cannot resolve readline: ${message}`);
      })
      .finally(() => {
        timer?.cancel();
        this.resolving.delete(done);
        this.options.onSettled(); // its container's probes and acknowledgement, if they wait for it
      });
    this.resolving.set(done, container.id);
  }

  /** Waits for the resolutions under way (and those started meanwhile), at most `maxWaitMs`. */
  async settle(maxWaitMs = Infinity): Promise<void> {
    const { clock } = this.options;
    const deadline = clock.now() + maxWaitMs;
    while (this.resolving.size > 0) {
      const all = Promise.all(this.resolving.keys());
      const left = deadline - clock.now();
      if (left === Infinity) {
        await all;
        continue;
      }
      if (left <= 0) return;
      let timer: Timer | undefined;
      await Promise.race([
        all,
        new Promise((resolve) => (timer = clock.setTimer(() => resolve(undefined), left))),
      ]);
      timer?.cancel();
    }
  }

  /**
   * Pins the resolved targets (the files the probes go on, held open: pin.ts) and books them; gaps, and
   * targets that changed since they were checked, are reported now.
   */
  private async book(
    container: ContainerRecord,
    candidates: readonly string[],
    why: string,
    late: boolean,
    resolved: readonly ReadlineResolution[],
  ): Promise<void> {
    const { book, pins } = this.options;
    const shellsAudited = (c: ContainerRecord) => this.options.shellsAudited(c);
    const gap = (bash: string | undefined, reason: string, target?: string): void => {
      const audit = shellsAudited(container);
      if (audit)
        this.options.onGap(container, audit, { bash, reason, ...(target !== undefined ? { target } : {}) });
    };
    if (!shellsAudited(container)) return;
    const targets: ShellTarget[] = [];
    for (const r of resolved) {
      if (r.kind === 'coverage') {
        gap(r.bash, r.reason);
        continue;
      }
      const { key, file, expected } = probePlacement(r, await realFileOf(r.file), container.rootfs);
      const over = overTargetLimit(book.heldBy(container.id), targets.length, key);
      if (over !== undefined) {
        gap(r.bash, over);
        continue;
      }
      const pinned = await pins.pin(key, file, expected);
      if (!pinned.ok) {
        gap(r.bash, pinned.reason, file);
        continue;
      }
      targets.push({ key, file, probe: pinned.probe, bash: r.bash, via: r.via });
    }
    const noBash = noBashGap(resolved.length, candidates, container.bashCandidates);
    if (noBash !== undefined) gap(undefined, noBash);
    const audit = shellsAudited(container);
    if (!audit) return; // forgotten meanwhile: its pins go at the next attach
    const fresh = new Set(book.add(container.id, targets).map((t) => t.key));
    for (const t of targets)
      this.options.onBooked({ container, audit, target: t, fresh: late || fresh.has(t.key), why });
  }
}
