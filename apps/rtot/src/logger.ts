/**
 * The app's logger: pino-compatible, one JSON line per entry on stderr, with no
 * dependency. Libraries get it injected; nothing here ever logs the secret.
 */
import type { Logger } from '@overthere/core';
import type { LogLevel } from './cli.js';

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
    const result: Record<string, unknown> = { type: value.name, message: value.message };
    if (value.stack !== undefined) result.stack = value.stack;
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) result.code = code;
    return result;
  }
  return value;
}

/** A logger writing lines at `level` and above. */
export function createStderrLogger(
  level: LogLevel,
  bindings: Record<string, unknown> = {},
  write: Write = (line) => void process.stderr.write(line),
): Logger {
  const threshold = LEVEL_VALUES[level];
  const method =
    (name: Exclude<LogLevel, 'silent'>) =>
    (first: Record<string, unknown> | string, message?: string): void => {
      const value = LEVEL_VALUES[name];
      if (value < threshold) return;
      const entry: Record<string, unknown> = { level: value, time: Date.now(), ...bindings };
      if (typeof first === 'string') {
        entry.msg = first;
      } else {
        for (const [key, item] of Object.entries(first)) entry[key] = serialize(item);
        if (message !== undefined) entry.msg = message;
      }
      let line: string;
      try {
        line = JSON.stringify(entry);
      } catch {
        line = JSON.stringify({ level: value, time: entry.time, msg: String(entry.msg) });
      }
      write(`${line}\n`);
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
