/** The local runtime: tasks as processes on this machine, each in its own process group. */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, rm, rmdir, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  OverthereError,
  boundLogger,
  noopLogger,
  type Logger,
  type Process,
  type Runtime,
  type RuntimeCapabilities,
  type RuntimeCapacity,
  type SpawnContext,
  type TaskSpec,
} from '@overthere/core';
import { ENFORCED_LIMITS, limitsScript, validateLimits, wrapWithLimits } from './limits.js';
import { launchPipe, type LaunchPlan } from './pipe-launch.js';
import { checkCwd, checkExecutable, shebangArgv, spawnFailed } from './preflight.js';
import { errorCode } from './process-group.js';
import { launchPty, openPtyMasters } from './pty-launch.js';
import { createTaskProcess, validateTtySize, type TaskProcess } from './task-process.js';
import { resolveUser, type Credentials } from './user.js';
import { createNativeSpawner } from './native-spawn.js';
import { createSpawner, type WatchTable } from './spawner.js';

/** Options for {@link createLocalRuntime}. */
export interface LocalRuntimeOptions {
  /** Runs scripts that have no `#!` line. Default `/bin/sh`. */
  shell?: string;
  /**
   * Where script files are written (mode 0700, removed when the process ends).
   * Default `<os.tmpdir()>/overthere-local-<pid>`. Must belong to the agent and
   * not be writable by others (unless sticky).
   */
  tempDir?: string;
  /** Base environment of tasks (unless `inheritEnv: false`). Default `process.env`, copied when the runtime is created. */
  env?: Readonly<Record<string, string | undefined>>;
  /** pino-compatible logger. Default: no logging. */
  logger?: Logger;
  /**
   * After a process exited and its group was killed, how long its output may
   * stay open without data flowing before it is closed (a descendant that left
   * the session with setsid can hold it). Default 2000.
   */
  drainTimeoutMs?: number;
  /**
   * Start piped tasks with posix_spawn from this process (the native addon
   * built at install) rather than by forking in the Node spawner process:
   * several times the spawn rate. Default true; without the addon (see
   * `nativeSpawnSupport()`), or for a task that switches user, the Node
   * spawner starts it either way.
   */
  nativeSpawn?: boolean;
}

const CAPABILITIES: RuntimeCapabilities = Object.freeze({
  stdin: true,
  tty: true,
  signals: true,
  processGroups: true,
  // Switching user needs root (CAP_SETUID/CAP_SETGID).
  user: true,
  limits: ENFORCED_LIMITS,
  isolation: 'process',
  sandboxes: false,
  adopt: false,
});

/**
 * A runtime that starts tasks as local processes: each in a new session and
 * process group, killed as a group when its main process ends, and killed by
 * the spawner (its watchdog) when the agent dies.
 */
