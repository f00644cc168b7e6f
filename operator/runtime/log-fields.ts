/**
 * Log field names of the runtime, beside common/logging's LogField (which they should join once the
 * runtime settles), so that log queries spell them one way.
 */
export const RuntimeLogField = {
  queue: 'queue',
  key: 'key',
  resource: 'resource',
  lease: 'lease',
  identity: 'identity',
  holder: 'holder',
  delayMs: 'delayMs',
} as const;
