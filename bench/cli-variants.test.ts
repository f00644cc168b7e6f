import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkComparison, cliEntry, type Runtime } from './cli-variants.js';

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'cli-variants-test-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A checkout with this package.json and these files. */
function checkout(manifest: object, files: string[]): string {
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest));
  for (const file of files) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), '');
  }
  return dir;
}

describe('cliEntry', () => {
  it('finds the CLI where the revision\'s package.json "bin" says, as a map or a path', () => {
    expect(cliEntry(checkout({ bin: { 'container-auditor': 'bin/ca.js' } }, ['bin/ca.js']))).toBe(
      join(dir, 'bin', 'ca.js'),
    );
    expect(cliEntry(checkout({ bin: 'dist/cli/main.js' }, ['dist/cli/main.js']))).toBe(
      join(dir, 'dist', 'cli', 'main.js'),
    );
  });

  it('says what is missing', () => {
    expect(() => cliEntry(checkout({ bin: { other: 'x.js' } }, []))).toThrow(
      /no "bin" for container-auditor/,
    );
    expect(() => cliEntry(checkout({ bin: 'bin/ca.js' }, []))).toThrow(
      /bin\/ca\.js .* is missing: run make build/,
    );
  });
});

describe('checkComparison', () => {
  const runtime = (version: string): Runtime => ({ path: `/opt/${version}/node`, version, flags: [] });

  it('compares builds on one runtime, or runtimes on one build, not both at once', () => {
    expect(() => checkComparison([runtime('v24.0.0')], 'HEAD~1')).not.toThrow();
    expect(() => checkComparison([runtime('v22.0.0'), runtime('v24.0.0')], undefined)).not.toThrow();
    expect(() => checkComparison([runtime('v22.0.0'), runtime('v24.0.0')], 'HEAD~1')).toThrow(
      /--baseline compares two builds on one runtime/,
    );
  });
});
