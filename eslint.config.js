// Flat config: typescript-eslint's type-aware recommended rules on our TypeScript, plain rules elsewhere, and
// the layering of ARCHITECTURE.md ("Who may import whom") as import rules per folder.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** An import specifier that leaves its folder upwards and enters top-level folder `room` (`../../agent/x.js`). */
const into = (room) => `^(\\.\\./)+${room}(/|$)`;

// Why each edge is forbidden; the messages name ARCHITECTURE.md, where the whole picture is.
const WIRE = 'agent/ and operator/ never import each other: what they share is a wire format in api/';
const CONTRACT = 'api/ imports nothing of ours: it is the contract the other folders import';
const COMMON = 'common/ imports only api/: agent/ and operator/ build on it, not it on them';
const ENTRY = 'cli/ is the entry point that puts the product together: nothing of the product imports it';
const TEST_CODE = 'product code never imports tests, their helpers or tools: the build leaves them out';

/** Folders of tests, their helpers and tools (and `testdata/` anywhere): product code never imports them. */
const TEST_ROOMS = ['e2e', 'test-support', 'bench', 'charts', 'images', 'scripts'];

/**
 * The product's folders and the folders of ours each one must not import, with the reason. Their tests may
 * import test code (`e2e/support/`, `test-support/`, `testdata/`), and are otherwise held to the same edges:
 * a test that needs both the agent and the operator lives in e2e/.
 */
const LAYERS = {
  api: [[['common', 'agent', 'operator', 'cli'], CONTRACT]],
  common: [[['agent', 'operator', 'cli'], COMMON]],
  agent: [
    [['operator'], WIRE],
    [['cli'], ENTRY],
  ],
  operator: [
    [['agent'], WIRE],
    [['cli'], ENTRY],
  ],
  cli: [],
};

const MESSAGE_SUFFIX = ' (ARCHITECTURE.md, "Who may import whom").';
const TESTS = ['**/*.test.ts', '**/testdata/**'];

function restrictions(room, { testCode }) {
  const patterns = LAYERS[room].flatMap(([rooms, why]) =>
    rooms.map((to) => ({ regex: into(to), message: why + MESSAGE_SUFFIX })),
  );
  if (!testCode) {
    const message = TEST_CODE + MESSAGE_SUFFIX;
    patterns.push(...TEST_ROOMS.map((to) => ({ regex: into(to), message })));
    patterns.push({ regex: '(^|/)testdata(/|$)', message });
  }
  return { 'no-restricted-imports': ['error', { patterns }] };
}

// import() escapes no-restricted-imports, so below cli/ (whose launcher must check Node's version before it
// loads anything) product code imports statically, and every edge is checked.
const STATIC_ONLY = {
  'no-restricted-syntax': [
    'error',
    {
      selector: 'ImportExpression',
      message: 'import statically, so that the layering rules see the edge' + MESSAGE_SUFFIX,
    },
  ],
};

/** Per folder: its product files, then its tests and test data (a later block replaces the rule's options). */
const layering = Object.keys(LAYERS).flatMap((room) => [
  {
    name: `layering/${room}`,
    files: [`${room}/**/*.{ts,js,mjs}`],
    ignores: TESTS,
    rules: { ...restrictions(room, { testCode: false }), ...(room === 'cli' ? {} : STATIC_ONLY) },
  },
  {
    name: `layering/${room}-tests`,
    files: TESTS.map((glob) => `${room}/${glob}`),
    rules: restrictions(room, { testCode: true }),
  },
]);

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.cache/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { console: 'readonly', process: 'readonly' },
    },
  },
  ...layering,
);
