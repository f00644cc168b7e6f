/**
 * `container-auditor agent`: the node agent's command line.
 *
 *   --standalone --policy FILE   audit by one policy file, without Kubernetes (records to --output)
 *   --operator URL ...           cluster mode: the plan from the operator, records to it
 */
import { createWriteStream } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { createLogger } from '../common/logging.js';
import { Agent } from './agent.js';
import { loadStandalonePlan, PolicyFileError } from './plan/standalone-policy.js';
import { preflight } from './preflight.js';
import { StampingSink, jsonLines } from './records/sink.js';
import { compileCommandRules } from '../common/rules/command-rules.js';
import type { CompileFilter } from './plan/standalone-policy.js';

/** The policy's redaction and alerts, as the plan's filter. */
const compileFilter: CompileFilter = (spec) => {
  const compiled = compileCommandRules(spec);
  return compiled.ok ? { ok: true, filter: compiled.rules } : compiled;
};

export const AGENT_USAGE = `Usage:
  container-auditor agent --standalone --policy FILE [options]

Options:
  --policy FILE        a ContainerAuditPolicy (YAML or JSON), the same schema as the CRD
  --handoff-dir DIR    the runc wrapper's spool (default /run/container-auditor/handoff)
  --state-dir DIR      where the agent remembers audited containers (default /var/lib/container-auditor)
  --output FILE|-      where records go, one JSON object per line (default -, stdout)
  --node NAME          node name in records (default: the host name)
  --bpftrace PATH      the bpftrace binary (default bpftrace, or $CONTAINER_AUDITOR_BPFTRACE)
  --bundle-root DIR    accept only bundles under DIR (repeatable; default: any)
  --ack-wait-ms N      the wrapper's ack_timeout_ms, to tell late coverage (default 2000)
  --log-level LEVEL    error, warn, info, debug (default info; logs go to stderr)`;

export class UsageError extends Error {}

export async function agentMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      standalone: { type: 'boolean', default: false },
      policy: { type: 'string' },
      'handoff-dir': { type: 'string', default: '/run/container-auditor/handoff' },
      'state-dir': { type: 'string', default: '/var/lib/container-auditor' },
      output: { type: 'string', default: '-' },
      node: { type: 'string', default: hostname() },
      bpftrace: { type: 'string', default: process.env.CONTAINER_AUDITOR_BPFTRACE ?? 'bpftrace' },
      'bundle-root': { type: 'string', multiple: true },
      'ack-wait-ms': { type: 'string', default: '2000' },
      'log-level': { type: 'string', default: process.env.LOG_LEVEL ?? 'info' },
      operator: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  if (!values.standalone)
    throw new UsageError(
      values.operator
        ? 'cluster mode (--operator) is not available in this version; use --standalone --policy FILE'
        : 'say --standalone --policy FILE (cluster mode needs --operator)',
    );
  if (!values.policy) throw new UsageError('--standalone needs --policy FILE');
  const ackWaitMs = Number(values['ack-wait-ms']);
  if (!Number.isInteger(ackWaitMs) || ackWaitMs < 0 || ackWaitMs > 60_000)
    throw new UsageError('--ack-wait-ms must be an integer from 0 to 60000');

  const logger = createLogger('agent', values['log-level']);
  let plan;
  try {
    plan = await loadStandalonePlan(values.policy, compileFilter);
  } catch (error) {
    if (error instanceof PolicyFileError) throw new UsageError(error.message);
    throw error;
  }
  const checks = preflight(values.bpftrace);
  for (const w of checks.warnings) logger.warn(w);
  if (checks.errors.length > 0)
    throw new UsageError(`this node cannot run the agent:\n  ${checks.errors.join('\n  ')}`);

  // The exec script runs through bpf-scripts/exec/bpftrace-tracefs.sh, which runs $BPFTRACE.
  process.env.BPFTRACE = values.bpftrace;
  const stream =
    values.output === '-' ? process.stdout : createWriteStream(values.output, { flags: 'a', mode: 0o600 });
  const sink = new StampingSink(values.node, jsonLines(stream));
  const agent = new Agent({
    spoolDir: values['handoff-dir'],
    stateDir: values['state-dir'],
    plan,
    sink,
    logger,
    bpftrace: values.bpftrace,
    ackWaitMs,
    ...(values['bundle-root'] ? { bundleRoots: values['bundle-root'] } : {}),
  });
  await agent.start();
  logger.info('Auditing', {
    detail: { boot: sink.boot, bpftrace: checks.bpftraceVersion, policy: values.policy },
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  logger.info('Stopping');
  await agent.stop();
  logger.info('Stopped', { detail: agent.stats });
  if (stream !== process.stdout) await new Promise<void>((resolve) => stream.end(resolve));
  return 0;
}
