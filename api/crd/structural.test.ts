import { StructuralSchemaError, toStructural } from './structural.js';

describe('toStructural', () => {
  it("drops zod's strictness, which the API server expresses with strict field validation", () => {
    const out = toStructural({
      type: 'object',
      properties: { a: { type: 'string' } },
      additionalProperties: false,
    });
    expect(out).toEqual({ type: 'object', properties: { a: { type: 'string' } } });
  });

  it('keeps maps (additionalProperties without properties)', () => {
    const map = { type: 'object', additionalProperties: { type: 'string' } };
    expect(toStructural(map)).toEqual(map);
  });

  it("drops zod's date-time pattern and safe-integer bounds, keeps real bounds", () => {
    const out = toStructural({
      type: 'object',
      properties: {
        t: { type: 'string', format: 'date-time', pattern: '^\\d{4}-.*$' },
        n: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: 10 },
      },
    });
    expect(out.properties).toEqual({
      t: { type: 'string', format: 'date-time' },
      n: { type: 'integer', maximum: 10 },
    });
  });

  it("spells out an object's default from its properties' defaults, nested", () => {
    const out = toStructural({
      type: 'object',
      default: {},
      properties: {
        a: { type: 'boolean', default: true },
        b: { type: 'string' },
        c: { type: 'object', default: {}, properties: { d: { type: 'integer', default: 4 } } },
      },
    });
    expect(out.default).toEqual({ a: true, c: { d: 4 } });
  });

  it('turns const into a one-value enum', () => {
    expect(toStructural({ type: 'string', const: 'x' })).toEqual({ type: 'string', enum: ['x'] });
  });

  it.each([
    [{ type: 'object', properties: { a: { anyOf: [{ type: 'string' }, { type: 'integer' }] } } }, '.a'],
    [{ type: 'object', properties: { a: { $ref: '#/$defs/A' } } }, '.a'],
    [{ type: 'object', properties: { a: { description: 'untyped' } } }, 'needs a type'],
    [{ type: 'object', properties: { a: { type: 'object' } } }, 'object without properties'],
    [
      { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: { type: 'string' } },
      'beside',
    ],
  ])('refuses what is not structural (%#)', (schema, reason) => {
    expect(() => toStructural(schema)).toThrow(StructuralSchemaError);
    expect(() => toStructural(schema)).toThrow(reason);
  });
});
