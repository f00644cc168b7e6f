/** Builds and runs the C unit tests of the wrapper's pure parts (runc-wrapper/test/unit_tests.c). */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const dir = import.meta.dirname;

it('passes the C unit tests (argument parsing, JSON)', () => {
  const build = spawnSync('make', ['-s', '-C', dir, 'test/unit-tests'], { encoding: 'utf8' });
  expect(build.stderr).toBe('');
  expect(build.status).toBe(0);
  const run = spawnSync(join(dir, 'test', 'unit-tests'), { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  expect(run.stdout).toMatch(/: [1-9]\d* passed, 0 failed/);
  expect(run.status).toBe(0);
});
