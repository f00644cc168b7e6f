/**
 * `container-auditor agent`: the node agent's command line.
 *
 *   --standalone --policy FILE   audit by one policy file, without Kubernetes (records to --output)
 *   --operator URL ...           cluster mode: the plan from the operator, records to it (agent/cluster/)
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ProbeServer } from '../common/http/probe-server.js';
import { createLogger } from '../common/logging.js';
import { Agent } from './agent.js';
import { ClusterAgent } from './cluster/cluster-agent.js';
import { isSafeOperatorUrl } from './cluster/operator-client.js';
import { DEFAULT_QUEUE_MAX_BYTES } from './cluster/queue.js';
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
  container-auditor agent --node NAME --operator URL --token-file FILE [options]

Standalone:
  --policy FILE        a ContainerAuditPolicy (YAML or JSON), the same schema as the CRD
  --output FILE|-      where records go, one JSON object per line (default -, stdout)

Cluster:
  --operator URL       the operator's agent endpoint (https; plain http only to the loopback)
  --token-file FILE    the projected ServiceAccount token, read again for every request
  --operator-ca FILE   the CA of the operator's certificate (default: the system's CAs)
  --queue-dir DIR      records waiting for the operator (default STATE-DIR/queue)
  --queue-max-bytes N  bound of that queue on disk (default ${DEFAULT_QUEUE_MAX_BYTES}); beyond it records are
                       dropped, counted, and reported as a loss
  --probe-port N       serve /healthz and /readyz (ready once the operator has answered with a plan) on
                       this port, plain HTTP, for the kubelet's probes (default: none)

Options:
  --handoff-dir DIR    the runc wrapper's spool (default /run/container-auditor/handoff)
  --state-dir DIR      where the agent remembers audited containers (default /var/lib/container-auditor)
  --node NAME          node name in records (standalone default: the host name; required in cluster mode)
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
      node: { type: 'string' },
      bpftrace: { type: 'string', default: process.env.CONTAINER_AUDITOR_BPFTRACE ?? 'bpftrace' },
      'bundle-root': { type: 'string', multiple: true },
      'ack-wait-ms': { type: 'string', default: '2000' },
      'log-level': { type: 'string', default: process.env.LOG_LEVEL ?? 'info' },
      operator: { type: 'string' },
      'token-file': { type: 'string' },
      'operator-ca': { type: 'string' },
      'queue-dir': { type: 'string' },
      'queue-max-bytes': { type: 'string' },
      'probe-port': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  if (values.standalone && values.operator)
    throw new UsageError('--standalone and --operator exclude each other');
  if (!values.standalone && !values.operator)
    throw new UsageError('say --standalone --policy FILE, or --operator URL for cluster mode');
  const ackWaitMs = Number(values['ack-wait-ms']);
  if (!Number.isInteger(ackWaitMs) || ackWaitMs < 0 || ackWaitMs > 60_000)
    throw new UsageError('--ack-wait-ms must be an integer from 0 to 60000');
  if (values.operator) return clusterMain(values, ackWaitMs);
  for (const flag of ['token-file', 'operator-ca', 'queue-dir', 'queue-max-bytes', 'probe-port'] as const)
    if (values[flag] !== undefined) throw new UsageError(`--${flag} is for cluster mode (--operator)`);
  if (!values.policy) throw new UsageError('--standalone needs --policy FILE');
  const node = values.node ?? hostname();

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

  // The exec script runs through agent/capture/exec/bpftrace-tracefs.sh, which runs $BPFTRACE.
  process.env.BPFTRACE = values.bpftrace;
  const stream =
    values.output === '-' ? process.stdout : createWriteStream(values.output, { flags: 'a', mode: 0o600 });
  const sink = new StampingSink(node, jsonLines(stream));
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

type AgentFlags = {
  node?: string | undefined;
  operator?: string | undefined;
  policy?: string | undefined;
  output: string;
  'handoff-dir': string;
  'state-dir': string;
  bpftrace: string;
  'bundle-root'?: string[] | undefined;
  'log-level': string;
  'token-file'?: string | undefined;
  'operator-ca'?: string | undefined;
  'queue-dir'?: string | undefined;
  'queue-max-bytes'?: string | undefined;
  'probe-port'?: string | undefined;
};

/** Cluster mode: the plan from the operator, records to it through the on-disk queue. */
async function clusterMain(values: AgentFlags, ackWaitMs: number): Promise<number> {
  const probePort = values['probe-port'] === undefined ? undefined : Number(values['probe-port']);
  if (probePort !== undefined && !(Number.isInteger(probePort) && probePort >= 1 && probePort <= 65535))
    throw new UsageError(`--probe-port must be a port number (1 to 65535): ${values['probe-port']}`);
  if (values.policy !== undefined) throw new UsageError('--policy is for --standalone');
  if (values.output !== '-')
    throw new UsageError('--output is for --standalone (records go to the operator)');
  if (!values.node) throw new UsageError('cluster mode needs --node NAME (the Kubernetes node name)');
  if (!values['token-file']) throw new UsageError('cluster mode needs --token-file FILE');
  let url: URL;
  try {
    url = new URL(values.operator!);
  } catch {
    throw new UsageError(`--operator: not a URL: ${values.operator}`);
  }
  if (!isSafeOperatorUrl(url))
    throw new UsageError(
      '--operator must be an https URL (plain http only to the loopback): the token is a secret',
    );
  const queueMaxBytes = Number(values['queue-max-bytes'] ?? DEFAULT_QUEUE_MAX_BYTES);
  if (!Number.isSafeInteger(queueMaxBytes) || queueMaxBytes < 1024 * 1024)
    throw new UsageError('--queue-max-bytes must be an integer of at least 1048576 (1 MiB)');
  let operatorCa: Buffer | undefined;
  if (values['operator-ca'] !== undefined) {
    try {
      operatorCa = await readFile(values['operator-ca']);
    } catch (error) {
      throw new UsageError(`--operator-ca: ${(error as Error).message}`);
    }
  }

  const logger = createLogger('agent', values['log-level']);
  const checks = preflight(values.bpftrace);
  for (const w of checks.warnings) logger.warn(w);
  if (checks.errors.length > 0)
    throw new UsageError(`this node cannot run the agent:\n  ${checks.errors.join('\n  ')}`);
  process.env.BPFTRACE = values.bpftrace;
  const stateDir = values['state-dir'];
  const cluster = await ClusterAgent.start({
    node: values.node,
    operator: url.href,
    tokenFile: values['token-file'],
    ...(operatorCa ? { operatorCa } : {}),
    stateDir,
    queueDir: values['queue-dir'] ?? join(stateDir, 'queue'),
    queueMaxBytes,
    logger,
    agent: {
      spoolDir: values['handoff-dir'],
      bpftrace: values.bpftrace,
      ackWaitMs,
      ...(values['bundle-root'] ? { bundleRoots: values['bundle-root'] } : {}),
    },
  });
  const probes =
    probePort === undefined
      ? undefined
      : new ProbeServer({
          port: probePort,
          readinessChecks: [() => cluster.planClient.notReadyReason],
          logger,
        });
  await probes?.listen();
  logger.info('Auditing', {
    detail: {
      boot: cluster.sink.boot,
      bpftrace: checks.bpftraceVersion,
      operator: url.origin,
      planVersion: cluster.plan.version,
    },
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  logger.info('Stopping');
  await probes?.close();
  await cluster.stop();
  logger.info('Stopped', {
    detail: { agent: cluster.agent.stats, reporter: cluster.reporter.stats, queue: cluster.queue.stats },
  });
  return 0;
}
