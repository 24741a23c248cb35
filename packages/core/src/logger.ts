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

/**
 * A logger whose lines carry `bindings`, like `logger.child(bindings)`, made
 * without a child: each line goes to `logger` with the bindings merged in.
 * For loggers made per task or per process, where a pino child (which
 * serialises its bindings up front) cost more than the few lines they log.
 */
export function boundLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  return new BoundLogger(logger, bindings);
}

class BoundLogger implements Logger {
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Record<string, unknown>,
  ) {}

  trace(first: Record<string, unknown> | string, message?: string): void {
    this.log('trace', first, message);
  }
  debug(first: Record<string, unknown> | string, message?: string): void {
    this.log('debug', first, message);
  }
  info(first: Record<string, unknown> | string, message?: string): void {
    this.log('info', first, message);
  }
  warn(first: Record<string, unknown> | string, message?: string): void {
    this.log('warn', first, message);
  }
  error(first: Record<string, unknown> | string, message?: string): void {
    this.log('error', first, message);
  }
  fatal(first: Record<string, unknown> | string, message?: string): void {
    this.log('fatal', first, message);
  }
  child(bindings: Record<string, unknown>): Logger {
    return new BoundLogger(this.parent, { ...this.bindings, ...bindings });
  }

  private log(
    level: keyof Omit<Logger, 'child'>,
    first: Record<string, unknown> | string,
    message: string | undefined,
  ): void {
    if (typeof first === 'string') this.parent[level](this.bindings, first);
    else this.parent[level]({ ...this.bindings, ...first }, message);
  }
}
