/**
 * The supervisor implementation. One `TaskEntry` per task holds the mutable
 * record and the live pieces (process, timers, output log); every transition
 * goes through `setState`, which saves the record and emits events.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { OverthereError, toOverthereError } from './errors.js';
import { noopLogger, type Logger } from './logger.js';
import {
  createOutputLog,
  type OutputFrame,
  type OutputLog,
  type OutputStream,
} from './output-log.js';
import { isStableRun, restartDelayMs, shouldRestart } from './restart-backoff.js';
import type { ExitStatus, Process, Runtime, Sandbox, SandboxSpec } from './runtime.js';
import { parseSignal } from './signals.js';
import type {
  CreateTaskOptions,
  SandboxInfo,
  Supervisor,
  SupervisorCapacity,
  SupervisorEvents,
  SupervisorOptions,
  TaskFilter,
} from './supervisor.js';
import { isFinalState, type TaskInfo, type TaskState } from './task.js';
import { DEFAULT_GRACE_MS, type KillPolicy, type TaskSpec, type TtySize } from './task-spec.js';
import { createMemoryTaskStore, isValidTaskId, type TaskStore } from './task-store.js';
import { validateTaskSpec } from './validate-task-spec.js';

/** Why the supervisor is stopping the current run. */
type StopCause = 'stop' | 'timeout' | 'shutdown';

interface TaskEntry {
  info: TaskInfo;
  runtime: Runtime;
  log: OutputLog;
  process: Process | undefined;
  /** Set while a stop is in progress for the current run. */
  stopping: { cause: StopCause; escalated: boolean } | undefined;
  runStartedAt: number;
  /** Consecutive short runs, for the backoff. */
  failures: number;
  restartTimer: LongTimer | undefined;
  timeoutTimer: LongTimer | undefined;
  graceTimer: LongTimer | undefined;
  gcTimer: LongTimer | undefined;
  /** Settles when the current run's exit has been fully handled. */
  runDone: Promise<void>;
  final: Promise<TaskInfo>;
  resolveFinal: (task: TaskInfo) => void;
}

interface SandboxEntry {
  info: SandboxInfo;
  sandbox: Sandbox;
}

const now = () => new Date().toISOString();

/** A task due for collection while its output is being read waits this long, again and again. */
const COLLECTION_RETRY_MS = 1_000;

/** setTimeout's longest delay; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer that can wait past ~24.8 days (TTLs, long timeouts) by re-arming. */
interface LongTimer {
  handle: NodeJS.Timeout;
}

function setLongTimeout(
  callback: () => void,
  delayMs: number,
  options: { unref?: boolean } = {},
): LongTimer {
  const due = Date.now() + delayMs;
  const timer = {} as LongTimer;
  const arm = () => {
    timer.handle = setTimeout(
      () => (Date.now() >= due ? callback() : arm()),
      Math.min(Math.max(0, due - Date.now()), MAX_TIMER_MS),
    );
    if (options.unref) timer.handle.unref();
  };
  arm();
  return timer;
}

function clearLongTimeout(timer: LongTimer | undefined): void {
  if (timer) clearTimeout(timer.handle);
}

/**
 * A copy the caller may keep: the spec is deep-frozen when the task is
 * created, so it is shared; the few mutable parts are copied.
 */
function snapshot(info: TaskInfo): TaskInfo {
  const copy: TaskInfo = { ...info };
  if (info.exit) copy.exit = { ...info.exit };
  if (info.error) copy.error = { ...info.error };
  if (info.handle) copy.handle = { ...info.handle };
  return copy;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}

/**
 * Create a supervisor. When the store holds records from an earlier run, they
 * are recovered first: finished tasks are listed with their output, running
 * ones are re-adopted where the runtime can, `always`-restart tasks (and tasks
 * waiting in backoff) start again, and other running tasks become `lost`.
 */
