/**
 * What the node must offer before bpftrace can attach uprobes, checked at start so that a missing piece is
 * one clear sentence rather than a bpftrace error dump or silence.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';

export interface PreflightResult {
  errors: string[];
  warnings: string[];
  bpftraceVersion?: string;
}

/** Kernel major.minor from a release string such as 6.1.0-18-amd64. Pure. */
export function kernelVersion(text: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** The soft RLIMIT_MEMLOCK in bytes from /proc/self/limits ('unlimited' as Infinity). Pure. */
export function memlockLimit(limits: string): number | undefined {
  const m = /^Max locked memory\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

export function preflight(bpftrace: string): PreflightResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (process.getuid?.() !== 0)
    errors.push('the agent must run as root (bpftrace needs CAP_SYS_ADMIN/CAP_BPF to attach uprobes)');
  const version = spawnSync(bpftrace, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (version.error || version.status !== 0)
    errors.push(
      `cannot run bpftrace (${bpftrace}): ${version.error?.message ?? version.stderr.trim()}; install it (Debian: apt-get install bpftrace) or pass --bpftrace PATH`,
    );
  if (!existsSync('/sys/kernel/btf/vmlinux'))
    errors.push(
      'the kernel has no BTF (/sys/kernel/btf/vmlinux): the probes read the mount namespace through it; use a kernel built with CONFIG_DEBUG_INFO_BTF',
    );
  const kernel = kernelVersion(release());
  // Before 5.11 BPF memory is charged to RLIMIT_MEMLOCK; since, to the memory cgroup.
  if (kernel && (kernel[0] < 5 || (kernel[0] === 5 && kernel[1] < 11))) {
    const limit = memlockLimit(readFileSync('/proc/self/limits', 'utf8'));
    if (limit !== undefined && limit < 64 * 1024 * 1024)
      errors.push(
        `kernel ${release()} charges BPF maps to RLIMIT_MEMLOCK, which is ${limit} bytes here: raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity for a service)`,
      );
  }
  if (
    !existsSync('/sys/kernel/tracing/uprobe_events') &&
    !existsSync('/sys/kernel/debug/tracing/uprobe_events')
  )
    warnings.push(
      'tracefs is not mounted (/sys/kernel/tracing): probes attach through perf events, but bpftrace warns when it detaches them; mount it with `mount -t tracefs nodev /sys/kernel/tracing` to silence that',
    );
  return {
    errors,
    warnings,
    ...(version.status === 0 ? { bpftraceVersion: version.stdout.trim() } : {}),
  };
}
