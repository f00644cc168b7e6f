// Four tiers, one Jest project each, chosen by a test file's name and selected with --selectProjects:
//   unit        *.test.ts            no root, no cluster: logic, plus local processes and loopback servers
//                                    where they are the thing tested (bash's word splitting, the runc
//                                    wrapper's C unit, the fake operator's HTTP)
//   integration *.integration.test.ts  a real kube-apiserver + etcd that e2e/jest/global-setup.mjs starts
//   node        *.node.test.ts       root: real runc, containerd, bpftrace
//   real-node   *.real-node.test.ts  root: a whole one-node Kubernetes (e2e/jest/real-node-setup.mjs)
// The hostile-input suite is no tier: its files (*.hostile.*) sit in each of them, and `make test-hostile`
// picks them out with --testPathPatterns. scripts/test.sh runs the tiers in this order.
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
