import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { renderCrdFiles } from './definitions.js';

const root = join(import.meta.dirname, '..', '..');

type Node = Record<string, unknown>;

/** Walks every schema node with its path. */
function* nodes(schema: Node, path = ''): Generator<[string, Node]> {
  yield [path, schema];
  for (const [name, sub] of Object.entries((schema.properties as Record<string, Node> | undefined) ?? {})) {
    yield* nodes(sub, `${path}.${name}`);
  }
  if (schema.items) yield* nodes(schema.items as Node, `${path}[]`);
  if (typeof schema.additionalProperties === 'object')
    yield* nodes(schema.additionalProperties as Node, `${path}{}`);
}

describe('generated CRDs', () => {
  const files = renderCrdFiles();

  it.each(files.map((f) => [f.path, f] as const))(
    '%s matches the zod schemas (run `make crds`)',
    (path, file) => {
      expect(readFileSync(join(root, path), 'utf8')).toBe(file.content);
    },
  );

  it.each(files.map((f) => [f.path, f] as const))('%s is structural', (_path, file) => {
    const crd = load(file.content) as Node;
    const version = (crd.spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]!;
    for (const [path, node] of nodes(version.schema.openAPIV3Schema)) {
      expect([path, typeof node.type]).toEqual([path, 'string']);
      expect([path, 'properties' in node && 'additionalProperties' in node]).toEqual([path, false]);
      for (const key of ['$ref', 'anyOf', 'oneOf', 'allOf'])
        expect([path, key in node]).toEqual([path, false]);
    }
  });

  it('documents every field', () => {
    for (const file of files) {
      const crd = load(file.content) as Node;
      const version = (crd.spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]!;
      const { spec, status } = version.schema.openAPIV3Schema.properties as Record<string, Node>;
      const undocumented = [...nodes(spec!, '.spec'), ...nodes(status!, '.status')]
        .filter(([path, node]) => !path.endsWith('[]') && !path.endsWith('{}') && !node.description)
        .map(([path]) => path);
      expect([file.path, undocumented]).toEqual([file.path, []]);
    }
  });
});
