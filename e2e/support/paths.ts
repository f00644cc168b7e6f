import { join } from 'node:path';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const KUBECTL = join(REPO_ROOT, '.cache', 'bin', 'kubectl');
