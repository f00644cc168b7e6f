#!/usr/bin/env node
// The package's executable (package.json's bin, the images' ENTRYPOINT): checks the Node.js version, then
// runs the compiled cli/main.ts (make build writes dist/). Plain JavaScript, so that it runs before any build
// and on an older Node.js, to say what is wrong.
import { existsSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

// package.json's engines: older Node lines are out of support, and the dependencies need this one.
const NEEDED_MAJOR = 24;
if (Number(process.versions.node.split('.')[0]) < NEEDED_MAJOR) {
  process.stderr.write(
    `container-auditor: Node.js ${NEEDED_MAJOR} or newer is needed, this is ${process.version} (${process.execPath}); ` +
      'in a checkout, `make build` installs it into .cache/node/bin\n',
  );
  process.exit(2);
}
const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('container-auditor: not built yet; run `make build` first\n');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
