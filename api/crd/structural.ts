/**
 * Turns zod's JSON Schema (OpenAPI 3.0 flavour) into a structural schema, the form the API server requires
 * for a CRD (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
 * every node typed, no `$ref`, no `additionalProperties` beside `properties` (and never `false`: unknown
 * fields are refused by strict field validation and pruned otherwise), no unions. Pure; throws on anything it
 * cannot express rather than emitting a schema the server would reject or read differently.
 */

export type JsonSchema = { [key: string]: unknown };

const DROPPED_KEYS = new Set(['$schema', 'id', '$id']);
const REFUSED_KEYS = ['$ref', '$defs', 'definitions', 'anyOf', 'oneOf', 'allOf', 'not'];
const SAFE_INTEGER_BOUNDS = new Set([Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);

export class StructuralSchemaError extends Error {
  constructor(path: string, reason: string) {
    super(`${path || '<root>'}: ${reason}`);
    this.name = 'StructuralSchemaError';
  }
}

function isObject(v: unknown): v is JsonSchema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function toStructural(schema: JsonSchema, path = ''): JsonSchema {
  for (const key of REFUSED_KEYS) {
    if (key in schema) throw new StructuralSchemaError(path, `'${key}' cannot appear in a structural schema`);
  }
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (DROPPED_KEYS.has(key)) continue;
    switch (key) {
      case 'properties': {
        if (!isObject(value)) throw new StructuralSchemaError(path, 'properties must be an object');
        out.properties = Object.fromEntries(
          Object.entries(value).map(([name, sub]) => {
            if (!isObject(sub))
              throw new StructuralSchemaError(`${path}.${name}`, 'schema must be an object');
            return [name, toStructural(sub, `${path}.${name}`)];
          }),
        );
        break;
      }
      case 'items':
        if (!isObject(value)) throw new StructuralSchemaError(path, 'items must be a single schema');
        out.items = toStructural(value, `${path}[]`);
        break;
      case 'additionalProperties':
        // `false` is zod's strictness; the API server expresses it with strict field validation instead.
        if (value === false) break;
        if (!isObject(value)) throw new StructuralSchemaError(path, 'additionalProperties must be a schema');
        if ('properties' in schema) {
          throw new StructuralSchemaError(path, 'additionalProperties beside properties is not structural');
        }
        out.additionalProperties = toStructural(value, `${path}{}`);
        break;
      case 'pattern':
        // zod adds its own ISO pattern to date-time strings; `format: date-time` already says it, and the
        // pattern would only make CEL cost estimates and error messages worse.
        if (schema.format === 'date-time') break;
        out.pattern = value;
        break;
      case 'minimum':
      case 'maximum':
        // zod bounds every int by Number's safe range; that is no constraint worth writing into a CRD.
        if (typeof value === 'number' && SAFE_INTEGER_BOUNDS.has(value)) break;
        out[key] = value;
        break;
      case 'const':
        out.enum = [value];
        break;
      default:
        out[key] = value;
    }
  }
  materializeDefault(out);
  if (typeof out.type !== 'string' && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    throw new StructuralSchemaError(path, 'every node of a structural schema needs a type');
  }
  if (out.type === 'object' && !('properties' in out) && !('additionalProperties' in out)) {
    // An untyped object would be pruned to {}; say so explicitly instead.
    throw new StructuralSchemaError(path, 'object without properties or additionalProperties');
  }
  return out;
}

/**
 * Writes the defaults of an object's properties into the object's own default (zod says `default: {}` for
 * `prefault({})`). The API server checks a default against the CEL rules as written, before nested defaulting,
 * so `{}` would fail a rule such as `self.events || self.auditRecords`; spelt out, it is also what a reader
 * of the CRD wants to see.
 */
function materializeDefault(node: JsonSchema): void {
  if (!isObject(node.default) || !isObject(node.properties)) return;
  const filled: JsonSchema = { ...node.default };
  for (const [name, sub] of Object.entries(node.properties)) {
    if (!(name in filled) && isObject(sub) && 'default' in sub) filled[name] = sub.default;
  }
  node.default = filled;
}
