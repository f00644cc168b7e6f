/**
 * The agent's view of the containers on its node, fed by the runc wrapper's hand-offs (agent/handoff/spool.ts)
 * and queried by mount namespace: every line the readline probe captures carries the inode of its process's
 * mount namespace (agent/capture/readline/README.md), and that inode is what ties a line to a container.
 *
 *   create, run   read the bundle's config.json, stat /proc/<init pid>/ns/{mnt,pid}, and record the container
 *   exec          record the exec'd pid, after checking it is in the container's mount namespace
 *   delete        forget the container (containerd runs `runc delete` twice per container: idempotent)
 *
 * A container is refused when its init process is in the agent's own mount namespace or in that of pid 1
 * (the host's, when the agent runs with hostPID in a pod of its own): attributing that namespace to a
 * container would attribute every host shell to it. A pid is only trusted if /proc/<pid>/root is the
 * bundle's root filesystem, which catches a pid that exited and was reused before the agent looked.
 *
 * onHandoff never throws: whatever goes wrong (an unreadable bundle, a process already gone, a malformed
 * config) is logged and returned as a value with a reason. Hand-offs may be replayed after an agent restart
 * (the spool removes a file only once handled), so every verb is idempotent.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Handoff } from '../../api/handoff/v1.js';
import { type Logger, LogField } from '../../common/logging.js';
import { excerpt } from '../../common/text/escape.js';
import {
  type BundleFailure,
  type ContainerIdentity,
  bashCandidates,
  identityFromAnnotations,
  readBundle,
} from './bundle.js';

/** What a log line quotes of a bundle's text (annotations, parse errors): escaped and cut to this. */
const LOG_EXCERPT = 200;

/** Exec'd pids kept per container: a long-lived container may see many `kubectl exec`s. */
export const MAX_EXECS_PER_CONTAINER = 256;

export interface ExecRecord {
  pid: number;
  args?: string[];
  at: Date;
}

export interface ContainerRecord {
  id: string;
  bundle: string;
  /** Host path of the root filesystem. */
  rootfs: string;
  identity: ContainerIdentity;
  initPid: number;
  /** Inode of the init process's mount namespace: the key captured lines are attributed by. */
  mntns: number;
  pidns: number;
  createdAt: Date;
  bashCandidates: string[];
  /** Oldest first, at most MAX_EXECS_PER_CONTAINER. */
  execs: ExecRecord[];
}

export type RegistryRejection =
  | `bundle-${BundleFailure}`
  | 'process-gone'
  | 'root-mismatch'
  | 'host-mount-namespace'
  | 'mount-namespace-taken'
  | 'unknown-container'
  | 'exec-mount-namespace-mismatch'
  | 'internal-error';

export type HandoffOutcome =
  | {
      ok: true;
      action: 'registered' | 'unchanged' | 'exec-recorded' | 'removed' | 'absent' | 'kept' | 'ignored';
    }
  | { ok: false; reason: RegistryRejection; detail: string };

export interface RegistryOptions {
  logger: Logger;
  /** Where procfs is mounted; tests pass a directory shaped like it. */
  procRoot?: string;
  now?: () => Date;
}

type Namespaces = { ok: true; mntns: number; pidns: number } | { ok: false; detail: string };

export class ContainerRegistry {
  private readonly byIdMap = new Map<string, ContainerRecord>();
  private readonly byMntnsMap = new Map<number, ContainerRecord>();
  private readonly procRoot: string;
  private readonly now: () => Date;

  constructor(private readonly options: RegistryOptions) {
    this.procRoot = options.procRoot ?? '/proc';
    this.now = options.now ?? (() => new Date());
  }

  byId(id: string): ContainerRecord | undefined {
    return this.byIdMap.get(id);
  }

  byMntns(ino: number): ContainerRecord | undefined {
    return this.byMntnsMap.get(ino);
  }

  all(): ContainerRecord[] {
    return [...this.byIdMap.values()];
  }

