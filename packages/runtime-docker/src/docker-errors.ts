/** Docker Engine failures as OverthereErrors with codes callers can act on. */
import { OverthereError, type ErrorCode } from '@overthere/core';

/** What dockerode attaches to its errors. */
interface EngineError {
  statusCode?: number;
  code?: string;
  reason?: string;
  json?: { message?: string } | null;
  message?: string;
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'EACCES',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);

/** The daemon's own message, when it sent one. */
export function engineMessage(error: unknown): string {
  const engine = (error ?? {}) as EngineError;
  const fromJson = engine.json?.message;
  if (typeof fromJson === 'string' && fromJson.length > 0) return fromJson.trim();
  return (engine.message ?? String(error)).replace(/^\(HTTP code \d+\)\s*/, '').trim();
}

/** HTTP status of an Engine API error, if it is one. */
export function engineStatus(error: unknown): number | undefined {
  const status = (error as EngineError | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** True when the daemon could not be reached at all. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as EngineError | undefined)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

/**
 * Wrap an Engine failure: unreachable daemon → `UNAVAILABLE`; otherwise
 * `fallback` with `what` and the daemon's message.
 */
export function engineError(
  error: unknown,
  what: string,
  fallback: ErrorCode,
  daemon: string,
): OverthereError {
  if (OverthereError.is(error)) return error;
  if (isConnectionError(error)) {
    return new OverthereError(
      'UNAVAILABLE',
      `${what}: cannot reach the Docker daemon at ${daemon}: ${engineMessage(error)}`,
      { cause: error },
    );
  }
  return new OverthereError(fallback, `${what}: ${engineMessage(error)}`, { cause: error });
}