export function createLocalRuntime(options: LocalRuntimeOptions = {}): Runtime {
  const shell = options.shell ?? '/bin/sh';
  const defaultTempDir = path.join(os.tmpdir(), `overthere-local-${process.pid}`);
  const tempDir = path.resolve(options.tempDir ?? defaultTempDir);
  const drainTimeoutMs = options.drainTimeoutMs ?? 2_000;
  const logger = (options.logger ?? noopLogger).child({ runtime: 'local' });
  let devNull: number | undefined;
  const makeNodeSpawner = (watchTable?: WatchTable) =>
    createSpawner({
      logger,
      leakedFds: openPtyMasters,
      devNull: () => (devNull ??= openSync('/dev/null', 'r')),
      ...(watchTable === undefined ? {} : { watchTable }),
    });
  const spawner =
    (options.nativeSpawn !== false && createNativeSpawner(makeNodeSpawner)) || makeNodeSpawner();
  // Copied once: reading process.env goes through a slow accessor on every key.
  const baseEnv = plainEnv(options.env ?? process.env);

  const live = new Map<number, TaskProcess>();
  const starting = new Set<Promise<unknown>>();
  let disposing: Promise<void> | undefined;
  let createdTempDir = false;

  async function ensureTempDir(): Promise<void> {
    const created = await mkdir(tempDir, { recursive: true, mode: 0o711 });
    if (created !== undefined) {
      createdTempDir = true;
      // 0711: other users (tasks run as `user`) reach their script, but cannot list the directory.
      await chmod(tempDir, 0o711);
    }
    const stats = await lstat(tempDir);
    const euid = process.geteuid?.();
    if (!stats.isDirectory()) throw spawnFailed(`tempDir ${tempDir} is not a directory`);
    if (euid !== undefined && stats.uid !== euid) {
      throw spawnFailed(`tempDir ${tempDir} belongs to uid ${stats.uid}, not to the agent`);
    }
    if ((stats.mode & 0o022) !== 0 && (stats.mode & 0o1000) === 0) {
      throw spawnFailed(`tempDir ${tempDir} is writable by others`);
    }
  }

  async function writeScript(
    script: string,
    taskId: string,
    credentials: Credentials | undefined,
  ): Promise<string> {
    await ensureTempDir();
    const safeId = taskId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'task';
    const file = path.join(tempDir, `${safeId}-${randomBytes(8).toString('hex')}`);
    await writeFile(file, script, { mode: 0o700, flag: 'wx' });
    if (credentials) await chown(file, credentials.uid, credentials.gid);
    return file;
  }

  async function removeFile(file: string | undefined): Promise<void> {
    if (file !== undefined) await rm(file, { force: true });
  }

  async function start(spec: TaskSpec, context: SpawnContext): Promise<Process> {
    validateSpec(spec);
    const taskLogger = boundLogger(logger, { taskId: context.taskId });

    const user = spec.user === undefined ? undefined : await resolveUser(spec.user);
    // Same uid and gid as the agent: nothing to switch (and a non-root agent could not clear its groups).
    const credentials =
      user !== undefined && (user.uid !== process.getuid?.() || user.gid !== process.getgid?.())
        ? user
        : undefined;
    const env = buildEnv(spec, baseEnv, user);
    const cwd = path.resolve(spec.cwd ?? process.cwd());
    // The agent's own cwd exists; a given one is checked so a bad one gets a clear error.
    if (spec.cwd !== undefined) await checkCwd(cwd);

    let scriptFile: string | undefined;
    try {
      let argv: [string, ...string[]];
      if (spec.command !== undefined) {
        argv = spec.command as [string, ...string[]];
      } else {
        const script = spec.script ?? '';
        const interpreter = shebangArgv(script);
        if (interpreter !== undefined && interpreter.length === 0) {
          throw spawnFailed('the script has an empty #! line');
        }
        scriptFile = await writeScript(script, context.taskId, credentials);
        // The #! line is read here rather than by the kernel: the file is only
        // read, never executed, so a noexec temp directory still works, and a
        // concurrent fork holding the freshly written file cannot cause ETXTBSY.
        argv = interpreter
          ? [...(interpreter as [string, ...string[]]), scriptFile]
          : [shell, scriptFile];
      }

      const wrapper = limitsScript(spec.limits);
      // Behind a wrapper or a pty, exec errors would come after the process
      // started, as an exit status: check the program up front.
      if (wrapper !== undefined || spec.tty !== undefined) await checkExecutable(argv[0], env, cwd);
      if (wrapper !== undefined) argv = wrapWithLimits(wrapper, argv) as [string, ...string[]];

      const plan: LaunchPlan = {
        argv,
        env,
        cwd,
        credentials: credentials && { uid: credentials.uid, gid: credentials.gid },
        stdin: spec.stdin === 'pipe',
      };
      const launched =
        spec.tty !== undefined
          ? await launchPty(plan, { watchdog: spawner, logger: taskLogger, size: spec.tty })
          : await launchPipe(plan, { spawner, logger: taskLogger, drainTimeoutMs });
      const processLogger = taskLogger.child({ pid: launched.pid });
      processLogger.debug({ argv0: argv[0], tty: launched.tty }, 'process started');
      const file = scriptFile;
      const task = createTaskProcess(launched, {
        watchdog: spawner,
        logger: processLogger,
        onExit: () => removeFile(file),
      });
      live.set(launched.pid, task);
      void task.wait().then(() => live.delete(launched.pid));
      return task;
    } catch (error) {
      await removeFile(scriptFile).catch(() => undefined);
      throw error;
    }
  }

  return {
    id: 'local',
    capabilities: CAPABILITIES,

    async spawn(spec, context) {
      if (disposing !== undefined) {
        throw new OverthereError('UNAVAILABLE', 'the local runtime has been disposed');
      }
      const attempt = start(spec, context);
      starting.add(attempt);
      try {
        return await attempt;
      } finally {
        starting.delete(attempt);
      }
    },

    async capacity() {
      const capacity: RuntimeCapacity = { memoryBytes: os.freemem() };
      const disk = await freeDiskBytes(tempDir);
      if (disk !== undefined) capacity.diskBytes = disk;
      return capacity;
    },

    dispose() {
      disposing ??= (async () => {
        await Promise.allSettled([...starting]);
        const tasks = [...live.values()];
        for (const task of tasks) task.kill();
        await Promise.all(tasks.map((task) => task.wait()));
        await spawner.close();
        if (devNull !== undefined) {
          closeSync(devNull);
          devNull = undefined;
        }
        // Not recursive: only an empty directory goes, never files this runtime did not write.
        if (createdTempDir || tempDir === defaultTempDir) {
          await rmdir(tempDir).catch(() => undefined);
        }
      })();
      return disposing;
    },
  };
}

