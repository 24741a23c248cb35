/**
 * Strict parsing of request bodies and query strings: anything unknown or
 * malformed is `INVALID_ARGUMENT`, so a typo never silently does something else.
 */
import type { FastifyRequest } from 'fastify';
import { OverthereError, type OutputStream } from '@overthere/core';
import { validateJson, type JsonSchema } from './json-schema.js';
import { resolveComponent } from './wire-schemas.js';

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

/**
 * The JSON body, validated against `schema`. With `optional`, a request
 * without a body counts as `{}`.
 */
export function jsonBody(
  request: FastifyRequest,
  schema: JsonSchema,
  options: { optional?: boolean } = {},
): Record<string, unknown> {
  const body = request.body;
  if (body === undefined && options.optional) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) {
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
      invalid('expected a JSON object body (Content-Type: application/json)');
    }
    invalid('body must be a JSON object');
  }
  const error = validateJson(schema, body, 'body', resolveComponent);
  if (error !== undefined) invalid(error);
  return body as Record<string, unknown>;
}

/** How a query parameter may appear: once, or any number of times. */
export type QueryShape = Readonly<Record<string, 'single' | 'multiple'>>;

/**
 * The query parameters, checked against `shape`: unknown names and repeated
 * single parameters are `INVALID_ARGUMENT`. Multiple parameters come back as arrays.
 */
export function queryParameters(
  request: FastifyRequest,
  shape: QueryShape,
): Record<string, string | string[] | undefined> {
  const query = (request.query ?? {}) as Record<string, string | string[] | undefined>;
  const result: Record<string, string | string[] | undefined> = {};
  for (const [name, value] of Object.entries(query)) {
    const kind = shape[name];
    if (kind === undefined) invalid(`unknown query parameter ${JSON.stringify(name)}`);
    if (kind === 'single' && Array.isArray(value)) {
      invalid(`query parameter ${name} may be given only once`);
    }
    result[name] = kind === 'multiple' && typeof value === 'string' ? [value] : value;
  }
  return result;
}

/** A non-negative integer from a query parameter, or undefined when absent. */
export function integerParameter(
  name: string,
  value: string | string[] | undefined,
  maximum = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d{1,16}$/.test(value)) {
    invalid(`${name} must be a non-negative integer`);
  }
  const number = Number(value);
  if (number > maximum) invalid(`${name} must be <= ${maximum}`);
  return number;
}

/** `1`/`true`/`yes`/empty → true, `0`/`false`/`no` → false, absent → `fallback`. */
export function booleanParameter(
  name: string,
  value: string | string[] | undefined,
  fallback: boolean,
): boolean {
  if (value === undefined) return fallback;
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (lower === '' || lower === '1' || lower === 'true' || lower === 'yes') return true;
    if (lower === '0' || lower === 'false' || lower === 'no') return false;
  }
  return invalid(`${name} must be 1, true, 0 or false`);
}

/** `stream=stdout|stderr|both` as the streams to read. */
export function streamsParameter(value: string | string[] | undefined): readonly OutputStream[] {
  if (value === undefined || value === 'both') return ['stdout', 'stderr'];
  if (value === 'stdout' || value === 'stderr') return [value];
  return invalid('stream must be stdout, stderr or both');
}