export async function createSupervisor(options: SupervisorOptions): Promise<Supervisor> {
  const runtimes: readonly Runtime[] = Array.isArray(options.runtime)
    ? (options.runtime as readonly Runtime[])
    : [options.runtime as Runtime];
  const defaultRuntime = runtimes[0];
  if (defaultRuntime === undefined) {
    throw new OverthereError('INVALID_ARGUMENT', 'createSupervisor needs at least one runtime');
  }
  const store: TaskStore = options.store ?? createMemoryTaskStore();
  const logger: Logger = options.logger ?? noopLogger;
  const generateId = options.generateId ?? randomUUID;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const tasks = new Map<string, TaskEntry>();
  const sandboxes = new Map<string, SandboxEntry>();
  /** Ids being created right now, so a concurrent create with the same id is a conflict. */
  const reservedIds = new Set<string>();
  let closing = false;
  /** After `close({ stopTasks: false })`: records are left as they are, for the next agent to recover. */
  let detached = false;

  function emit<E extends keyof SupervisorEvents>(event: E, ...args: SupervisorEvents[E]): void {
    events.emit(event, ...args);
  }

  function findRuntime(id: string | undefined): Runtime {
    if (id === undefined) return defaultRuntime as Runtime;
    const runtime = runtimes.find((candidate) => candidate.id === id);
    if (!runtime) throw new OverthereError('INVALID_ARGUMENT', `unknown runtime: ${id}`);
    return runtime;
  }

  function entryOf(id: string): TaskEntry {
    const entry = tasks.get(id);
    if (!entry)
      throw new OverthereError('NOT_FOUND', `no such task: ${id}`, { details: { taskId: id } });
    return entry;
  }

  /** Persist the record. Failures are logged: a task is not failed because its record could not be written. */
  function save(entry: TaskEntry): Promise<void> {
    if (detached) return Promise.resolve();
    return store.save(snapshot(entry.info)).catch((error: unknown) => {
      logger.error({ err: error, taskId: entry.info.id }, 'saving task record failed');
    });
  }

  /** Move to `state`: persist (the promise settles once on disk) and tell listeners. */
  function setState(entry: TaskEntry, state: TaskState): Promise<void> {
    const previous = entry.info.state;
    entry.info.state = state;
    const saved = save(entry);
    if (previous !== state) emit('task-state', snapshot(entry.info), previous);
    return saved;
  }

  function liveEntries(): TaskEntry[] {
    return [...tasks.values()].filter((entry) => !isFinalState(entry.info.state));
  }

  function reserved(): { memoryBytes: number; diskBytes: number } {
    let memoryBytes = 0;
    let diskBytes = 0;
    for (const entry of liveEntries()) {
      memoryBytes += entry.info.spec.limits?.memoryBytes ?? 0;
      diskBytes += entry.info.spec.limits?.diskBytes ?? 0;
    }
    return { memoryBytes, diskBytes };
  }

  async function capacity(): Promise<SupervisorCapacity> {
    const total = await defaultRuntime!.capacity();
    const used = reserved();
    const live = liveEntries().length;
    const result: SupervisorCapacity = { liveTasks: live };
    if (total.memoryBytes !== undefined)
      result.memoryBytes = Math.max(0, total.memoryBytes - used.memoryBytes);
    if (total.diskBytes !== undefined)
      result.diskBytes = Math.max(0, total.diskBytes - used.diskBytes);
    const taskLimit = [
      total.tasks,
      options.maxTasks === undefined ? undefined : options.maxTasks - live,
    ].filter((value): value is number => value !== undefined);
    if (taskLimit.length > 0) result.tasks = Math.max(0, Math.min(...taskLimit));
    return result;
  }

  async function checkCapacity(spec: TaskSpec): Promise<void> {
    if (options.maxTasks !== undefined && liveEntries().length >= options.maxTasks) {
      throw new OverthereError(
        'RESOURCE_EXHAUSTED',
        `task limit reached (${options.maxTasks} live tasks)`,
      );
    }
    const memory = spec.limits?.memoryBytes;
    const disk = spec.limits?.diskBytes;
    if (memory === undefined && disk === undefined) return;
    const left = await capacity();
    if (memory !== undefined && left.memoryBytes !== undefined && memory > left.memoryBytes) {
      throw new OverthereError(
        'RESOURCE_EXHAUSTED',
        `not enough memory: ${memory} bytes asked, ${left.memoryBytes} left`,
      );
    }
    if (disk !== undefined && left.diskBytes !== undefined && disk > left.diskBytes) {
      throw new OverthereError(
        'RESOURCE_EXHAUSTED',
        `not enough disk: ${disk} bytes asked, ${left.diskBytes} left`,
      );
    }
  }

  async function spawnProcess(entry: TaskEntry): Promise<Process> {
    const context = { taskId: entry.info.id };
    const sandboxId = entry.info.sandboxId;
    try {
      if (sandboxId !== undefined) {
        const sandbox = sandboxes.get(sandboxId);
        if (!sandbox) throw new OverthereError('NOT_FOUND', `no such sandbox: ${sandboxId}`);
        return await sandbox.sandbox.spawn(entry.info.spec, context);
      }
      return await entry.runtime.spawn(entry.info.spec, context);
    } catch (error) {
      if (OverthereError.is(error)) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new OverthereError('SPAWN_FAILED', message, { cause: error });
    }
  }

  async function pump(entry: TaskEntry, stream: OutputStream, source: Readable): Promise<void> {
    const { log } = entry;
    const taskId = entry.info.id;
    try {
      for await (const chunk of source as AsyncIterable<Buffer | string>) {
        const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (data.length === 0) continue;
        const offset = log.bytes(stream);
        const pending = log.append(stream, data);
        if (events.listenerCount('task-output') > 0) {
          const frame: OutputFrame = {
            seq: log.nextSeq - 1,
            offset,
            stream,
            time: Date.now(),
            data,
          };
          emit('task-output', taskId, frame);
        }
        if (pending) await pending;
      }
    } catch (error) {
      logger.warn({ err: error, taskId, stream }, 'reading task output failed');
    }
  }

  /** Start watching a fresh run: timers, output pumps, and exit handling. */
  function attach(entry: TaskEntry, process: Process): void {
    entry.process = process;
    entry.stopping = undefined;
    entry.runStartedAt = Date.now();
    entry.info.pid = process.pid as number;
    if (process.pid === undefined) delete entry.info.pid;
    if (process.handle === undefined) delete entry.info.handle;
    else entry.info.handle = process.handle;
    const timeoutMs = entry.info.spec.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs > 0) {
      entry.timeoutTimer = setLongTimeout(() => beginStop(entry, 'timeout'), timeoutMs);
    }
    const pumps = Promise.all([
      pump(entry, 'stdout', process.stdout),
      pump(entry, 'stderr', process.stderr),
    ]);
    entry.runDone = (async () => {
      const status = await process.wait();
      await pumps;
      await onRunEnd(entry, status);
    })().catch((error: unknown) => {
      logger.error({ err: error, taskId: entry.info.id }, 'handling task exit failed');
    });
  }

  function clearRunTimers(entry: TaskEntry): void {
    clearLongTimeout(entry.timeoutTimer);
    clearLongTimeout(entry.graceTimer);
    entry.timeoutTimer = undefined;
    entry.graceTimer = undefined;
  }

  /** The exit as the supervisor reports it: its own stops explain the runtime's raw status. */
  function explainExit(entry: TaskEntry, status: ExitStatus): ExitStatus {
    const stopping = entry.stopping;
    if (!stopping || status.reason === 'oom' || status.reason === 'lost') return status;
    if (stopping.cause === 'timeout') return { ...status, reason: 'timeout' };
    if (stopping.escalated) return { ...status, reason: 'killed' };
    return status;
  }

  async function onRunEnd(entry: TaskEntry, status: ExitStatus): Promise<void> {
    if (detached) return;
    clearRunTimers(entry);
    const { info } = entry;
    info.exit = explainExit(entry, status);
    entry.process = undefined;
    entry.stopping = undefined;
    delete info.pid;
    delete info.handle;
    emit('task-exit', snapshot(info));

    const policy = info.spec.restart;
    const restartable =
      !info.stopRequested && policy !== undefined && shouldRestart(policy, info.exit);
    if (restartable && closing) {
      // Shutting down: leave the service to be started again when the agent is.
      void setState(entry, 'backoff');
      return;
    }
    if (restartable && (policy.maxRestarts === undefined || info.restarts < policy.maxRestarts)) {
      if (isStableRun(policy, Date.now() - entry.runStartedAt)) entry.failures = 0;
      scheduleRestart(entry);
      return;
    }
    await finish(entry, 'exited');
  }

  function scheduleRestart(entry: TaskEntry): void {
    const policy = entry.info.spec.restart ?? { mode: 'never' };
    const delay = restartDelayMs(policy, entry.failures);
    entry.failures += 1;
    entry.info.nextRestartAt = new Date(Date.now() + delay).toISOString();
    void setState(entry, 'backoff');
    entry.restartTimer = setLongTimeout(() => {
      entry.restartTimer = undefined;
      void restart(entry);
    }, delay);
  }

  async function restart(entry: TaskEntry): Promise<void> {
    const { info } = entry;
    if (info.stopRequested || closing || info.state !== 'backoff') return;
    delete info.nextRestartAt;
    try {
      const process = await spawnProcess(entry);
      info.restarts += 1;
      delete info.error;
      info.startedAt = now();
      attach(entry, process);
      void setState(entry, 'running');
      emit('task-start', snapshot(info));
    } catch (error) {
      const failure = toOverthereError(error);
      info.error = failure.toJSON();
      info.restarts += 1;
      logger.warn({ taskId: info.id, err: failure }, 'restart failed to spawn');
      const policy = info.spec.restart;
      if (policy?.maxRestarts !== undefined && info.restarts >= policy.maxRestarts) {
        await finish(entry, 'failed');
      } else {
        scheduleRestart(entry);
      }
    }
  }

  async function finish(entry: TaskEntry, state: 'exited' | 'failed' | 'lost'): Promise<void> {
    clearRunTimers(entry);
    clearLongTimeout(entry.restartTimer);
    entry.restartTimer = undefined;
    const { info } = entry;
    delete info.nextRestartAt;
    info.endedAt = now();
    await entry.log.end();
    // On disk before anyone hears the task ended: a crash now cannot turn it into `lost`.
    await setState(entry, state);
    const final = snapshot(info);
    entry.resolveFinal(final);
    emit('task-end', final);
    scheduleCollection(entry);
  }

  function scheduleCollection(entry: TaskEntry): void {
    if (options.ttlMs === undefined || closing) return;
    const endedAt = Date.parse(entry.info.endedAt ?? now());
    collectAfter(entry, Math.max(0, endedAt + options.ttlMs - Date.now()));
  }

  /** Remove a finished task after `delayMs`, later while someone still reads its output. */
  function collectAfter(entry: TaskEntry, delayMs: number): void {
    entry.gcTimer = setLongTimeout(
      () => {
        if (entry.log.readers > 0) {
          collectAfter(entry, COLLECTION_RETRY_MS);
          return;
        }
        remove(entry.info.id).catch((error: unknown) => {
          logger.warn({ err: error, taskId: entry.info.id }, 'collecting finished task failed');
        });
      },
      delayMs,
      { unref: true },
    );
  }

  /** Signal the current run with the kill policy, escalating to SIGKILL after the grace period. */
  function beginStop(entry: TaskEntry, cause: StopCause, policy?: KillPolicy): void {
    const process = entry.process;
    if (!process || entry.stopping) return;
    const signal = parseSignal(policy?.signal ?? entry.info.spec.kill?.signal ?? 'SIGTERM');
    const graceMs = policy?.graceMs ?? entry.info.spec.kill?.graceMs ?? DEFAULT_GRACE_MS;
    const stopping = { cause, escalated: false };
    entry.stopping = stopping;
    void setState(entry, 'stopping');
    const deliver = (name: string) =>
      process.signal(name, { group: true }).catch((error: unknown) => {
        logger.warn({ err: error, taskId: entry.info.id, signal: name }, 'signalling task failed');
      });
    void deliver(signal);
    if (signal !== 'SIGKILL') {
      entry.graceTimer = setLongTimeout(() => {
        if (entry.process !== process) return;
        stopping.escalated = true;
        void deliver('SIGKILL');
      }, graceMs);
    }
  }

  function newEntry(info: TaskInfo, runtime: Runtime, log: OutputLog): TaskEntry {
    let resolveFinal!: (task: TaskInfo) => void;
    const final = new Promise<TaskInfo>((resolve) => {
      resolveFinal = resolve;
    });
    return {
      info,
      runtime,
      log,
      process: undefined,
      stopping: undefined,
      runStartedAt: Date.now(),
      failures: 0,
      restartTimer: undefined,
      timeoutTimer: undefined,
      graceTimer: undefined,
      gcTimer: undefined,
      runDone: Promise.resolve(),
      final,
      resolveFinal,
    };
  }

  async function create(spec: TaskSpec, createOptions: CreateTaskOptions = {}): Promise<TaskInfo> {
    if (closing) throw new OverthereError('UNAVAILABLE', 'supervisor is shutting down');
    validateTaskSpec(spec);
    const runtime = findRuntime(createOptions.runtime);
    const sandboxId = createOptions.sandboxId;
    if (sandboxId !== undefined && !sandboxes.has(sandboxId)) {
      throw new OverthereError('NOT_FOUND', `no such sandbox: ${sandboxId}`);
    }
    const id = createOptions.id ?? generateId();
    if (!isValidTaskId(id))
      throw new OverthereError('INVALID_ARGUMENT', `invalid task id: ${JSON.stringify(id)}`);
    if (tasks.has(id) || reservedIds.has(id))
      throw new OverthereError('CONFLICT', `task already exists: ${id}`);
    reservedIds.add(id);
    try {
      await checkCapacity(spec);
      const dir = store.outputDir(id);
      const log = await createOutputLog({
        ...options.output,
        ...(dir === undefined ? {} : { dir }),
      });
      const info: TaskInfo = {
        id,
        spec: deepFreeze(structuredClone(spec)),
        runtime: runtime.id,
        state: 'running',
        createdAt: now(),
        restarts: 0,
        stopRequested: false,
      };
      if (sandboxId !== undefined) info.sandboxId = sandboxId;
      const entry = newEntry(info, runtime, log);
      let process: Process;
      try {
        process = await spawnProcess(entry);
      } catch (error) {
        await log.destroy();
        await store.delete(id); // the output dir's parent too: nothing is left registered
        throw error;
      }
      info.startedAt = now();
      tasks.set(id, entry);
      attach(entry, process);
      const started = snapshot(info);
      const saved = save(entry);
      emit('task-start', started);
      // The record is on disk before the caller hears of the task, so a crash cannot forget it.
      await saved;
      return started;
    } finally {
      reservedIds.delete(id);
    }
  }

  async function stop(id: string, policy?: KillPolicy): Promise<TaskInfo> {
    const entry = entryOf(id);
    if (policy?.signal !== undefined) parseSignal(policy.signal);
    if (isFinalState(entry.info.state)) return snapshot(entry.info);
    if (!entry.info.stopRequested) {
      entry.info.stopRequested = true;
      void save(entry);
    }
    if (entry.process) beginStop(entry, 'stop', policy);
    else if (entry.info.state === 'backoff') await finish(entry, 'exited');
    return entry.final;
  }

  async function remove(id: string): Promise<void> {
    const entry = entryOf(id);
    if (!isFinalState(entry.info.state)) await stop(id);
    await entry.runDone;
    if (tasks.get(id) !== entry) return;
    clearLongTimeout(entry.gcTimer);
    tasks.delete(id);
    await entry.log.destroy();
    await store.delete(id);
    emit('task-remove', id);
  }

  function matches(info: TaskInfo, filter: TaskFilter | undefined): boolean {
    if (!filter) return true;
    if (filter.state !== undefined) {
      const states: readonly TaskState[] =
        typeof filter.state === 'string' ? [filter.state] : filter.state;
      if (!states.includes(info.state)) return false;
    }
    for (const [key, value] of Object.entries(filter.labels ?? {})) {
      if (info.spec.labels?.[key] !== value) return false;
    }
    return true;
  }

  function liveProcess(id: string): Process {
    const entry = entryOf(id);
    if (!entry.process) {
      throw new OverthereError(
        'FAILED_PRECONDITION',
        `task ${id} is not running (state ${entry.info.state})`,
      );
    }
    return entry.process;
  }

  async function writeStdin(id: string, data: Uint8Array | string): Promise<void> {
    const stdin = liveProcess(id).stdin;
    if (!stdin || stdin.writableEnded || stdin.destroyed) {
      throw new OverthereError('FAILED_PRECONDITION', `task ${id} has no open stdin`);
    }
    await new Promise<void>((resolve, reject) => {
      stdin.write(data, (error) =>
        error
          ? reject(
              new OverthereError('FAILED_PRECONDITION', `writing stdin of ${id}: ${error.message}`),
            )
          : resolve(),
      );
    });
  }

  async function closeStdin(id: string): Promise<void> {
    const stdin = liveProcess(id).stdin;
    if (!stdin) throw new OverthereError('FAILED_PRECONDITION', `task ${id} has no stdin pipe`);
    if (stdin.writableEnded) return;
    await new Promise<void>((resolve) => stdin.end(resolve));
  }

  async function resize(id: string, size: TtySize): Promise<void> {
    if (
      !Number.isInteger(size.cols) ||
      !Number.isInteger(size.rows) ||
      size.cols < 1 ||
      size.rows < 1
    ) {
      throw new OverthereError('INVALID_ARGUMENT', 'cols and rows must be positive integers');
    }
    await liveProcess(id).resize(size);
  }

  async function createSandbox(
    spec: SandboxSpec,
    sandboxOptions: { id?: string; runtime?: string } = {},
  ): Promise<SandboxInfo> {
    if (closing) throw new OverthereError('UNAVAILABLE', 'supervisor is shutting down');
    const runtime = findRuntime(sandboxOptions.runtime);
    if (!runtime.capabilities.sandboxes || !runtime.createSandbox) {
      throw new OverthereError('UNSUPPORTED', `runtime ${runtime.id} has no sandboxes`);
    }
    const id = sandboxOptions.id ?? generateId();
    if (!isValidTaskId(id))
      throw new OverthereError('INVALID_ARGUMENT', `invalid sandbox id: ${JSON.stringify(id)}`);
    if (sandboxes.has(id)) throw new OverthereError('CONFLICT', `sandbox already exists: ${id}`);
    const sandbox = await runtime.createSandbox(spec, { taskId: id });
    const info: SandboxInfo = {
      id,
      runtime: runtime.id,
      spec: structuredClone(spec),
      createdAt: now(),
    };
    sandboxes.set(id, { info, sandbox });
    return structuredClone(info);
  }

  async function destroySandbox(id: string): Promise<void> {
    const entry = sandboxes.get(id);
    if (!entry) throw new OverthereError('NOT_FOUND', `no such sandbox: ${id}`);
    const members = liveEntries().filter((task) => task.info.sandboxId === id);
    // Destroying the sandbox ends its processes; no grace is owed to them.
    for (const member of members) {
      member.info.stopRequested = true;
      if (member.info.state === 'backoff') await finish(member, 'exited');
    }
    sandboxes.delete(id);
    await entry.sandbox.destroy();
    await Promise.all(members.map((member) => member.final));
  }

  async function close(closeOptions: { stopTasks?: boolean } = {}): Promise<void> {
    if (closing) return;
    closing = true;
    const stopTasks = closeOptions.stopTasks ?? true;
    for (const entry of tasks.values()) {
      clearLongTimeout(entry.restartTimer);
      clearLongTimeout(entry.gcTimer);
      entry.restartTimer = undefined;
    }
    if (stopTasks) {
      for (const entry of liveEntries()) beginStop(entry, 'shutdown');
      await Promise.all([...tasks.values()].map((entry) => entry.runDone));
    }
    for (const entry of tasks.values()) clearRunTimers(entry);
    await store.flush();
    if (!stopTasks) detached = true;
    await Promise.all([...tasks.values()].map((entry) => entry.log.close()));
    await store.close?.();
  }

  /** Bring back the tasks of an earlier run from the store. */
  async function recover(): Promise<void> {
    for (const record of await store.load()) {
      const runtime = runtimes.find((candidate) => candidate.id === record.runtime);
      const dir = store.outputDir(record.id);
      const log = await createOutputLog({
        ...options.output,
        ...(dir === undefined ? {} : { dir }),
      });
      record.spec = deepFreeze(record.spec);
      const entry = newEntry(record, runtime ?? (defaultRuntime as Runtime), log);
      tasks.set(record.id, entry);
      if (isFinalState(record.state)) {
        await log.end();
        entry.resolveFinal(snapshot(record));
        scheduleCollection(entry);
        continue;
      }
      await recoverLive(entry, runtime);
    }
  }

  async function recoverLive(entry: TaskEntry, runtime: Runtime | undefined): Promise<void> {
    const { info } = entry;
    const wasRunning = info.state === 'running' || info.state === 'stopping';
    const markLost = async (reason: string) => {
      logger.warn({ taskId: info.id, reason }, 'task lost across agent restart');
      info.exit = { code: null, signal: null, reason: 'lost' };
      delete info.pid;
      delete info.handle;
      delete info.nextRestartAt;
      await finish(entry, 'lost');
    };
    if (!runtime) return markLost(`runtime ${info.runtime} is not available`);
    if (wasRunning && info.handle !== undefined && runtime.adopt && runtime.capabilities.adopt) {
      const process = await runtime.adopt(info.handle, { taskId: info.id }).catch(() => undefined);
      if (process) {
        attach(entry, process);
        void setState(entry, info.state);
        return;
      }
    }
    const mode = info.spec.restart?.mode ?? 'never';
    const restartable =
      !info.stopRequested && (mode === 'always' || (info.state === 'backoff' && mode !== 'never'));
    if (!restartable) return markLost('it was running and cannot be re-adopted');
    // Its log stays open: the new run appends after the old output.
    info.exit = info.exit ?? { code: null, signal: null, reason: 'lost' };
    delete info.pid;
    delete info.handle;
    entry.info.state = 'backoff';
    await restart(entry);
  }

  await recover();

  const supervisor: Supervisor = {
    create,
    get: (id) => snapshot(entryOf(id).info),
    list: (filter) =>
      [...tasks.values()]
        .filter((entry) => matches(entry.info, filter))
        .map((entry) => snapshot(entry.info)),
    async signal(id, signal) {
      const name = parseSignal(signal);
      await liveProcess(id).signal(name, { group: true });
    },
    stop,
    remove,
    wait: (id) => entryOf(id).final,
    output: (id) => entryOf(id).log,
    writeStdin,
    closeStdin,
    resize,
    capacity,
    createSandbox,
    destroySandbox,
    listSandboxes: () => [...sandboxes.values()].map((entry) => structuredClone(entry.info)),
    on(event, listener) {
      events.on(event, listener as (...args: unknown[]) => void);
      return supervisor;
    },
    off(event, listener) {
      events.off(event, listener as (...args: unknown[]) => void);
      return supervisor;
    },
    close,
  };
  return supervisor;
}
