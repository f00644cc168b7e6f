/** What became of one record handed to a writer; the API errors the writers tell apart (common/kube/errors). */
export {
  describeError,
  isAlreadyExists,
  isConflict,
  isNotFound,
  isTransient,
} from '../../common/kube/errors.js';

/** accepted: written now; duplicate: an earlier delivery wrote it; failed: not written (the agent retries). */
export type WriteOutcome = 'accepted' | 'duplicate' | 'failed';
