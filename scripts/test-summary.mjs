// Adds up Jest's --json results of every tier into the one closing line CI reads:
// "tests: N passed, N failed". Arguments: result files..., then the number of failed non-Jest steps.
// Before it, the hostile-input suite's share (files named *.hostile.*.test.ts, in whichever tier): a run in
// which that suite ran no test at all counts as a failure, so it cannot vanish from CI unnoticed.
import { existsSync, readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const failedSteps = Number(args.pop() ?? 0);
let passed = 0;
let failed = 0;
const hostile = { files: 0, passed: 0, failed: 0 };
for (const file of args.filter((f) => existsSync(f))) {
  const result = JSON.parse(readFileSync(file, 'utf8'));
  passed += result.numPassedTests;
  failed += result.numFailedTests;
  // A suite that failed to load counts no test at all: count it as a failure so it cannot pass unseen.
  failed += result.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0).length;
  for (const suite of result.testResults.filter((s) => /\.hostile\./.test(s.name))) {
    hostile.files += 1;
    hostile.passed += suite.assertionResults.filter((a) => a.status === 'passed').length;
    hostile.failed += suite.assertionResults.filter((a) => a.status === 'failed').length;
  }
}
const hostileMissing = args.length > 0 && hostile.passed + hostile.failed === 0;
console.log(
  `\nhostile-input suite: ${hostile.passed} passed, ${hostile.failed} failed, in ${hostile.files} files` +
    (hostileMissing ? ' (no test ran: counted as a failure)' : ''),
);
console.log(`tests: ${passed} passed, ${failed + failedSteps + (hostileMissing ? 1 : 0)} failed`);
