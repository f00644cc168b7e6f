/**
 * `container-auditor operator`: the operator's command line (operator.ts is the process).
 */
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../common/kube/config.js';
import { LogField, createLogger } from '../common/logging.js';
import { Operator } from './operator.js';

export const OPERATOR_USAGE = `Usage:
  container-auditor operator --tls-cert FILE --tls-key FILE [options]

Options:
  --kubeconfig FILE             default: $KUBECONFIG, else the in-cluster ServiceAccount
  --port N                      the agents' HTTPS endpoint (default 8443)
  --tls-cert FILE, --tls-key FILE   its certificate and key (reloaded when they change)
  --insecure-http               serve agents over plain HTTP (tests only; never in a cluster)
  --probe-port N                /healthz, /readyz, /metrics (default 8081)
  --agent-service-account NS/NAME   the agents' ServiceAccount (default $POD_NAMESPACE/container-auditor-agent)
  --lease-namespace NS          default $POD_NAMESPACE, else container-auditor
  --lease-name NAME             default container-auditor-operator
  --lease-duration-ms N, --renew-deadline-ms N, --retry-period-ms N   leader election (15000, 10000, 2000)
  --runtime-class NAME          the audit RuntimeClass (default container-auditor)
  --flush-ms N                  AuditRecord batching window (default 200)
  --log-level LEVEL             error, warn, info, debug (default info)`;

export class OperatorUsageError extends Error {}

function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new OperatorUsageError(`--${name} must be a non-negative integer`);
  return n;
}

export async function operatorMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      port: { type: 'string', default: '8443' },
      host: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'insecure-http': { type: 'boolean', default: false },
      'probe-port': { type: 'string', default: '8081' },
      'agent-service-account': { type: 'string' },
      'lease-namespace': { type: 'string' },
      'lease-name': { type: 'string', default: 'container-auditor-operator' },
      'lease-duration-ms': { type: 'string' },
      'renew-deadline-ms': { type: 'string' },
      'retry-period-ms': { type: 'string' },
      'runtime-class': { type: 'string' },
      'flush-ms': { type: 'string' },
      'log-level': { type: 'string', default: process.env.LOG_LEVEL ?? 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${OPERATOR_USAGE}\n`);
    return 0;
  }
  const podNamespace = process.env.POD_NAMESPACE;
  const account =
    values['agent-service-account'] ?? (podNamespace ? `${podNamespace}/container-auditor-agent` : undefined);
  const [saNamespace, saName, ...rest] = (account ?? '').split('/');
  if (!saNamespace || !saName || rest.length > 0)
    throw new OperatorUsageError('--agent-service-account NS/NAME is required (or set $POD_NAMESPACE)');
  const tls =
    values['tls-cert'] && values['tls-key']
      ? { certFile: values['tls-cert'], keyFile: values['tls-key'] }
      : undefined;
  if (!tls && !values['insecure-http'])
    throw new OperatorUsageError(
      '--tls-cert and --tls-key are required (agents send tokens: never over plain HTTP)',
    );

  const logger = createLogger('operator', values['log-level']);
  let loaded;
  try {
    loaded = loadKubeConfig(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {});
  } catch (error) {
    throw new OperatorUsageError((error as Error).message);
  }
  const leaseDurationMs = intOption('lease-duration-ms', values['lease-duration-ms']);
  const renewDeadlineMs = intOption('renew-deadline-ms', values['renew-deadline-ms']);
  const retryPeriodMs = intOption('retry-period-ms', values['retry-period-ms']);
  const flushMs = intOption('flush-ms', values['flush-ms']);
  const operator = new Operator({
    kubeConfig: loaded.kubeConfig,
    logger,
    port: intOption('port', values.port)!,
    ...(values.host ? { host: values.host } : {}),
    ...(tls ? { tls } : {}),
    ...(values['insecure-http'] ? { insecureHttp: true } : {}),
    probePort: intOption('probe-port', values['probe-port'])!,
    agentServiceAccount: { namespace: saNamespace, name: saName },
    lease: {
      namespace: values['lease-namespace'] ?? podNamespace ?? 'container-auditor',
      name: values['lease-name'],
      ...(leaseDurationMs !== undefined ? { durationMs: leaseDurationMs } : {}),
      ...(renewDeadlineMs !== undefined ? { renewDeadlineMs } : {}),
      ...(retryPeriodMs !== undefined ? { retryPeriodMs } : {}),
    },
    ...(values['runtime-class'] ? { runtimeClass: values['runtime-class'] } : {}),
    ...(flushMs !== undefined ? { flushMs } : {}),
  });
  logger.info('Starting', { [LogField.detail]: { kubeconfig: loaded.from, source: loaded.source } });
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await operator.start();
  await stopped;
  logger.info('Stopping');
  await operator.stop();
  logger.info('Stopped');
  return 0;
}
