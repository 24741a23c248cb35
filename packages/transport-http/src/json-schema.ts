/**
 * A small JSON Schema (2020-12 subset) validator. The request schemas are
 * written once and serve twice: they validate requests here and they are the
 * schemas of the OpenAPI document, so the document cannot drift from what the
 * server accepts. Fastify's own validator is not used because its defaults
 * (remove unknown properties, coerce types) would silently accept what this
 * protocol rejects.
 */

/** The JSON types the validator knows. */
export type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'null';

/** The subset of JSON Schema the protocol uses. */
export interface JsonSchema {
  type?: JsonType | readonly JsonType[];
  description?: string;
  properties?: Readonly<Record<string, JsonSchema>>;
  required?: readonly string[];
  /** `false` rejects unknown properties; a schema validates their values. */
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: readonly (string | number | boolean | null)[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  /** A reference into the OpenAPI components (documentation only; see `resolve`). */
  $ref?: string;
  examples?: readonly unknown[];
  format?: string;
  readOnly?: boolean;
}

function typeOf(value: unknown): JsonType | 'undefined' | 'other' {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number':
      return Number.isFinite(value) ? (Number.isInteger(value) ? 'integer' : 'number') : 'other';
    case 'object':
      return 'object';
    case 'undefined':
      return 'undefined';
    default:
      return 'other';
  }
}

function matchesType(actual: ReturnType<typeof typeOf>, wanted: JsonType): boolean {
  return actual === wanted || (wanted === 'number' && actual === 'integer');
}

function describeType(type: JsonType | readonly JsonType[]): string {
  return typeof type === 'string' ? type : type.join(' or ');
}

/**
 * Validate `value` against `schema`. Returns undefined when it is valid, or a
 * message naming the first offending path (e.g. `tty.cols must be an integer`).
 * `resolve` looks up `$ref`s.
 */
export function validateJson(
  schema: JsonSchema,
  value: unknown,
  path: string,
  resolve: (ref: string) => JsonSchema | undefined = () => undefined,
): string | undefined {
  if (schema.$ref !== undefined) {
    const target = resolve(schema.$ref);
    if (target === undefined) return `${path}: unresolved schema ${schema.$ref}`;
    return validateJson(target, value, path, resolve);
  }
  const actual = typeOf(value);
  if (schema.type !== undefined) {
    const types: readonly JsonType[] =
      typeof schema.type === 'string' ? [schema.type] : schema.type;
    if (!types.some((type) => matchesType(actual, type))) {
      return `${path} must be ${describeType(schema.type)}`;
    }
  }
  if (schema.enum !== undefined && !schema.enum.includes(value as string)) {
    return `${path} must be one of ${schema.enum.map((item) => JSON.stringify(item)).join(', ')}`;
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) {
      return `${path} must be >= ${schema.minimum}`;
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      return `${path} must be <= ${schema.maximum}`;
    }
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) {
      return `${path} must be at least ${schema.minLength} characters long`;
    }
    if (schema.maxLength !== undefined && value.length > schema.maxLength) {
      return `${path} must be at most ${schema.maxLength} characters long`;
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      return `${path} must have at least ${schema.minItems} items`;
    }
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      return `${path} must have at most ${schema.maxItems} items`;
    }
    if (schema.items !== undefined) {
      for (const [index, item] of value.entries()) {
        const error = validateJson(schema.items, item, `${path}[${index}]`, resolve);
        if (error !== undefined) return error;
      }
    }
  }
  if (actual === 'object') {
    const record = value as Record<string, unknown>;
    for (const name of schema.required ?? []) {
      if (record[name] === undefined) return `${join(path, name)} is required`;
    }
    for (const [name, item] of Object.entries(record)) {
      const property = schema.properties?.[name];
      if (property !== undefined) {
        const error = validateJson(property, item, join(path, name), resolve);
        if (error !== undefined) return error;
      } else if (schema.additionalProperties === false) {
        return `${join(path, name)} is not a known field`;
      } else if (typeof schema.additionalProperties === 'object') {
        const error = validateJson(schema.additionalProperties, item, join(path, name), resolve);
        if (error !== undefined) return error;
      }
    }
  }
  return undefined;
}

function join(path: string, name: string): string {
  const key = /^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name);
  return path === '' ? key : `${path}.${key}`;
}
