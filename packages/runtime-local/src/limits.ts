/**
 * Resource limits as rlimits, set by a `/bin/sh` wrapper that runs `ulimit`
 * and then `exec`s the task, so the limits apply to the task and everything it
 * starts (rlimits are inherited across fork and exec).
 */
import { readFileSync } from 'node:fs';
import { OverthereError, type ResourceLimits } from '@overthere/core';

/** The limits this runtime enforces, as declared in its capabilities. */
export const ENFORCED_LIMITS = [
  'memoryBytes',
  'diskBytes',
  'openFiles',
] as const satisfies ReadonlyArray<keyof ResourceLimits>;

/** The shell that runs the wrapper: the `ulimit` units below are those of a POSIX sh. */
export const LIMITS_SHELL = '/bin/sh';

/**
 * The wrapper script, or undefined when no limit applies. `$@` is the task's
 * argv. Units: `-v` KiB (RLIMIT_AS), `-f` 512-byte blocks (RLIMIT_FSIZE; dash,
 * and bash when run as sh, both use 512), `-n` a count (RLIMIT_NOFILE), and
 * RLIMIT_NPROC is `-u` in bash/busybox but `-p` in dash. Without -H/-S both the
 * soft and the hard limit are set, so the task cannot raise them again. A
 * failing `ulimit` ends the wrapper with status 126 and the shell's message on
 * stderr rather than running the task unconstrained.
 */
export function limitsScript(limits: ResourceLimits | undefined): string | undefined {
  if (limits === undefined) return undefined;
  const hard = hardLimits();
  const lines: string[] = [];
  if (limits.memoryBytes !== undefined) {
    const bytes = clamp(limits.memoryBytes, hard.addressSpaceBytes);
    lines.push(`ulimit -v ${Math.max(1, Math.floor(bytes / 1024))} || exit 126`);
  }
  if (limits.openFiles !== undefined) {
    lines.push(`ulimit -n ${clamp(limits.openFiles, hard.openFiles)} || exit 126`);
  }
  if (limits.pids !== undefined) {
    const count = clamp(limits.pids, hard.processes);
    lines.push(`{ ulimit -u ${count} 2>/dev/null || ulimit -p ${count}; } || exit 126`);
  }
  if (limits.diskBytes !== undefined) {
    const bytes = clamp(limits.diskBytes, hard.fileSizeBytes);
    lines.push(`ulimit -f ${Math.floor(bytes / 512)} || exit 126`);
  }
  if (lines.length === 0) return undefined;
  lines.push('exec "$@"');
  return lines.join('\n');
}

/** Argv that runs `argv` under `script`. */
export function wrapWithLimits(script: string, argv: readonly string[]): string[] {
  return [LIMITS_SHELL, '-c', script, 'overthere-limits', ...argv];
}

/** Validates the limit fields: positive finite numbers (integers for counts). */
export function validateLimits(limits: ResourceLimits | undefined): void {
  if (limits === undefined) return;
  if (typeof limits !== 'object' || limits === null) {
    throw new OverthereError('INVALID_ARGUMENT', 'limits must be an object');
  }
  for (const key of ['memoryBytes', 'diskBytes', 'cpus', 'pids', 'openFiles'] as const) {
    const value = limits[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new OverthereError('INVALID_ARGUMENT', `limits.${key} must be a positive number`);
    }
    if ((key === 'pids' || key === 'openFiles') && !Number.isInteger(value)) {
      throw new OverthereError('INVALID_ARGUMENT', `limits.${key} must be an integer`);
    }
  }
}

interface HardLimits {
  addressSpaceBytes: number;
  fileSizeBytes: number;
  openFiles: number;
  processes: number;
}

let cachedHardLimits: HardLimits | undefined;

/**
 * The agent's hard limits (Linux: /proc/self/limits); Infinity when unknown or
 * unlimited, or when the agent is root (root may raise a hard limit). A
 * non-root wrapper asking for more than the hard limit would fail, while the
 * hard limit already bounds the task below what was asked: clamp to it.
 */
function hardLimits(): HardLimits {
  if (cachedHardLimits !== undefined) return cachedHardLimits;
  const limits: HardLimits = {
    addressSpaceBytes: Infinity,
    fileSizeBytes: Infinity,
    openFiles: Infinity,
    processes: Infinity,
  };
  if (process.geteuid?.() !== 0) {
    try {
      const text = readFileSync('/proc/self/limits', 'utf8');
      const read = (label: string): number => {
        const match = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, 'm').exec(text);
        const value = match?.[1];
        return value === undefined || value === 'unlimited' ? Infinity : Number(value);
      };
      limits.addressSpaceBytes = read('Max address space');
      limits.fileSizeBytes = read('Max file size');
      limits.openFiles = read('Max open files');
      limits.processes = read('Max processes');
    } catch {
      // Not Linux: ask for what was requested and let ulimit report a failure.
    }
  }
  cachedHardLimits = limits;
  return limits;
}

function clamp(value: number, hard: number): number {
  return Math.floor(Math.min(value, hard));
}
