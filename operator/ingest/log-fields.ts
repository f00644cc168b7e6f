/** Log field names used by ingestion, beside the shared ones (STYLE.md: field names are constants). */
import { LogField } from '../../common/logging.js';

export const Field = {
  ...LogField,
  node: 'node',
  namespace: 'namespace',
  name: 'name',
  pod: 'pod',
  policy: 'policy',
  status: 'status',
  path: 'path',
} as const;
