/**
 * What to run. A TaskSpec is runtime-neutral: runtime-specific settings live
 * under `runtimeOptions[runtimeId]` so core does not grow with each runtime.
 */

/** Terminal size in character cells. */
export interface TtySize {
  cols: number;
  rows: number;
}

/** Resource limits; a runtime enforces those it lists in `capabilities.limits`. */
export interface ResourceLimits {
  /** Hard memory limit in bytes. */
  memoryBytes?: number;
  /** Disk quota in bytes for what the task writes. */
  diskBytes?: number;
  /** CPU share, e.g. `0.5` for half a core. */
  cpus?: number;
  /** Maximum number of processes/threads. */
  pids?: number;
  /** Maximum open file descriptors. */
  openFiles?: number;
}

/** When a task that ended is started again. */
export type RestartMode = 'never' | 'on-failure' | 'always';

/**
 * Restart policy with capped exponential backoff: the n-th consecutive restart
 * waits `min(initialDelayMs * factor^n, maxDelayMs)`; a run that lasted at least
 * `resetAfterMs` resets n to 0.
 */
export interface RestartPolicy {
  mode: RestartMode;
  /** Delay before the first restart. Default 100. */
  initialDelayMs?: number;
  /** Cap on the delay. Default 30 000. */
  maxDelayMs?: number;
  /** Growth factor between consecutive restarts. Default 2. */
  factor?: number;
  /** A run at least this long counts as stable and resets the backoff. Default 10 000. */
  resetAfterMs?: number;
  /** Give up after this many restarts. Default unlimited. */
  maxRestarts?: number;
}

/** How a task is stopped: `signal` to its process group, then SIGKILL after `graceMs`. */
export interface KillPolicy {
  /** First signal. Default `SIGTERM`. */
  signal?: string;
  /** Time between `signal` and SIGKILL. Default 10 000. */
  graceMs?: number;
}

/** What to run and how. Exactly one of `command` and `script` is required. */
export interface TaskSpec {
  /** argv: the program and its arguments, run without a shell. */
  command?: string[];
  /** Script text; run by its `#!` interpreter, or by the runtime's default shell when it has none. */
  script?: string;
  /** Variables to set, on top of the base environment unless `inheritEnv` is false. */
  env?: Record<string, string>;
  /** Start from the runtime's base environment (the agent's, or the image's). Default true. */
  inheritEnv?: boolean;
  /** Working directory. */
  cwd?: string;
  /** User to run as: a name or a numeric uid. */
  user?: string | number;
  /** `pipe` gives the task a writable stdin; `none` (default) gives it an immediate EOF. */
  stdin?: 'none' | 'pipe';
  /** Run under a pseudo-terminal of this size; stdout and stderr then arrive merged on stdout. */
  tty?: TtySize;
  /** Resource limits. */
  limits?: ResourceLimits;
  /** Stop the task (with its kill policy) after this long; it ends with reason `timeout`. */
  timeoutMs?: number;
  /** Restart policy. Default `{ mode: 'never' }`. */
  restart?: RestartPolicy;
  /** Kill policy. */
  kill?: KillPolicy;
  /** Free-form labels, for filtering and for finding a task's resources. */
  labels?: Record<string, string>;
  /** Settings for one runtime, keyed by runtime id, e.g. `{ docker: { image: 'busybox' } }`. */
  runtimeOptions?: Record<string, Record<string, unknown>>;
}

/** Default kill grace period. */
export const DEFAULT_GRACE_MS = 10_000;

/** Restart policy defaults. */
export const DEFAULT_RESTART = {
  initialDelayMs: 100,
  maxDelayMs: 30_000,
  factor: 2,
  resetAfterMs: 10_000,
} as const;
