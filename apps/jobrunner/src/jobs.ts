/**
 * Jobs: jobrunner's one idea on top of the supervisor. A job is a sequence of
 * commands; each command is one supervisor task (id `<job id>.<index>`), run
 * after the previous one succeeded. Output, process groups and kill escalation
 * are the supervisor's; this module only sequences tasks and reads their logs.
 */
import { randomUUID } from 'node:crypto';
import {
  OverthereError,
  type Logger,
  type Supervisor,
  type TaskInfo,
  type TaskSpec,
} from '@overthere/core';
import type { CommandRequest, JobRequest } from './job-request.js';

/** Id of the runtime that runs commands on the host. */
export const LOCAL_RUNTIME = 'local';
/** Id of the runtime that runs `Container` commands (registered when available). */
export const CONTAINER_RUNTIME = 'docker';

/** `running` until the job ends; then how it ended. */
export type JobState = 'running' | 'succeeded' | 'failed' | 'killed';
/** `skipped`: never started because an earlier command failed or the job was killed. */
export type CommandState = 'pending' | 'running' | 'succeeded' | 'failed' | 'killed' | 'skipped';

/** One command of a job and how it went. */
export interface CommandRecord {
  readonly request: CommandRequest;
  state: CommandState;
  /** The supervisor task running it, once started. */
  taskId: string | undefined;
  exitCode: number | null;
  signal: string | null;
  /** Why it could not start, if it could not. */
  error: string | null;
  startedAt: string | null;
  endedAt: string | null;
}

/** A job as the routes see it (read-only by convention). */
export interface Job {
  readonly id: string;
  readonly commands: readonly CommandRecord[];
  state: JobState;
  /** The exit code of the last command that ran; null while running, or if it was signalled or never started. */
  exitCode: number | null;
  readonly createdAt: string;
  endedAt: string | null;
}

/** How streaming a job's output ended. */
export type StreamOutcome =
  /** Everything the job wrote was delivered and the job has ended. */
  | 'complete'
  /** The reader went away or the server is shutting down. */
  | 'aborted'
  /** The job was deleted while being streamed. */
  | 'removed';

/** Options for {@link createJobManager}. */
export interface JobManagerOptions {
  supervisor: Supervisor;
  /** Ids of the runtimes the supervisor was given. */
  runtimeIds: ReadonlySet<string>;
  /** Absolute path of bash on the agent (a job's own PATH must not change which bash runs it). */
  bashPath: string;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** Forget finished jobs this long after they end; 0 = keep until deleted. */
  jobTtlMs: number;
  logger: Logger;
}

/** Runs jobs on the supervisor. */
export interface JobManager {
  /**
   * Start a job. Resolves once its first command is running; if that command
   * cannot start (bad working directory…) the error is thrown and no job is kept.
   * `UNSUPPORTED` for a `Container` command without a container runtime.
   */
  start(request: JobRequest): Promise<Job>;
  /** The job, or undefined. */
  find(id: string): Job | undefined;
  /** Ids of jobs still running, oldest first. */
  running(): string[];
  /**
   * DELETE: a running job is killed (SIGTERM to each command's process group,
   * SIGKILL after the grace period) and kept as `killed`; resolves once it has
   * ended. A finished job is forgotten. Unknown ids are fine.
   */
  delete(id: string): Promise<void>;
  /**
   * Deliver everything the job writes — every command in order, stdout and
   * stderr merged in the order they were written — to `write`, following live
   * output until the job ends. `write` should wait when the reader is slow.
   */
  streamOutput(
    job: Job,
    write: (chunk: Buffer) => Promise<void>,
    signal: AbortSignal,
  ): Promise<StreamOutcome>;
  /** Kill every running job (and wait for them), refuse new ones, stop collecting. */
  close(): Promise<void>;
}

/** What an attacher sees where output was too old to be retained. */
export const GAP_MARKER = Buffer.from(
  '\n[jobrunner: output dropped here: it was no longer retained]\n',
);

/** Replaces the wrapper shell with `bash -c "$1"` ($0 is bash, as for the original), stderr joined to stdout. */
const MERGE_STDERR = 'exec -a bash "$0" -c "$1" 2>&1';

