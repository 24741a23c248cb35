/**
 * The contract between the supervisor and whatever starts processes: a local
 * process, a container, a VM. A runtime knows nothing of task ids, states or
 * restarts: it spawns, signals and reports how a process ended.
 */
import type { Readable, Writable } from 'node:stream';
import type { ResourceLimits, TaskSpec } from './task-spec.js';

/** Why a process ended. */
export type ExitReason =
  /** It exited by itself (`code` is set). */
  | 'exited'
  /** A signal ended it (`signal` is set). */
  | 'signalled'
  /** It was stopped because `timeoutMs` passed. */
  | 'timeout'
  /** It ignored the stop signal and was SIGKILLed after the grace period. */
  | 'killed'
  /** The runtime killed it for using more memory than its limit. */
  | 'oom'
  /** Its fate is unknown: the agent restarted and could not re-adopt it. */
  | 'lost';

/** How a process ended. A non-zero exit is data, not an error. */
export interface ExitStatus {
  /** Exit code, or null when a signal ended it or it was lost. */
  code: number | null;
  /** Name of the signal that ended it, or null. */
  signal: string | null;
  reason: ExitReason;
}

/** What a runtime can do; the supervisor and conformance suite gate on these. */
export interface RuntimeCapabilities {
  /** Tasks may have `stdin: 'pipe'`. */
  stdin: boolean;
  /** Tasks may have `tty`, and `resize` works. */
  tty: boolean;
  /** Arbitrary signals can be delivered. */
  signals: boolean;
  /** Signals reach the whole process group (descendants too). */
  processGroups: boolean;
  /** `spec.user` is honoured. */
  user: boolean;
  /** Which of the `ResourceLimits` fields are enforced. */
  limits: ReadonlyArray<keyof ResourceLimits>;
  /** How far a task is isolated from the agent. */
  isolation: 'none' | 'process' | 'container' | 'vm';
  /** `createSandbox` is available. */
  sandboxes: boolean;
  /** `adopt` can reattach to processes started before an agent restart. */
  adopt: boolean;
}

/** What a runtime has left to give. Absent fields are unknown or unlimited. */
export interface RuntimeCapacity {
  memoryBytes?: number;
  diskBytes?: number;
  /** How many more tasks may run. */
  tasks?: number;
}

/**
 * JSON-serialisable data that identifies a running process to its runtime, so
 * `adopt` can find it again after an agent restart (e.g. a container id).
 */
export type ProcessHandle = Record<string, string | number | boolean | null>;

/** Per-spawn context from the supervisor. */
export interface SpawnContext {
  /** The id of the task this process belongs to (for labels, temp files, logs). */
  taskId: string;
}

/** A running process. */
export interface Process {
  /** OS pid where there is one. */
  readonly pid: number | undefined;
  /** Reattachment data for `Runtime.adopt`; undefined when the runtime cannot adopt. */
  readonly handle: ProcessHandle | undefined;
  /**
   * The process's stdout (with a TTY: the terminal's output). Ends after the
   * process ends. Its chunks are Buffers, possibly in object mode (one per
   * chunk read, as the local runtime's native spawner hands them over): read
   * it with `for await`, `'data'` or `pipe()`, not `read(size)`.
   */
  readonly stdout: Readable;
  /** The process's stderr (with a TTY: ends empty). Ends after the process ends. Chunks as stdout's. */
  readonly stderr: Readable;
  /** Writable stdin when the spec asked for `stdin: 'pipe'`; ending it gives the process EOF. */
  readonly stdin: Writable | undefined;
  /**
   * Deliver a signal to the process's group (or to the process alone when
   * `group` is false or the runtime has no groups). A process that has ended is
   * not an error. An unknown signal name is `INVALID_ARGUMENT`.
   */
  signal(signal: string, options?: { group?: boolean }): Promise<void>;
  /** Resize the TTY. `UNSUPPORTED` when the process has none. */
  resize(size: { cols: number; rows: number }): Promise<void>;
  /**
   * Resolves once the process has ended, the rest of its group is gone and
   * stdout/stderr have ended. Never rejects: a lost process resolves with reason `lost`.
   */
  wait(): Promise<ExitStatus>;
}

/** What a sandbox is created with. */
export interface SandboxSpec {
  /** Base environment for processes in the sandbox. */
  env?: Record<string, string>;
  /** Default working directory. */
  cwd?: string;
  /** Limits for the sandbox as a whole. */
  limits?: ResourceLimits;
  /** Labels, kept on the sandbox's resources. */
  labels?: Record<string, string>;
  /** Runtime-specific settings keyed by runtime id. */
  runtimeOptions?: Record<string, Record<string, unknown>>;
}

/**
 * A long-lived environment (e.g. a container) into which several processes are
 * spawned; destroying it ends all of them.
 */
export interface Sandbox {
  readonly id: string;
  readonly handle: ProcessHandle | undefined;
  /** Start a process inside the sandbox. `spec.limits` are those of the sandbox. */
  spawn(spec: TaskSpec, context: SpawnContext): Promise<Process>;
  /** End every process in the sandbox and release it. Idempotent. */
  destroy(): Promise<void>;
}

/** Starts processes. Implemented by runtime packages; used only by the supervisor. */
export interface Runtime {
  /** Short id, also the key into `TaskSpec.runtimeOptions` (e.g. `local`, `docker`). */
  readonly id: string;
  readonly capabilities: RuntimeCapabilities;
  /**
   * Start a process. Rejects with `SPAWN_FAILED` (with the OS reason) when it
   * cannot start: missing binary, bad cwd, unknown user; `UNSUPPORTED` when the
   * spec asks for something the runtime lacks; `INVALID_ARGUMENT` for a bad spec.
   */
  spawn(spec: TaskSpec, context: SpawnContext): Promise<Process>;
  /** What is left to give, before the supervisor's own reservations. */
  capacity(): Promise<RuntimeCapacity>;
  /** Create a sandbox; only when `capabilities.sandboxes`. */
  createSandbox?(spec: SandboxSpec, context: SpawnContext): Promise<Sandbox>;
  /**
   * Reattach to a process from before an agent restart. Resolves undefined when
   * it is gone (the supervisor then reports it `lost`).
   */
  adopt?(handle: ProcessHandle, context: SpawnContext): Promise<Process | undefined>;
  /** Stop every process this runtime started and release its resources. */
  dispose(): Promise<void>;
}
