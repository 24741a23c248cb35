import { DEFAULT_RESTART, type RestartPolicy } from './task-spec.js';
import type { ExitStatus } from './runtime.js';

/** True when a run that ended with `exit` should be followed by another under `policy`. */
export function shouldRestart(
  policy: RestartPolicy | undefined,
  exit: ExitStatus | undefined,
): boolean {
  switch (policy?.mode ?? 'never') {
    case 'always':
      return true;
    case 'on-failure':
      return exit === undefined || exit.reason !== 'exited' || exit.code !== 0;
    default:
      return false;
  }
}

/**
 * Delay before the next restart, in ms: `initialDelayMs * factor^failures`,
 * capped at `maxDelayMs`. `failures` counts consecutive short runs (0 for the first).
 */
export function restartDelayMs(policy: RestartPolicy, failures: number): number {
  const initial = policy.initialDelayMs ?? DEFAULT_RESTART.initialDelayMs;
  const max = policy.maxDelayMs ?? DEFAULT_RESTART.maxDelayMs;
  const factor = policy.factor ?? DEFAULT_RESTART.factor;
  return Math.min(initial * Math.pow(factor, failures), max);
}

/** True when a run of `runMs` was long enough to reset the backoff. */
export function isStableRun(policy: RestartPolicy, runMs: number): boolean {
  return runMs >= (policy.resetAfterMs ?? DEFAULT_RESTART.resetAfterMs);
}
