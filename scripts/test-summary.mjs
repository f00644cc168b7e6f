// Adds up Jest's --json results of every tier into the one closing line CI reads:
// "tests: N passed, N failed". Arguments: result files..., then the number of failed non-Jest steps.
import { existsSync, readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const failedSteps = Number(args.pop() ?? 0);
let passed = 0;
let failed = 0;
for (const file of args.filter((f) => existsSync(f))) {
  const result = JSON.parse(readFileSync(file, 'utf8'));
  passed += result.numPassedTests;
  failed += result.numFailedTests;
  // A suite that failed to load counts no test at all: count it as a failure so it cannot pass unseen.
  failed += result.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0).length;
}
console.log(`\ntests: ${passed} passed, ${failed + failedSteps} failed`);
