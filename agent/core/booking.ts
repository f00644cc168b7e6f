/**
 * What readline's resolution means for a container's probes. Pure: the target resolver (targets/
 * target-resolver.ts) reads the files and pins them; these decide the keys, the limits and the gaps.
 */
import { excerpt } from '../../common/text/escape.js';
import type { RealFile } from '../targets/overlay.js';
import type { CoverageGap, ReadlineTarget } from '../targets/resolve.js';
import { MAX_TARGETS_PER_CONTAINER } from '../targets/target-book.js';

/** A resolution past its deadline by this much is given up even if a file operation hangs. */
export const RESOLVE_TIMEOUT_GRACE_MS = 250;

/**
 * Where the probe goes: the file the overlay shows when it is a layer's (shared by the image's containers, one
 * probe for all), else the file resolved; keyed by its identity, which is what a uprobe binds to.
 */
export function probePlacement(
  resolved: ReadlineTarget,
  real: RealFile | undefined,
  rootfs: string,
): { key: string; file: string; expected: { dev: bigint; ino: bigint; within: string } } {
  return real
    ? {
        key: `${real.dev}:${real.ino}`,
        file: real.file,
        expected: { dev: real.dev, ino: real.ino, within: real.layer },
      }
    : {
        key: `${resolved.dev}:${resolved.ino}`,
        file: resolved.file,
        expected: { dev: resolved.dev, ino: resolved.ino, within: rootfs },
      };
}

/**
 * Why a container may not hold one more probe (`held`: the keys it holds; `adding`: targets of this
 * resolution booked so far), or undefined. A key it holds already costs nothing.
 */
export function overTargetLimit(held: ReadonlySet<string>, adding: number, key: string): string | undefined {
  if (held.has(key) || held.size + adding < MAX_TARGETS_PER_CONTAINER) return undefined;
  return `more than ${MAX_TARGETS_PER_CONTAINER} distinct files define readline in this container`;
}

/**
 * The gap of a container without any bash: nothing resolved from its own candidates (the ones found at create;
 * an exec'd path that is not a bash says nothing of the container).
 */
export function noBashGap(
  resolvedCount: number,
  candidates: readonly string[],
  bashCandidates: readonly string[],
): string | undefined {
  if (resolvedCount > 0 || candidates !== bashCandidates) return undefined;
  return `no bash in the container (looked for ${excerpt(candidates.join(', '), 512)})`;
}

/** What a resolution that did not end in time resolves to: a gap of its first candidate. */
export function resolutionTimedOut(candidates: readonly string[], timeoutMs: number): CoverageGap {
  return {
    kind: 'coverage',
    bash: candidates[0] ?? 'bash',
    reason: `gave up looking for readline: the search did not end within ${timeoutMs} ms`,
  };
}
