/**
 * A task as the supervisor sees it: a spec, a state and a history.
 */
import type { SerializedError } from './errors.js';
import type { ExitStatus, ProcessHandle } from './runtime.js';
import type { TaskSpec } from './task-spec.js';

/**
 * Task states.
 *
 * ```
 * running ──exit──▶ exited                       (no restart)
 *    │  └──exit──▶ backoff ──delay──▶ running    (restart policy)
 *    └─stop──▶ stopping ──exit──▶ exited
 * (agent restart, not re-adoptable) ──▶ lost
 * ```
 * A spawn that fails on create leaves no task; a failed restart spawn counts as
 * a failed run (backoff continues) and `failed` is reached only when
 * `maxRestarts` is used up on spawn failures.
 */
export type TaskState = 'running' | 'stopping' | 'backoff' | 'exited' | 'failed' | 'lost';

/** States from which a task never moves again. */
export const FINAL_STATES: ReadonlySet<TaskState> = new Set(['exited', 'failed', 'lost']);

/** True for `exited`, `failed` and `lost`. */
export function isFinalState(state: TaskState): boolean {
  return FINAL_STATES.has(state);
}

/** A snapshot of one task. Times are ISO 8601 strings. */
export interface TaskInfo {
  id: string;
  /** What it runs; frozen (shared between snapshots). */
  spec: TaskSpec;
  /** Id of the runtime running it. */
  runtime: string;
  /** Sandbox it runs in, if any. */
  sandboxId?: string;
  state: TaskState;
  createdAt: string;
  /** When the current (or last) run started. */
  startedAt?: string;
  /** When the task reached a final state. */
  endedAt?: string;
  /** OS pid of the current run, where the runtime has one. */
  pid?: number;
  /** How the last run ended. */
  exit?: ExitStatus;
  /** Why the task failed, for `failed` (or the last restart spawn error). */
  error?: SerializedError;
  /** How many times it was restarted. */
  restarts: number;
  /** When the next restart is due, in state `backoff`. */
  nextRestartAt?: string;
  /** Reattachment data for the current run (see `Runtime.adopt`). */
  handle?: ProcessHandle;
  /** True once a stop was requested: no restart follows. */
  stopRequested: boolean;
}
