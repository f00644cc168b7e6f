/** A registry entry for unit tests: an audited container with the given identity, and made-up ids. */
import type { ContainerRecord } from '../registry.js';

export function containerRecord(
  identity: ContainerRecord['identity'],
  over: Partial<ContainerRecord> = {},
): ContainerRecord {
  return {
    id: 'c1',
    bundle: '/b',
    rootfs: '/b/rootfs',
    identity,
    initPid: 10,
    mntns: 1,
    pidns: 2,
    createdAt: new Date(0),
    bashCandidates: [],
    execs: [],
    ...over,
  };
}