function validateSpec(spec: TaskSpec): void {
  if (typeof spec !== 'object' || spec === null) {
    throw new OverthereError('INVALID_ARGUMENT', 'a task spec must be an object');
  }
  const hasCommand = spec.command !== undefined;
  const hasScript = spec.script !== undefined;
  if (hasCommand === hasScript) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      'a task spec needs exactly one of command and script',
    );
  }
  if (hasCommand) {
    if (!Array.isArray(spec.command) || spec.command.some((part) => typeof part !== 'string')) {
      throw new OverthereError('INVALID_ARGUMENT', 'command must be an array of strings');
    }
    if (spec.command.length === 0 || spec.command[0] === '') {
      throw spawnFailed('empty command: there is no program to run');
    }
    if (spec.command.some((part) => part.includes('\0'))) {
      throw new OverthereError('INVALID_ARGUMENT', 'command must not contain NUL characters');
    }
  } else if (typeof spec.script !== 'string') {
    throw new OverthereError('INVALID_ARGUMENT', 'script must be a string');
  }
  if (spec.env !== undefined) {
    if (typeof spec.env !== 'object' || spec.env === null) {
      throw new OverthereError('INVALID_ARGUMENT', 'env must be an object of strings');
    }
    for (const [name, value] of Object.entries(spec.env)) {
      if (name === '' || name.includes('=') || name.includes('\0')) {
        throw new OverthereError(
          'INVALID_ARGUMENT',
          `invalid environment variable name ${JSON.stringify(name)}`,
        );
      }
      if (typeof value !== 'string' || value.includes('\0')) {
        throw new OverthereError(
          'INVALID_ARGUMENT',
          `environment variable ${name} must be a string without NUL`,
        );
      }
    }
  }
  if (
    spec.cwd !== undefined &&
    (typeof spec.cwd !== 'string' || spec.cwd === '' || spec.cwd.includes('\0'))
  ) {
    throw new OverthereError('INVALID_ARGUMENT', 'cwd must be a non-empty path');
  }
  if (spec.user !== undefined && typeof spec.user !== 'string' && typeof spec.user !== 'number') {
    throw new OverthereError('INVALID_ARGUMENT', 'user must be a name or a uid');
  }
  if (spec.stdin !== undefined && spec.stdin !== 'none' && spec.stdin !== 'pipe') {
    throw new OverthereError('INVALID_ARGUMENT', "stdin must be 'none' or 'pipe'");
  }
  if (spec.tty !== undefined) validateTtySize(spec.tty, 'tty');
  validateLimits(spec.limits);
}

/**
 * The task's environment: the base (unless `inheritEnv: false`), then the
 * user's HOME, USER and LOGNAME when switching user, then `spec.env`.
 */
function buildEnv(
  spec: TaskSpec,
  base: Readonly<Record<string, string>>,
  user: Credentials | undefined,
): Readonly<Record<string, string>> {
  // The common case needs no copy: the base is frozen and spawn only reads it.
  if (spec.inheritEnv !== false && user === undefined && spec.env === undefined) return base;
  const env: Record<string, string> = spec.inheritEnv === false ? {} : { ...base };
  if (user !== undefined) {
    if (user.home !== undefined) env.HOME = user.home;
    if (user.name !== undefined) {
      env.USER = user.name;
      env.LOGNAME = user.name;
    }
  }
  return Object.assign(env, spec.env);
}

/** A plain, frozen copy of an environment without undefined values. */
function plainEnv(
  source: Readonly<Record<string, string | undefined>>,
): Readonly<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) if (value !== undefined) env[name] = value;
  return Object.freeze(env);
}

/** Free space for unprivileged users on the file system holding `dir` (or its nearest existing parent). */
async function freeDiskBytes(dir: string): Promise<number | undefined> {
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      const stats = await statfs(current);
      return stats.bavail * stats.bsize;
    } catch (error) {
      if (errorCode(error) !== 'ENOENT' || current === path.dirname(current)) return undefined;
    }
  }
}
