export {
  ERROR_CODES,
  HTTP_STATUS_BY_CODE,
  OverthereError,
  isErrorCode,
  toOverthereError,
} from './errors.js';
export type { ErrorCode, OverthereErrorOptions, SerializedError } from './errors.js';
export { boundLogger, noopLogger } from './logger.js';
export type { LogFunction, Logger } from './logger.js';
export { SIGNAL_NUMBERS, isSignalName, parseSignal } from './signals.js';
export type { SignalName } from './signals.js';
export { DEFAULT_GRACE_MS, DEFAULT_RESTART } from './task-spec.js';
export type {
  KillPolicy,
  ResourceLimits,
  RestartMode,
  RestartPolicy,
  TaskSpec,
  TtySize,
} from './task-spec.js';
export type {
  ExitReason,
  ExitStatus,
  Process,
  ProcessHandle,
  Runtime,
  RuntimeCapabilities,
  RuntimeCapacity,
  Sandbox,
  SandboxSpec,
  SpawnContext,
} from './runtime.js';
export { FINAL_STATES, isFinalState } from './task.js';
export { finalSnapshot, knownTask } from './final-snapshot.js';
export type { TaskInfo, TaskState } from './task.js';
export { createOutputLog } from './output-log.js';
export type {
  OutputEvent,
  OutputFrame,
  OutputLog,
  OutputLogOptions,
  OutputReadOptions,
  OutputStream,
} from './output-log.js';
export { createFileTaskStore, createMemoryTaskStore } from './task-store.js';
export type { FileTaskStoreOptions, TaskStore } from './task-store.js';
export { isValidTaskId } from './task-store.js';
export { createSupervisor } from './create-supervisor.js';
export type {
  CreateTaskOptions,
  SandboxInfo,
  Supervisor,
  SupervisorCapacity,
  SupervisorEvents,
  SupervisorOptions,
  TaskFilter,
} from './supervisor.js';
export { createMemoryRuntime } from './memory-runtime.js';
export type {
  MemoryChildProcess,
  MemoryProgram,
  MemoryProgramContext,
  MemoryRuntimeOptions,
} from './memory-runtime.js';
export { isLoopbackHost, secretsEqual } from './security.js';
export { lockDataDir, writeFileAtomic } from './data-dir.js';
export type { DataDirLock } from './data-dir.js';
