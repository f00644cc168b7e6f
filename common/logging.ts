/**
 * Structured logs: winston, JSON, one line per event. Field names are constants, and this is the one set of
 * them (agent and operator alike), so that every component spells them the same way and log queries keep
 * working.
 */
import winston from 'winston';

export const LogField = {
  component: 'component',
  containerId: 'containerId',
  file: 'file',
  path: 'path',
  port: 'port',
  reason: 'reason',
  detail: 'detail',
  error: 'error',
  verb: 'verb',
  count: 'count',
  status: 'status',
  delayMs: 'delayMs',
  // Kubernetes objects: what a line is about.
  node: 'node',
  namespace: 'namespace',
  name: 'name',
  pod: 'pod',
  policy: 'policy',
  nodes: 'nodes',
  resource: 'resource',
  // The operator's runtime: work queue and leader election.
  queue: 'queue',
  key: 'key',
  lease: 'lease',
  identity: 'identity',
  holder: 'holder',
} as const;

export type Logger = winston.Logger;

export function createLogger(component: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return winston.createLogger({
    level,
    defaultMeta: { [LogField.component]: component },
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    // stderr: stdout belongs to the data (the standalone agent writes its records there).
    transports: [new winston.transports.Console({ stderrLevels: Object.keys(winston.config.npm.levels) })],
  });
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true });
}
