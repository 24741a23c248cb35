/**
 * levityd's logger: pino-compatible, one line per entry on stderr in the
 * style of Go's `log` package that the original used
 * (`2006/01/02 15:04:05 warn: message {"taskId":"…"}`). Nothing logs the token.
 */
import type { Logger } from '@overthere/core';
import { goLogPrefix } from './go-format.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const LEVEL_VALUES: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Infinity,
};

type Write = (line: string) => void;

function serialize(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' || typeof code === 'number'
      ? `${value.message} (${code})`
      : value.message;
  }
  return value;
}

/** A logger writing entries at `level` and above. */
export function createStderrLogger(
  level: LogLevel,
  bindings: Record<string, unknown> = {},
  write: Write = (line) => void process.stderr.write(line),
): Logger {
  const threshold = LEVEL_VALUES[level];
  const method =
    (name: Exclude<LogLevel, 'silent'>) =>
    (first: Record<string, unknown> | string, message?: string): void => {
      if (LEVEL_VALUES[name] < threshold) return;
      const fields: Record<string, unknown> = { ...bindings };
      let text: string;
      if (typeof first === 'string') {
        text = first;
      } else {
        for (const [key, item] of Object.entries(first)) fields[key] = serialize(item);
        text = message ?? '';
      }
      let detail = '';
      if (Object.keys(fields).length > 0) {
        try {
          detail = ` ${JSON.stringify(fields)}`;
        } catch {
          detail = '';
        }
      }
      write(`${goLogPrefix()}${name}: ${text}${detail}\n`);
    };
  return {
    trace: method('trace'),
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
    fatal: method('fatal'),
    child: (more) => createStderrLogger(level, { ...bindings, ...more }, write),
  };
}