  /** Applies one hand-off. Never throws; failures are logged and returned. */
  async onHandoff(h: Handoff): Promise<HandoffOutcome> {
    let outcome: HandoffOutcome;
    try {
      outcome = await this.apply(h);
    } catch (error) {
      // Nothing above should throw; if it does, it is still one hand-off, not the agent.
      outcome = { ok: false, reason: 'internal-error', detail: `unexpected: ${String(error)}` };
    }
    const { logger } = this.options;
    const fields = { [LogField.containerId]: h.id, [LogField.verb]: h.verb };
    if (outcome.ok) logger.debug('Hand-off applied', { ...fields, [LogField.detail]: outcome.action });
    else
      logger.warn('Hand-off not applied', {
        ...fields,
        [LogField.reason]: outcome.reason,
        // A bundle's parse error quotes the file: only a short escaped excerpt.
        [LogField.detail]: excerpt(outcome.detail, LOG_EXCERPT),
      });
    return outcome;
  }

  private apply(h: Handoff): Promise<HandoffOutcome> {
    // A failed runc call left no container and no process behind: nothing to record. A failed delete is
    // handled below, since the container may or may not still exist.
    if (h.verb !== 'delete' && (h.exitCode !== 0 || h.pid === null))
      return Promise.resolve({ ok: true, action: 'ignored' });
    switch (h.verb) {
      case 'create':
      case 'run':
        return this.register(h.id, h.bundle!, h.pid!);
      case 'exec':
        return this.recordExec(h.id, h.pid!, h.process?.args ?? undefined);
      case 'delete':
        return this.remove(h.id, h.exitCode);
    }
  }

  private async register(id: string, bundle: string, pid: number): Promise<HandoffOutcome> {
    const existing = this.byIdMap.get(id);
    if (existing && existing.initPid === pid && existing.bundle === bundle)
      return { ok: true, action: 'unchanged' }; // a replayed hand-off

    const read = await readBundle(bundle);
    if (!read.ok) return { ok: false, reason: `bundle-${read.reason}`, detail: read.detail };

    const ns = await this.namespacesOf(pid);
    if (!ns.ok) return { ok: false, reason: 'process-gone', detail: ns.detail };
    // After the namespace stats: a pid reused before them fails here, its root being another one.
    const root = await this.checkRoot(pid, read.rootfs);
    if (root) return root;

    const host = await this.hostMountNamespaces();
    if (host.has(ns.mntns))
      return {
        ok: false,
        reason: 'host-mount-namespace',
        detail: `pid ${pid} is in the host's or the agent's mount namespace (${ns.mntns})`,
      };

    const holder = this.byMntnsMap.get(ns.mntns);
    if (holder && holder.id !== id) {
      // Inodes of freed namespaces are reused: a holder whose process left it is stale (its delete lost).
      if (await this.stillIn(holder.initPid, holder.mntns))
        return {
          ok: false,
          reason: 'mount-namespace-taken',
          detail: `mount namespace ${ns.mntns} is container ${holder.id}'s`,
        };
      this.forget(holder);
    }
    if (existing) this.forget(existing); // the id was reused and its delete never reached us

    const record: ContainerRecord = {
      id,
      bundle,
      rootfs: read.rootfs,
      identity: identityFromAnnotations(read.config.annotations),
      initPid: pid,
      mntns: ns.mntns,
      pidns: ns.pidns,
      createdAt: this.now(),
      bashCandidates: bashCandidates(read.config.process?.env),
      execs: [],
    };
    this.byIdMap.set(id, record);
    this.byMntnsMap.set(record.mntns, record);
    this.options.logger.info('Container registered', {
      [LogField.containerId]: id,
      [LogField.file]: bundle,
      [LogField.detail]: {
        ...Object.fromEntries(
          Object.entries(record.identity).map(([k, v]) => [k, excerpt(String(v), LOG_EXCERPT)]),
        ),
        initPid: pid,
        mntns: ns.mntns,
        rootfs: excerpt(read.rootfs, LOG_EXCERPT),
      },
    });
    return { ok: true, action: 'registered' };
  }