interface JobEntry extends Job {
  readonly commands: CommandRecord[];
  stopRequested: boolean;
  removed: boolean;
  /** Index of the command running (or last run). */
  current: number;
  /** Woken on every change (a command started, the job ended or was removed). */
  waiters: Set<() => void>;
  finished: Promise<void>;
  resolveFinished: () => void;
  gcTimer: NodeJS.Timeout | undefined;
}

const now = () => new Date().toISOString();

/** Create the job manager. */
export function createJobManager(options: JobManagerOptions): JobManager {
  const { supervisor, logger } = options;
  const jobs = new Map<string, JobEntry>();
  let closing = false;

  function notify(job: JobEntry): void {
    const waiters = [...job.waiters];
    job.waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Resolves on the job's next change, or when `signal` aborts. */
  function nextChange(job: JobEntry, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const wake = () => {
        signal.removeEventListener('abort', wake);
        job.waiters.delete(wake);
        resolve();
      };
      job.waiters.add(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
  }

  function checkRuntimes(request: JobRequest): void {
    request.commands.forEach((command, index) => {
      if (command.container === undefined || options.runtimeIds.has(CONTAINER_RUNTIME)) return;
      const which = request.commands.length === 1 ? 'Container' : `Commands[${index}].Container`;
      throw new OverthereError(
        'UNSUPPORTED',
        `${which}: this jobrunner cannot run commands in containers yet: no Docker runtime is configured (only commands on the host are supported)`,
      );
    });
  }

  /** The task that runs one command. */
  function taskFor(job: JobEntry, index: number): { spec: TaskSpec; runtime: string } {
    const command = job.commands[index]!.request;
    const spec: TaskSpec = {
      // `bash -c <CommandLine>` with stderr on the stdout pipe: one pipe keeps the
      // merged stream in exactly the order the command wrote it (two pipes cannot).
      command: [options.bashPath, '-c', MERGE_STDERR, options.bashPath, command.commandLine],
      env: command.environment,
      kill: { signal: 'SIGTERM', graceMs: options.killGraceMs },
      labels: { 'jobrunner.job': job.id, 'jobrunner.command': String(index) },
    };
    if (command.workingDirectory !== undefined) spec.cwd = command.workingDirectory;
    if (command.container === undefined) return { spec, runtime: LOCAL_RUNTIME };
    // In the image, bash is found on the image's PATH.
    spec.command = ['bash', '-c', MERGE_STDERR, 'bash', command.commandLine];
    spec.runtimeOptions = { [CONTAINER_RUNTIME]: { image: command.container.image } };
    return { spec, runtime: CONTAINER_RUNTIME };
  }

  async function startCommand(job: JobEntry, index: number): Promise<void> {
    const { spec, runtime } = taskFor(job, index);
    const task = await supervisor.create(spec, { id: `${job.id}.${index}`, runtime });
    const command = job.commands[index]!;
    command.taskId = task.id;
    command.state = 'running';
    command.startedAt = task.startedAt ?? now();
    job.current = index;
    notify(job);
    // Killed while this command was being started.
    if (job.stopRequested) stopTask(task.id);
  }

  function stopTask(taskId: string): void {
    supervisor.stop(taskId).catch((error: unknown) => {
      if (!OverthereError.hasCode(error, 'NOT_FOUND')) {
        logger.warn({ err: error, taskId }, 'stopping a job command failed');
      }
    });
  }

  /** Note how a command's task ended; returns its final state. */
  function record(command: CommandRecord, task: TaskInfo): 'succeeded' | 'failed' | 'killed' {
    command.exitCode = task.exit?.code ?? null;
    command.signal = task.exit?.signal ?? null;
    command.endedAt = task.endedAt ?? now();
    const state = task.stopRequested ? 'killed' : task.exit?.code === 0 ? 'succeeded' : 'failed';
    command.state = state;
    return state;
  }

  function finish(job: JobEntry, state: Exclude<JobState, 'running'>): void {
    job.state = state;
    job.endedAt = now();
    const last = job.commands[job.current];
    job.exitCode = last?.exitCode ?? null;
    for (const command of job.commands) {
      if (command.state === 'pending') command.state = 'skipped';
    }
    job.resolveFinished();
    notify(job);
    if (options.jobTtlMs > 0 && !closing) {
      job.gcTimer = setTimeout(() => void remove(job), options.jobTtlMs);
      job.gcTimer.unref();
    }
  }

  /** Run the job from its first (already started) command to the end. */
  async function run(job: JobEntry): Promise<void> {
    for (let index = 0; index < job.commands.length; index += 1) {
      const command = job.commands[index]!;
      if (index > 0) {
        if (job.stopRequested) return finish(job, 'killed');
        try {
          await startCommand(job, index);
        } catch (error) {
          command.state = 'failed';
          command.error = error instanceof Error ? error.message : String(error);
          command.endedAt = now();
          job.current = index;
          return finish(job, 'failed');
        }
      }
      const task = await supervisor.wait(command.taskId!);
      const state = record(command, task);
      if (state !== 'succeeded') return finish(job, state);
    }
    finish(job, 'succeeded');
  }

  async function remove(job: JobEntry): Promise<void> {
    if (job.removed) return;
    job.removed = true;
    clearTimeout(job.gcTimer);
    jobs.delete(job.id);
    notify(job);
    await Promise.all(
      job.commands.map(async (command) => {
        if (command.taskId === undefined) return;
        await supervisor.remove(command.taskId).catch((error: unknown) => {
          if (!OverthereError.hasCode(error, 'NOT_FOUND')) {
            logger.warn({ err: error, taskId: command.taskId }, 'removing a job command failed');
          }
        });
      }),
    );
  }

  async function kill(job: JobEntry): Promise<void> {
    if (job.state === 'running') {
      job.stopRequested = true;
      const command = job.commands[job.current];
      if (command?.state === 'running' && command.taskId !== undefined) stopTask(command.taskId);
    }
    await job.finished;
  }

  return {
    async start(request) {
      if (closing) throw new OverthereError('UNAVAILABLE', 'jobrunner is shutting down');
      checkRuntimes(request);
      let resolveFinished!: () => void;
      const finished = new Promise<void>((resolve) => (resolveFinished = resolve));
      const job: JobEntry = {
        id: randomUUID(),
        commands: request.commands.map((command) => ({
          request: command,
          state: 'pending',
          taskId: undefined,
          exitCode: null,
          signal: null,
          error: null,
          startedAt: null,
          endedAt: null,
        })),
        state: 'running',
        exitCode: null,
        createdAt: now(),
        endedAt: null,
        stopRequested: false,
        removed: false,
        current: 0,
        waiters: new Set(),
        finished,
        resolveFinished,
        gcTimer: undefined,
      };
      await startCommand(job, 0);
      jobs.set(job.id, job);
      // Shutdown began while the first command was starting: it is not spared.
      if (closing) void kill(job);
      run(job).catch((error: unknown) => {
        // Not expected: supervisor.wait does not reject for a task that exists.
        logger.error({ err: error, jobId: job.id }, 'running a job failed');
        if (job.state === 'running') finish(job, 'failed');
      });
      return job;
    },

    find: (id) => jobs.get(id),

    running: () => [...jobs.values()].filter((job) => job.state === 'running').map((job) => job.id),

    async delete(id) {
      const job = jobs.get(id);
      if (job === undefined) return;
      if (job.state === 'running') await kill(job);
      else await remove(job);
    },

    async streamOutput(job, write, signal) {
      // Every Job handed out is an entry of this manager.
      const entry = job as JobEntry;
      for (const command of entry.commands) {
        while (command.taskId === undefined) {
          if (entry.removed) return 'removed';
          // The job ended before this command started: nothing more to deliver.
          if (entry.state !== 'running') return 'complete';
          await nextChange(entry, signal);
          if (signal.aborted) return 'aborted';
        }
        if (entry.removed) return 'removed';
        const log = supervisor.output(command.taskId);
        for await (const event of log.read({ follow: true, signal })) {
          await write(event.type === 'frame' ? event.data : GAP_MARKER);
        }
        if (signal.aborted) return 'aborted';
        if (entry.removed) return 'removed';
      }
      // The last log ends just before the job is marked finished.
      while (entry.state === 'running' && !entry.removed && !signal.aborted) {
        await nextChange(entry, signal);
      }
      if (signal.aborted) return 'aborted';
      return entry.removed ? 'removed' : 'complete';
    },

    async close() {
      closing = true;
      for (const job of jobs.values()) clearTimeout(job.gcTimer);
      await Promise.all([...jobs.values()].map((job) => kill(job)));
    },
  };
}
