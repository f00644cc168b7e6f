#!/usr/bin/env node
// The package's executable: runs the compiled CLI (make build writes dist/).
import { existsSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('container-auditor: not built yet; run `make build` first\n');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
