/**
 * The hand-off: what runc-wrapper/container-auditor-runc tells the agent after runc create, run, exec and
 * delete (format documented in runc-wrapper/README.md). The wrapper is C and writes it; this schema is the
 * agent's side of the contract and the only place that decides what is acceptable. Anything that reaches
 * the spool is untrusted input: a file may be truncated, hostile or simply from a newer wrapper.
 */
import { posix } from 'node:path';
import { z } from 'zod';
import { parseJson } from '../parse-json.js';

export const HANDOFF_VERSION = 1;
/** Larger files are refused unread: the wrapper writes a few hundred bytes, exec args at most ~1 MiB. */
export const MAX_HANDOFF_BYTES = 1024 * 1024;
export const HANDOFF_VERBS = ['create', 'run', 'exec', 'delete'] as const;
export type HandoffVerb = (typeof HANDOFF_VERBS)[number];

/** runc's own rule for container ids. */
export const CONTAINER_ID = /^[\w+\-.]+$/;

/** An absolute path in normal form: no `..`, no `.`, no `//`, no trailing slash, no NUL. */
const AbsolutePath = z
  .string()
  .max(4096)
  .refine(
    (p) =>
      p.startsWith('/') && !p.includes('\0') && posix.normalize(p) === p && (p === '/' || !p.endsWith('/')),
    {
      message: 'must be an absolute path in normal form',
    },
  );

const ProcessUser = z.strictObject({
  uid: z.number().int().min(0).max(0xffffffff),
  gid: z.number().int().min(0).max(0xffffffff),
  umask: z.number().int().min(0).max(0o777).optional(),
  additionalGids: z.array(z.number().int().min(0).max(0xffffffff)).max(1024).optional(),
  username: z.string().max(256).optional(),
});

/** The parts of runc's --process file the wrapper copies (never env). */
export const HandoffProcess = z.strictObject({
  args: z.array(z.string().max(131072)).max(4096).optional(),
  cwd: z.string().max(4096).optional(),
  user: ProcessUser.optional(),
  terminal: z.boolean().optional(),
});

export const Handoff = z
  .strictObject({
    version: z.literal(HANDOFF_VERSION),
    verb: z.enum(HANDOFF_VERBS),
    time: z.iso.datetime(),
    id: z.string().min(1).max(1024).regex(CONTAINER_ID, 'must be a runc container id'),
    root: AbsolutePath.nullable(),
    bundle: AbsolutePath.nullable(),
    pid: z.number().int().min(1).max(4194304).nullable(),
    exitCode: z.number().int().min(0).max(255),
    wrapperPid: z.number().int().min(1).max(4194304),
    process: HandoffProcess.nullable().optional(),
    processError: z.string().max(1024).optional(),
    notUtf8: z.array(z.string().max(32)).max(8).optional(),
  })
  .superRefine((h, ctx) => {
    // What the wrapper always knows after a successful create, run or exec; without it the hand-off is
    // useless to the agent and was not written by a healthy wrapper.
    if (h.verb !== 'delete' && h.exitCode === 0 && h.pid === null) {
      ctx.addIssue({ code: 'custom', path: ['pid'], message: `a successful ${h.verb} carries the pid` });
    }
    if ((h.verb === 'create' || h.verb === 'run') && h.bundle === null) {
      ctx.addIssue({ code: 'custom', path: ['bundle'], message: `${h.verb} carries the bundle path` });
    }
    if (h.verb !== 'exec' && h.process !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['process'], message: 'only exec carries a process' });
    }
  });
export type Handoff = z.infer<typeof Handoff>;

export interface ParseOptions {
  /** When set, a bundle must lie under one of these directories (e.g. containerd's task state dir). */
  bundleRoots?: readonly string[];
}

export type ParseResult =
  { ok: true; handoff: Handoff } | { ok: false; reason: HandoffRejection; detail: string };

/** Why a hand-off was refused; also the label of the agent's rejection counter. */
export type HandoffRejection = 'oversized' | 'not-json' | 'invalid' | 'bundle-outside-roots';

function isUnder(path: string, root: string): boolean {
  const base = root.endsWith('/') ? root : `${root}/`;
  return path.startsWith(base);
}

/** Validates one hand-off file's text. Pure; never throws. */
export function parseHandoff(text: string, options: ParseOptions = {}): ParseResult {
  if (Buffer.byteLength(text) > MAX_HANDOFF_BYTES) {
    return { ok: false, reason: 'oversized', detail: `larger than ${MAX_HANDOFF_BYTES} bytes` };
  }
  const parsed = parseJson(Handoff, text);
  if (!parsed.ok) return parsed;
  const { bundle } = parsed.value;
  if (bundle !== null && options.bundleRoots && !options.bundleRoots.some((root) => isUnder(bundle, root))) {
    return {
      ok: false,
      reason: 'bundle-outside-roots',
      detail: `bundle ${bundle} is not under ${options.bundleRoots.join(', ')}`,
    };
  }
  return { ok: true, handoff: parsed.value };
}
