/**
 * The Supervisor owns tasks: ids, the state machine, kill escalation, restarts
 * with backoff, timeouts, GC of finished tasks, capacity accounting and events.
 * Every transport and app drives tasks through it.
 */
import type { Logger } from './logger.js';
import type { OutputFrame, OutputLog, OutputLogOptions } from './output-log.js';
import type { Runtime, RuntimeCapacity, SandboxSpec } from './runtime.js';
import type { TaskInfo, TaskState } from './task.js';
import type { KillPolicy, TaskSpec, TtySize } from './task-spec.js';
import type { TaskStore } from './task-store.js';

/** Options for {@link createSupervisor}. */
export interface SupervisorOptions {
  /** The runtime tasks run on, or several: the first is the default, others are chosen per task by id. */
  runtime: Runtime | readonly Runtime[];
  /** Where task records (and durable output) live. Default: memory only. */
  store?: TaskStore;
  logger?: Logger;
  /** Remove tasks this long after they reach a final state. Default: keep until removed. */
  ttlMs?: number;
  /** Output log settings (memory tail, disk cap, rotation) for every task. */
  output?: Omit<OutputLogOptions, 'dir'>;
  /** At most this many tasks not in a final state. Default unlimited. */
  maxTasks?: number;
  /** Makes task ids. Default `crypto.randomUUID`. */
  generateId?: () => string;
}

/** Options for {@link Supervisor.create}. */
export interface CreateTaskOptions {
  /** Use this id instead of a generated one; `CONFLICT` if taken. */
  id?: string;
  /** Id of the runtime to run on. Default: the first. */
  runtime?: string;
  /** Run inside this sandbox (see {@link Supervisor.createSandbox}). */
  sandboxId?: string;
}

/** Filter for {@link Supervisor.list}. */
export interface TaskFilter {
  state?: TaskState | readonly TaskState[];
  /** Every label given must match. */
  labels?: Record<string, string>;
}

/** Capacity left after the supervisor's reservations (the limits of live tasks). */
export interface SupervisorCapacity extends RuntimeCapacity {
  /** Tasks not in a final state. */
  liveTasks: number;
}

/** A sandbox as the supervisor tracks it. */
export interface SandboxInfo {
  id: string;
  runtime: string;
  spec: SandboxSpec;
  createdAt: string;
}

/** Events, noun-verb. */
export interface SupervisorEvents {
  /** A run started (the first, or a restart). */
  'task-start': [task: TaskInfo];
  /** A frame of output was captured. */
  'task-output': [taskId: string, frame: OutputFrame];
  /** The state changed. */
  'task-state': [task: TaskInfo, previous: TaskState];
  /** A run ended (the task may restart after it). */
  'task-exit': [task: TaskInfo];
  /** The task reached a final state. */
  'task-end': [task: TaskInfo];
  /** The task was removed (by `remove` or TTL). */
  'task-remove': [taskId: string];
}

/** Runs tasks on runtimes and keeps their state and output. */
export interface Supervisor {
  /**
   * Start a task. Resolves once its first run has started. A spawn failure
   * rejects with `SPAWN_FAILED` and leaves nothing registered.
   */
  create(spec: TaskSpec, options?: CreateTaskOptions): Promise<TaskInfo>;
  /** A snapshot of the task; `NOT_FOUND` for an unknown id. */
  get(id: string): TaskInfo;
  /** Snapshots of matching tasks, oldest first. */
  list(filter?: TaskFilter): TaskInfo[];
  /** Send a signal to the task's process group; `INVALID_ARGUMENT` for an unknown signal. No restart policy change. */
  signal(id: string, signal: string): Promise<void>;
  /**
   * Stop for good: the kill policy's signal (or `policy`'s), then SIGKILL after
   * the grace period (reason `killed`). No restart follows. Resolves with the final snapshot.
   */
  stop(id: string, policy?: KillPolicy): Promise<TaskInfo>;
  /** Stop if live, then forget the task and delete its output. */
  remove(id: string): Promise<void>;
  /** Resolves with the snapshot once the task is in a final state. */
  wait(id: string): Promise<TaskInfo>;
  /** The task's output log (for reading). */
  output(id: string): OutputLog;
  /** Write to the task's stdin; `FAILED_PRECONDITION` when it has no stdin pipe or it was closed. */
  writeStdin(id: string, data: Uint8Array | string): Promise<void>;
  /** Close the task's stdin (EOF). */
  closeStdin(id: string): Promise<void>;
  /** Resize the task's TTY. */
  resize(id: string, size: TtySize): Promise<void>;
  /** What is left after reservations. */
  capacity(): Promise<SupervisorCapacity>;
  /** Create a sandbox on a runtime that has them. */
  createSandbox(
    spec: SandboxSpec,
    options?: { id?: string; runtime?: string },
  ): Promise<SandboxInfo>;
  /** Stop every task in the sandbox, then destroy it. */
  destroySandbox(id: string): Promise<void>;
  /** Live sandboxes. */
  listSandboxes(): SandboxInfo[];
  on<E extends keyof SupervisorEvents>(
    event: E,
    listener: (...args: SupervisorEvents[E]) => void,
  ): this;
  off<E extends keyof SupervisorEvents>(
    event: E,
    listener: (...args: SupervisorEvents[E]) => void,
  ): this;
  /**
   * Shut down: stop every live task with its kill policy (unless `stopTasks` is
   * false, which leaves them to be re-adopted), flush output and store.
   */
  close(options?: { stopTasks?: boolean }): Promise<void>;
}
