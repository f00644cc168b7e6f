import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineSyntax, tallySyntax } from '../output-format.js';
import { markdownTable, templateListing } from '../testdata/output-docs.js';
import { READLINE_LINES, READLINE_TALLIES } from './format.js';
import { CHUNK_BYTES } from './script.js';

const read = (file: string): string => readFileSync(join(import.meta.dirname, file), 'utf8');
const lines = Object.entries(READLINE_LINES).map(([tag, f]) => [lineSyntax(tag, f), f.meaning]);
const tallies = Object.entries(READLINE_TALLIES).map(([name, f]) => [tallySyntax(name, f), f.meaning]);

describe('the description of readline.bt.tpl’s output', () => {
  it('is what the README’s table says, row for row', () => {
    expect(markdownTable(read('README.md'), 'Output (text mode, one event per line)')).toEqual([
      ...lines,
      ...tallies,
    ]);
  });

  it('is what the template’s header lists', () => {
    const tags = [...Object.keys(READLINE_LINES), ...Object.keys(READLINE_TALLIES).map((n) => `@${n}`)];
    const listed = templateListing(read('readline.bt.tpl'), tags);
    expect(listed).toEqual([...lines, ...tallies].map(([syntax]) => syntax));
  });

  it('has chunk lines of CHUNK_BYTES', () => {
    expect(READLINE_LINES.C.words * 8).toBe(CHUNK_BYTES);
    expect(READLINE_LINES.L.words * 8).toBe(CHUNK_BYTES);
  });
});
