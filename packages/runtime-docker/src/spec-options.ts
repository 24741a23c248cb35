/**
 * Checking a TaskSpec for the Docker runtime and reading its
 * `runtimeOptions.docker` settings.
 */
import { OverthereError, SIGNAL_NUMBERS, type ExitStatus, type SignalName } from '@overthere/core';
import type { ResourceLimits, TaskSpec, TtySize } from '@overthere/core';

/** When an image that is not present locally is pulled. */
export type PullPolicy = 'never' | 'missing' | 'always';

/** `runtimeOptions.docker` of a task or sandbox spec. */
export interface DockerSpecOptions {
  /** Image to run; default the runtime's `defaultImage`. */
  image?: string;
  /** Pull policy for this spec; `true` is `missing`. Default the runtime's (`never`). */
  pull?: PullPolicy | boolean;
  /** Docker network to join (e.g. `bridge`); default none at all. */
  network?: string;
  /** Keep the container after the task ends (for debugging). Default the runtime's `keepContainers`. */
  keep?: boolean;
}

const OPTION_KEYS = ['image', 'pull', 'network', 'keep'];

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

/** Read and check `runtimeOptions.docker`. */
export function dockerOptionsOf(
  runtimeOptions: Record<string, Record<string, unknown>> | undefined,
): DockerSpecOptions {
  const raw = runtimeOptions?.docker;
  if (raw === undefined) return {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    invalid('runtimeOptions.docker must be an object');
  }
  const result: DockerSpecOptions = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!OPTION_KEYS.includes(key)) {
      invalid(
        `unknown option runtimeOptions.docker.${key}; known options: ${OPTION_KEYS.join(', ')}`,
      );
    }
    if (value === undefined) continue;
    if (key === 'image' || key === 'network') {
      if (typeof value !== 'string' || value.trim().length === 0 || value.includes('\0')) {
        invalid(`runtimeOptions.docker.${key} must be a non-empty string`);
      }
      result[key] = value;
    } else if (key === 'pull') {
      if (
        typeof value !== 'boolean' &&
        value !== 'never' &&
        value !== 'missing' &&
        value !== 'always'
      ) {
        invalid('runtimeOptions.docker.pull must be true, false, "never", "missing" or "always"');
      }
      result.pull = value;
    } else {
      if (typeof value !== 'boolean') invalid('runtimeOptions.docker.keep must be a boolean');
      result.keep = value;
    }
  }
  return result;
}

/** A pull policy from a spec's `pull` value. */
export function pullPolicyOf(
  value: PullPolicy | boolean | undefined,
  fallback: PullPolicy,
): PullPolicy {
  if (value === undefined) return fallback;
  if (value === true) return 'missing';
  if (value === false) return 'never';
  return value;
}

/** Check a TTY size. */
export function checkTtySize(size: TtySize, where: string): void {
  for (const key of ['cols', 'rows'] as const) {
    const value = size[key];
    if (!Number.isInteger(value) || value < 1 || value > 65_535) {
      invalid(`${where}.${key} must be an integer between 1 and 65535`);
    }
  }
}

/** Check limits; returns them for chaining. */
export function checkLimits(limits: ResourceLimits | undefined): ResourceLimits {
  const checked = limits ?? {};
  for (const [key, value] of Object.entries(checked)) {
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      invalid(`limits.${key} must be a positive number`);
    }
    if (key !== 'cpus' && !Number.isInteger(value)) invalid(`limits.${key} must be an integer`);
  }
  // Docker refuses less than 6 MiB of memory.
  if (checked.memoryBytes !== undefined && checked.memoryBytes < 6 * 1024 * 1024) {
    invalid('limits.memoryBytes must be at least 6 MiB (6291456) for a container');
  }
  return checked;
}

/**
 * The argv to run. A script without `#!` runs under `/bin/sh -c`; one with
 * `#!` is written to a temporary file in the container (by `/bin/sh`) and run
 * by its interpreter.
 */
export function argvOf(spec: TaskSpec): string[] {
  const hasCommand = spec.command !== undefined;
  const hasScript = spec.script !== undefined;
  if (hasCommand === hasScript) invalid('give exactly one of command and script');
  if (hasCommand) {
    const command = spec.command!;
    if (!Array.isArray(command) || command.some((part) => typeof part !== 'string')) {
      invalid('command must be a list of strings');
    }
    if (command.length === 0 || command[0] === '') {
      throw new OverthereError('SPAWN_FAILED', 'command is empty: there is no program to run');
    }
    if (command.some((part) => part.includes('\0'))) invalid('command must not contain NUL bytes');
    return [...command];
  }
  const script = spec.script!;
  if (typeof script !== 'string') invalid('script must be a string');
  if (script.includes('\0')) invalid('script must not contain NUL bytes');
  if (!script.startsWith('#!')) return ['/bin/sh', '-c', script];
  return [
    '/bin/sh',
    '-c',
    'f=$(mktemp /tmp/overthere-script.XXXXXX) && printf "%s" "$1" > "$f" && chmod 700 "$f" && shift && exec "$f" "$@"',
    'overthere-script',
    script,
  ];
}

/** The environment as Docker's `KEY=value` list. */
export function environmentOf(
  base: Readonly<Record<string, string>>,
  spec: TaskSpec,
  extra: Readonly<Record<string, string>>,
): string[] {
  const merged: Record<string, string> = {
    ...(spec.inheritEnv === false ? {} : base),
    ...(spec.env ?? {}),
    ...extra,
  };
  return Object.entries(merged).map(([name, value]) => {
    if (name.length === 0 || name.includes('=') || name.includes('\0') || value.includes('\0')) {
      invalid(`environment variable ${JSON.stringify(name)} is not valid`);
    }
    return `${name}=${value}`;
  });
}

/**
 * How a container or exec ended. Docker reports a process that a signal ended
 * as 128 + the signal's number: it counts as `signalled` when that signal was
 * sent to it by this runtime (or SIGKILL, which a removal sends).
 */
export function exitStatusOf(
  code: number,
  oomKilled: boolean,
  sent: ReadonlySet<SignalName>,
): ExitStatus {
  if (oomKilled) return { code: null, signal: 'SIGKILL', reason: 'oom' };
  if (code > 128) {
    const number = code - 128;
    const name = (Object.keys(SIGNAL_NUMBERS) as SignalName[]).find(
      (candidate) => SIGNAL_NUMBERS[candidate] === number,
    );
    if (name !== undefined && sent.has(name))
      return { code: null, signal: name, reason: 'signalled' };
  }
  return { code, signal: null, reason: 'exited' };
}
