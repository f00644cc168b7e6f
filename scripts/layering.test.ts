/**
 * The layering of ARCHITECTURE.md as eslint.config.js enforces it: each forbidden edge, written in a file of
 * the folder it starts from, fails lint with the reason; the allowed edges beside it pass. The repository's
 * own config is loaded as `npx eslint` loads it; only the layering rules run, without type information (they
 * need none), so that a file that does not exist can be linted from its text.
 */
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { REPO_ROOT } from '../e2e/support/paths.js';

const LAYERING_RULES = new Set(['no-restricted-imports', 'no-restricted-syntax']);
const eslint = new ESLint({
  cwd: REPO_ROOT,
  ruleFilter: ({ ruleId }) => LAYERING_RULES.has(ruleId),
  overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
});

/** The messages lint gives `code` as the file `path` (relative to the repository). */
async function lint(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(REPO_ROOT, path) });
  return result!.messages.map((m) => `${m.ruleId ?? 'parser'}: ${m.message}`);
}

const WIRE = 'agent/ and operator/ never import each other';
const CONTRACT = 'api/ imports nothing of ours';
const COMMON = 'common/ imports only api/';
const ENTRY = 'cli/ is the entry point';
const TEST_CODE = 'product code never imports tests, their helpers or tools';
const DYNAMIC = 'import statically';

describe('forbidden imports fail lint, with the reason', () => {
  it.each([
    ['agent/cluster/reporter.ts', "import { x } from '../../operator/ingest/server.js';", WIRE],
    ['agent/agent.ts', "import { x } from '../operator/operator.js';", WIRE],
    ['agent/cluster/reporter.test.ts', "import { x } from '../../operator/ingest/server.js';", WIRE],
    ['agent/cluster/testdata/x.ts', "import { x } from '../../../operator/ingest/server.js';", WIRE],
    ['operator/ingest/server.ts', "import { x } from '../../agent/records/build.js';", WIRE],
    ['operator/ingest/server.ts', "import type { X } from '../../agent/records/build.js';", WIRE],
    ['operator/ingest/server.ts', "export { x } from '../../agent/records/build.js';", WIRE],
    ['operator/ingest/server.ts', "export * from '../../agent/records/build.js';", WIRE],
    ['operator/operator.test.ts', "import { x } from '../agent/agent.js';", WIRE],
    ['api/records/v1.ts', "import { x } from '../../common/logging.js';", CONTRACT],
    ['api/parse-json.ts', "import { x } from '../agent/agent.js';", CONTRACT],
    ['api/v1alpha1/rules.ts', "import { x } from '../../operator/operator.js';", CONTRACT],
    ['api/crd/main.ts', "import { x } from '../../cli/main.js';", CONTRACT],
    ['api/crd/structural.test.ts', "import { x } from '../../common/logging.js';", CONTRACT],
    ['common/logging.ts', "import { x } from '../agent/main.js';", COMMON],
    ['common/kube/rest.ts', "import { x } from '../../operator/runtime/informer.js';", COMMON],
    ['common/files.ts', "import { x } from '../cli/main.js';", COMMON],
    ['agent/main.ts', "import { x } from '../cli/node-flags.js';", ENTRY],
    ['operator/main.ts', "import { x } from '../cli/main.js';", ENTRY],
    ['agent/cluster/reporter.ts', "import { x } from '../../e2e/support/wait.js';", TEST_CODE],
    ['agent/cluster/reporter.ts', "import { x } from './testdata/fake.js';", TEST_CODE],
    ['operator/operator.ts', "import { x } from '../test-support/fake-clock.js';", TEST_CODE],
    ['operator/ingest/server.ts', "import { x } from '../../bench/x.js';", TEST_CODE],
    ['common/clock.ts', "import { x } from '../scripts/x.js';", TEST_CODE],
    ['api/v1alpha1/index.ts', "import { x } from './testdata/bad-policies.js';", TEST_CODE],
    ['cli/main.ts', "import { x } from '../e2e/support/paths.js';", TEST_CODE],
    ['cli/main.ts', "import { x } from '../images/x.js';", TEST_CODE],
    ['operator/ingest/server.ts', "export const m = () => import('../../agent/main.js');", DYNAMIC],
    ['common/logging.ts', "export const m = () => import('./clock.js');", DYNAMIC],
  ])('%s: %s', async (path, code, reason) => {
    const messages = await lint(path, code);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain(reason);
    expect(messages[0]).toContain('ARCHITECTURE.md');
  });
});

describe('allowed imports pass', () => {
  it.each([
    ['agent/cluster/reporter.ts', "import { x } from '../../api/agentapi/v1.js';"],
    ['agent/cluster/reporter.ts', "import { x } from '../../common/logging.js';"],
    ['agent/cluster/reporter.ts', "import { x } from './operator-client.js';"],
    ['agent/agent.ts', "import { x } from './records/build.js';"],
    ['operator/ingest/server.ts', "import { x } from '../../api/parse-json.js';"],
    ['operator/ingest/server.ts', "import { x } from '../../common/kube/errors.js';"],
    ['common/logging.ts', "import { x } from '../api/v1alpha1/index.js';"],
    ['api/records/v1.ts', "import { z } from 'zod';"],
    ['api/stored-size.ts', "import { readFileSync } from 'node:fs';"],
    ['api/v1alpha1/index.ts', "import { x } from './meta.js';"],
    ['api/crd/main.ts', "import { x } from '../v1alpha1/index.js';"],
    ['cli/main.ts', "import { x } from '../agent/main.js';\nimport { y } from '../operator/main.js';"],
    ['agent/cluster/reporter.test.ts', "import { x } from '../../e2e/support/wait.js';"],
    ['agent/cluster/reporter.test.ts', "import { x } from '../../test-support/fake-operator.js';"],
    ['operator/ingest/server.test.ts', "import { x } from './testdata/fakes.js';"],
    ['api/crd/crd.integration.test.ts', "import { x } from '../../e2e/support/cluster.js';"],
    [
      'e2e/agent-operator/x.test.ts',
      "import { x } from '../../agent/main.js';\nimport { y } from '../../operator/main.js';",
    ],
    ['bench/x.ts', "import { x } from '../agent/main.js';\nimport { y } from '../operator/main.js';"],
    ['test-support/x.ts', "import { x } from '../e2e/support/credentials.js';"],
  ])('%s: %s', async (path, code) => {
    expect(await lint(path, code)).toEqual([]);
  });
});
