/**
 * Libraries never print: they log through an injected pino-compatible logger.
 */

/** One pino-style log method: `(object, message)` or `(message)`. */
export interface LogFunction {
  (object: Record<string, unknown>, message?: string): void;
  (message: string): void;
}

/** The subset of pino's logger that overthere packages call. A pino logger satisfies it. */
export interface Logger {
  trace: LogFunction;
  debug: LogFunction;
  info: LogFunction;
  warn: LogFunction;
  error: LogFunction;
  fatal: LogFunction;
  /** A logger whose lines carry `bindings`. */
  child(bindings: Record<string, unknown>): Logger;
}

const ignore: LogFunction = () => undefined;

/** A logger that drops everything: the default for every library. */
export const noopLogger: Logger = {
  trace: ignore,
  debug: ignore,
  info: ignore,
  warn: ignore,
  error: ignore,
  fatal: ignore,
  child: () => noopLogger,
};
