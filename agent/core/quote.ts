/**
 * How container-controlled text (paths, error messages that name them) is quoted in logs, coverage reasons
 * and the agent's state: controls escaped, cut, so a crafted image cannot flood or forge them.
 */
import { excerpt } from '../../common/text/escape.js';

/** Container-controlled text quoted in logs and in the agent's state is cut to this (escaped). */
export const QUOTE_CHARS = 200;

/** Container-controlled text (a path, an error naming one) as logs and the agent's state quote it. */
export function quote(text: string): string {
  return excerpt(text, QUOTE_CHARS);
}
