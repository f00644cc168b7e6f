/** The test harness's command line (cli.ts): `node dist/e2e/harness/main.js help`. */
import { runHarness } from './cli.js';

process.exitCode = await runHarness(process.argv.slice(2), {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  env: process.env,
});
