/**
 * What a restarted agent carries over from the previous one. Pure: the loop reads and writes the files.
 *
 * - The create hand-off of every container it audits, one file each under STATE-DIR/containers: at start
 *   they are registered again, in the order of their names, and decided under the plan in force (coverage
 *   says "found again after an agent restart"); those whose container is gone are deleted.
 * - The spool's heartbeat file, whose time is the previous agent's last sign of life: the start of the
 *   `agent-down` loss (when a container was found again, losses.ts) and of the first wrapper-drops window.
 */

/** Under the state directory: the create hand-offs of the containers audited. */
export const KNOWN_DIR = 'containers';

/** Why the coverage of a container found again says it is probed. */
export const FOUND_AGAIN = 'found again after an agent restart';

/** The file that keeps a container's create hand-off (the id is the wrapper's: checked, path-safe). */
export function rememberedFile(containerId: string): string {
  return `${containerId}.json`;
}

/** The order the remembered containers are registered again in: by name, so a restart is reproducible. */
export function rescanOrder(names: readonly string[]): string[] {
  return [...names].sort();
}
