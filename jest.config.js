// Tiers, selected with --selectProjects: `unit` (pure logic, no root, no network), `integration` (against a
// real kube-apiserver + etcd that e2e/jest/global-setup.mjs starts and stops), `node` (root: real runc,
// containerd, bpftrace) and `real-node` (root: a whole Kubernetes node, e2e/jest/real-node-setup.mjs).
const tsJest = [
  'ts-jest',
  { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { ignoreCodes: ['TS151001'] } },
];
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': tsJest },
  testPathIgnorePatterns: ['/node_modules/', '/dist/', '/.cache/'],
};

export default {
  // Global only (Jest ignores it per project): integration and node tests start real processes.
  testTimeout: 120_000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: [
        '<rootDir>/**/*.test.ts',
        '!**/*.integration.test.ts',
        '!**/*.node.test.ts',
        '!**/*.real-node.test.ts',
      ],
    },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/**/*.integration.test.ts'],
      globalSetup: '<rootDir>/e2e/jest/global-setup.mjs',
      globalTeardown: '<rootDir>/e2e/jest/global-teardown.mjs',
    },
    { ...common, displayName: 'node', testMatch: ['<rootDir>/**/*.node.test.ts'] },
    {
      // A real one-node Kubernetes (e2e/node/node.sh) with the images built from images/*/Dockerfile and the
      // chart installed by helm, as users run it.
      ...common,
      displayName: 'real-node',
      testMatch: ['<rootDir>/**/*.real-node.test.ts'],
      globalSetup: '<rootDir>/e2e/jest/real-node-setup.mjs',
      globalTeardown: '<rootDir>/e2e/jest/real-node-teardown.mjs',
    },
  ],
};
