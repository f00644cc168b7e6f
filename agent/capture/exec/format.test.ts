import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineSyntax } from '../output-format.js';
import { markdownTable } from '../testdata/output-docs.js';
import { EXEC_LINES } from './format.js';
import { EXEC_CHUNK_BYTES } from './script.js';

describe('the description of exec.bt.tpl’s output', () => {
  it('is what the README’s table says, row for row', () => {
    const readme = readFileSync(join(import.meta.dirname, 'README.md'), 'utf8');
    expect(markdownTable(readme, 'Output (text mode, one event per line)')).toEqual(
      Object.entries(EXEC_LINES).map(([tag, f]) => [lineSyntax(tag, f), f.meaning]),
    );
  });

  it('has chunk lines of EXEC_CHUNK_BYTES', () => {
    for (const tag of ['P', 'Q', 'A'] as const) expect(EXEC_LINES[tag].words * 8).toBe(EXEC_CHUNK_BYTES);
  });
});
