/**
 * What the prose says a capture script prints, read back for the format tests (readline/format.test.ts,
 * exec/format.test.ts), which compare it with the description the parser uses (format.ts).
 */

/** The rows of the first Markdown table under the `## heading`, header and rule left out: cells trimmed, code spans unwrapped. */
export function markdownTable(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${heading}`);
  if (start < 0) throw new Error(`no heading "## ${heading}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    if (!line.startsWith('|')) {
      if (rows.length > 0) break;
      continue;
    }
    rows.push(
      line
        .slice(1, line.trimEnd().length - 1)
        .split(' | ')
        .map((cell) => cell.trim().replace(/^`([^`]*)`$/, '$1')),
    );
  }
  return rows.slice(2);
}

/**
 * The output lines a template's header comment lists (`//   C <pid> <tid> ... <w0> .. <w7>   meaning`), as the
 * READMEs write them (`C pid tid ... w0 … w7`): the part before the meaning, which is set off by two spaces.
 */
export function templateListing(template: string, tags: readonly string[]): string[] {
  return template
    .split('\n')
    .map((l) => /^\/\/\s+(\S.*?)(?:\s{2,}.*)?$/.exec(l)?.[1] ?? '')
    .filter((syntax) =>
      tags.some((tag) => syntax === tag || syntax.startsWith(`${tag} `) || syntax.startsWith(`${tag}[`)),
    )
    .map((syntax) => syntax.replace(/<([^>]+)>/g, '$1').replace(' .. ', ' … '));
}
