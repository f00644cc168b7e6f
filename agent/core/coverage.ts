/**
 * Coverage records: whether each audited container's shells are probed. Pure: the loop passes what happened
 * (a resolution's gaps, the capture's answer to a new target set, a probe lost or won back) and the time, and
 * writes the records and notes the problems returned, in their order.
 *
 * A coverage record is written in three situations, all here:
 * - resolving readline for a container found no probe-able file, or pinning one failed (`resolutionGap`);
 * - the batch's targets were handed to bpftrace (`CoverageBook.attached`, `attachFailed`): `covered`, or a
 *   `gap` for a probe bpftrace could not attach;
 * - the capture later left out a probe, or attached it on a retry (`CoverageBook.probeChanged`).
 */
import type { UnstampedRecord } from '../../api/records/v1.js';
import type { ContainerRecord } from '../containers/registry.js';
import type { ContainerAudit } from '../plan/plan.js';
import { containerRef } from '../records/build.js';
import type { ProbeTarget } from '../targets/target-book.js';
import { quote } from './quote.js';

export type CoverageRecordOut = Extract<UnstampedRecord, { kind: 'coverage' }>;

/** A record to write and, for a gap, the problem to note in the agent's state. */
export interface CoverageOutput {
  record: CoverageRecordOut;
  error?: string;
}

/** A probe target as resolved for one of a container's shells. */
export type ShellTarget = ProbeTarget & { bash: string; via: 'bash' | 'libreadline' };

/** What was reported of one probe in one container. */
export interface ProbeCoverage {
  container: ContainerRecord;
  audit: ContainerAudit;
  target: ShellTarget;
}

/** A probe booked for a container, its coverage to be reported once the batch attached it. */
export interface PendingCoverage extends ProbeCoverage {
  /** A probe new to this container or one reported late whatever (the container ran unaudited until now). */
  fresh: boolean;
  /** How it came to be covered (the record's `reason`). */
  why: string;
}

/**
 * Late: the container may have been running unprobed. A fresh probe is late unless the container's create
 * waits in this batch and the wrapper still holds it (`ackWaitMs` after the hand-off's time).
 */
export function isLate(
  fresh: boolean,
  nowMs: number,
  createTime: string | undefined,
  ackWaitMs: number,
): boolean {
  const deadline = createTime !== undefined ? Date.parse(createTime) + ackWaitMs : 0;
  return fresh && nowMs > deadline;
}

/** A shell of the container that resolving readline cannot probe (or no bash at all: `bash` unset). */
export function resolutionGap(
  container: ContainerRecord,
  audit: ContainerAudit,
  gap: { bash: string | undefined; reason: string; target?: string },
  now: Date,
): CoverageOutput {
  const { bash, reason, target } = gap;
  return {
    error: `container ${container.id}: ${bash ? `${quote(bash)} cannot be probed` : 'no bash'}: ${reason}`,
    record: {
      kind: 'coverage',
      time: now.toISOString(),
      ...containerRef(container, audit.policy),
      status: 'gap',
      ...(bash !== undefined ? { bash } : {}),
      ...(target !== undefined ? { target } : {}),
      reason,
    },
  };
}

/** A container's probe that bpftrace could not attach: a gap, until a retry attaches it. */
export function probeGap(p: ProbeCoverage, reason: string, now: Date): CoverageOutput {
  return {
    error: `container ${p.container.id}: the readline probe on ${p.target.file} failed: ${reason}`,
    record: {
      kind: 'coverage',
      time: now.toISOString(),
      ...containerRef(p.container, p.audit.policy),
      status: 'gap',
      bash: p.target.bash,
      target: p.target.file,
      via: p.target.via,
      reason,
    },
  };
}

/** A container's probe attached: its commands are captured from `now` on. */
export function covered(p: ProbeCoverage, reason: string, late: boolean, now: Date): CoverageOutput {
  return {
    record: {
      kind: 'coverage',
      time: now.toISOString(),
      ...containerRef(p.container, p.audit.policy),
      status: 'covered',
      bash: p.target.bash,
      target: p.target.file,
      via: p.target.via,
      reason,
      coveredFrom: now.toISOString(),
      late,
    },
  };
}

/**
 * The coverage to report at the next attach, and the coverage reported, by probe and container: when the
 * capture later leaves a probe out (it could not be attached again) or brings it back (a retry attached it),
 * every container using it hears of it.
 */
export class CoverageBook {
  private pending: PendingCoverage[] = [];
  private readonly byProbe = new Map<string, Map<string, ProbeCoverage>>();

  /** A probe booked for a container: reported at the next attach. */
  add(p: PendingCoverage): void {
    this.pending.push(p);
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** Probes reported for some container, for tests and the loop's checks. */
  probes(): string[] {
    return [...this.byProbe.keys()];
  }

  /** Forgets what was reported of probes no longer asked for (their coverage is the container's past). */
  keepProbes(files: readonly string[]): void {
    for (const probe of this.byProbe.keys()) if (!files.includes(probe)) this.byProbe.delete(probe);
  }

  /** bpftrace could not take the target set at all: every pending probe is a gap (and not held). */
  attachFailed(message: string, now: Date): CoverageOutput[] {
    const out = this.pending.map((p) => probeGap(p, `bpftrace could not attach: ${message}`, now));
    this.pending = [];
    return out;
  }

  /**
   * The target set is attached but for `rejected` (probe -> why): each pending probe is held and reported,
   * covered or a gap, in the order booked. `createTimes` are the hand-off times of the creates acknowledged
   * with this attach (container id -> time), which decide `late`.
   */
  attached(
    rejected: ReadonlyMap<string, string>,
    createTimes: ReadonlyMap<string, string>,
    ackWaitMs: number,
    now: Date,
  ): CoverageOutput[] {
    const out: CoverageOutput[] = [];
    for (const p of this.pending) {
      this.hold(p);
      const reason = rejected.get(p.target.probe);
      if (reason !== undefined) {
        out.push(probeGap(p, reason, now));
        continue;
      }
      out.push(
        covered(p, p.why, isLate(p.fresh, now.getTime(), createTimes.get(p.container.id), ackWaitMs), now),
      );
    }
    this.pending = [];
    return out;
  }

  /**
   * A probe left out (with why) or brought back after its coverage was reported: a gap or a late `covered`
   * for every container still audited as the record that was reported (`current` answers by id).
   */
  probeChanged(
    probe: string,
    reason: string | undefined,
    current: (containerId: string) => ContainerRecord | undefined,
    now: Date,
  ): CoverageOutput[] {
    const holders = this.byProbe.get(probe);
    if (!holders) return []; // not reported yet: the next attach reports it
    const out: CoverageOutput[] = [];
    for (const [id, p] of holders) {
      if (current(id) !== p.container) {
        holders.delete(id);
        continue;
      }
      out.push(
        reason !== undefined
          ? probeGap(p, reason, now)
          : covered(p, 'attached on a retry, after it could not be', true, now),
      );
    }
    return out;
  }

  private hold(p: ProbeCoverage): void {
    const holders = this.byProbe.get(p.target.probe) ?? new Map<string, ProbeCoverage>();
    holders.set(p.container.id, { container: p.container, audit: p.audit, target: p.target });
    this.byProbe.set(p.target.probe, holders);
  }
}
