/**
 * One error type for every package. Codes form a closed table so transports can
 * map them to wire statuses without knowing where an error came from.
 */

/** The closed set of error codes. `docs/errors.md` describes each one. */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'CONFLICT',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'UNSUPPORTED',
  'SPAWN_FAILED',
  'UNAVAILABLE',
  'TIMEOUT',
  'PAYLOAD_TOO_LARGE',
  'INTERNAL',
] as const;

/** A machine-readable error code. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** HTTP status for each code; the one table every HTTP-speaking package uses. */
export const HTTP_STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 412,
  UNSUPPORTED: 501,
  SPAWN_FAILED: 422,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
};

/** The wire form of an error: what transports send and clients rebuild from. */
export interface SerializedError {
  code: ErrorCode;
  message: string;
}

const MARKER = Symbol.for('overthere.error');

/** Options for {@link OverthereError}. */
export interface OverthereErrorOptions {
  /** The underlying error, kept for logs and debugging. */
  cause?: unknown;
  /** Extra machine-readable detail, e.g. `{ taskId }`. Sent on the wire only if a transport chooses to. */
  details?: Record<string, unknown>;
}

/** The error every overthere package throws for an expected failure. */
export class OverthereError extends Error {
  /** Machine-readable code from {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  /** Extra detail, if any. */
  readonly details: Record<string, unknown> | undefined;
  declare readonly [MARKER]: true;

  constructor(code: ErrorCode, message: string, options: OverthereErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OverthereError';
    this.code = code;
    this.details = options.details;
    Object.defineProperty(this, MARKER, { value: true });
  }

  /** True for an OverthereError from any copy of this package (survives duplicate installs). */
  static is(value: unknown): value is OverthereError {
    return (
      typeof value === 'object' &&
      value !== null &&
      (value as Record<symbol, unknown>)[MARKER] === true
    );
  }

  /** True when `value` is an OverthereError with the given code. */
  static hasCode(value: unknown, code: ErrorCode): value is OverthereError {
    return OverthereError.is(value) && value.code === code;
  }

  /** Rebuild an error received on the wire. Unknown codes become `INTERNAL`. */
  static fromJSON(value: { code?: unknown; message?: unknown }): OverthereError {
    const code = isErrorCode(value.code) ? value.code : 'INTERNAL';
    const message = typeof value.message === 'string' ? value.message : 'unknown error';
    return new OverthereError(code, message);
  }

  /** The wire form `{code, message}`. */
  toJSON(): SerializedError {
    return { code: this.code, message: this.message };
  }
}

/** True when `value` is one of the known error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Any thrown value as an OverthereError: OverthereErrors pass through, anything else becomes `INTERNAL`. */
export function toOverthereError(error: unknown): OverthereError {
  if (OverthereError.is(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new OverthereError('INTERNAL', message, { cause: error });
}