  private async recordExec(id: string, pid: number, args: string[] | undefined): Promise<HandoffOutcome> {
    const record = this.byIdMap.get(id);
    if (!record) return { ok: false, reason: 'unknown-container', detail: `exec pid ${pid} into ${id}` };
    if (record.execs.some((e) => e.pid === pid)) return { ok: true, action: 'unchanged' };
    const ns = await this.namespacesOf(pid);
    if (!ns.ok) return { ok: false, reason: 'process-gone', detail: ns.detail };
    if (ns.mntns !== record.mntns)
      return {
        ok: false,
        reason: 'exec-mount-namespace-mismatch',
        detail: `pid ${pid} is in mount namespace ${ns.mntns}, container ${id} in ${record.mntns}`,
      };
    record.execs.push({ pid, ...(args ? { args } : {}), at: this.now() });
    if (record.execs.length > MAX_EXECS_PER_CONTAINER) record.execs.shift();
    return { ok: true, action: 'exec-recorded' };
  }

  private async remove(id: string, exitCode: number): Promise<HandoffOutcome> {
    const record = this.byIdMap.get(id);
    if (!record) return { ok: true, action: 'absent' };
    // A failed delete (e.g. of a running container without --force) may leave the container alive: keep it
    // while its init process is still in its namespace, lest its shells go unattributed.
    if (exitCode !== 0 && (await this.stillIn(record.initPid, record.mntns)))
      return { ok: true, action: 'kept' };
    this.forget(record);
    this.options.logger.info('Container removed', { [LogField.containerId]: id });
    return { ok: true, action: 'removed' };
  }

  private forget(record: ContainerRecord): void {
    if (this.byIdMap.get(record.id) === record) this.byIdMap.delete(record.id);
    if (this.byMntnsMap.get(record.mntns) === record) this.byMntnsMap.delete(record.mntns);
  }

  // ---- /proc ----

  private async nsInode(pid: number | 'self', type: 'mnt' | 'pid'): Promise<number> {
    // stat follows the magic link to the nsfs inode: that inode is the namespace's identity.
    return (await stat(join(this.procRoot, String(pid), 'ns', type))).ino;
  }

  private async namespacesOf(pid: number): Promise<Namespaces> {
    try {
      return { ok: true, mntns: await this.nsInode(pid, 'mnt'), pidns: await this.nsInode(pid, 'pid') };
    } catch (error) {
      return { ok: false, detail: `pid ${pid}: ${(error as Error).message}` };
    }
  }

  private async stillIn(pid: number, mntns: number): Promise<boolean> {
    try {
      return (await this.nsInode(pid, 'mnt')) === mntns;
    } catch {
      return false;
    }
  }

  /** The mount namespaces no container may claim: the agent's own and pid 1's. */
  private async hostMountNamespaces(): Promise<Set<number>> {
    const found = new Set<number>();
    for (const pid of ['self', 1] as const) {
      try {
        found.add(await this.nsInode(pid, 'mnt'));
      } catch {
        // pid 1 hidden (no hostPID): the agent's own namespace is still checked
      }
    }
    return found;
  }

  /** undefined when /proc/<pid>/root is the rootfs directory (same dev and inode), else the refusal. */
  private async checkRoot(pid: number, rootfs: string): Promise<HandoffOutcome | undefined> {
    let root, expected;
    try {
      root = await stat(join(this.procRoot, String(pid), 'root') + '/');
    } catch (error) {
      return { ok: false, reason: 'process-gone', detail: `pid ${pid}: ${(error as Error).message}` };
    }
    try {
      expected = await stat(rootfs);
    } catch (error) {
      return { ok: false, reason: 'root-mismatch', detail: `rootfs ${rootfs}: ${(error as Error).message}` };
    }
    if (root.dev !== expected.dev || root.ino !== expected.ino)
      return { ok: false, reason: 'root-mismatch', detail: `the root of pid ${pid} is not ${rootfs}` };
    return undefined;
  }
}
