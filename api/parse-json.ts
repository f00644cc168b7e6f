/** JSON text from outside validated against a zod schema, as a value: never throws. */
import type { z } from 'zod';

export type JsonParse<T> =
  { ok: true; value: T } | { ok: false; reason: 'not-json' | 'invalid'; detail: string };

export function parseJson<S extends z.ZodType>(schema: S, text: string): JsonParse<z.output<S>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: 'not-json', detail: (error as Error).message };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '<root>'}: ${i.message}`).join('; ');
    return { ok: false, reason: 'invalid', detail };
  }
  return { ok: true, value: parsed.data };
}
