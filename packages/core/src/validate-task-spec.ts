import { OverthereError } from './errors.js';
import { parseSignal } from './signals.js';
import type { TaskSpec } from './task-spec.js';

const RESTART_MODES = new Set(['never', 'on-failure', 'always']);

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

function checkNonNegative(value: unknown, name: string): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
    invalid(`${name} must be a non-negative number`);
  }
}

function checkStringRecord(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    invalid(`${name} must be an object of strings`);
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') invalid(`${name}.${key} must be a string`);
  }
}

/**
 * Checks a TaskSpec's shape before anything runs: `INVALID_ARGUMENT` for a
 * malformed spec, `SPAWN_FAILED` for an empty command (nothing to execute).
 * Transports validate their wire format first; this is the last line.
 */
export function validateTaskSpec(spec: TaskSpec): void {
  if (typeof spec !== 'object' || spec === null) invalid('task spec must be an object');
  const hasCommand = spec.command !== undefined;
  const hasScript = spec.script !== undefined;
  if (hasCommand === hasScript) invalid('exactly one of command and script is required');
  if (hasCommand) {
    if (!Array.isArray(spec.command) || spec.command.some((part) => typeof part !== 'string')) {
      invalid('command must be an array of strings');
    }
    if (spec.command.length === 0 || spec.command[0] === '') {
      throw new OverthereError('SPAWN_FAILED', 'empty command: nothing to execute');
    }
  } else if (typeof spec.script !== 'string' || spec.script.length === 0) {
    invalid('script must be a non-empty string');
  }
  checkStringRecord(spec.env, 'env');
  checkStringRecord(spec.labels, 'labels');
  if (spec.cwd !== undefined && typeof spec.cwd !== 'string') invalid('cwd must be a string');
  if (spec.stdin !== undefined && spec.stdin !== 'none' && spec.stdin !== 'pipe') {
    invalid("stdin must be 'none' or 'pipe'");
  }
  if (spec.tty !== undefined) {
    const { cols, rows } = spec.tty;
    if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1) {
      invalid('tty.cols and tty.rows must be positive integers');
    }
  }
  checkNonNegative(spec.timeoutMs, 'timeoutMs');
  if (spec.limits !== undefined) {
    for (const [key, value] of Object.entries(spec.limits))
      checkNonNegative(value, `limits.${key}`);
  }
  if (spec.kill !== undefined) {
    if (spec.kill.signal !== undefined) parseSignal(spec.kill.signal);
    checkNonNegative(spec.kill.graceMs, 'kill.graceMs');
  }
  if (spec.restart !== undefined) {
    if (!RESTART_MODES.has(spec.restart.mode))
      invalid(`unknown restart mode: ${String(spec.restart.mode)}`);
    const { initialDelayMs, maxDelayMs, factor, resetAfterMs, maxRestarts } = spec.restart;
    checkNonNegative(initialDelayMs, 'restart.initialDelayMs');
    checkNonNegative(maxDelayMs, 'restart.maxDelayMs');
    checkNonNegative(resetAfterMs, 'restart.resetAfterMs');
    checkNonNegative(maxRestarts, 'restart.maxRestarts');
    if (factor !== undefined && (typeof factor !== 'number' || factor < 1))
      invalid('restart.factor must be >= 1');
  }
}
