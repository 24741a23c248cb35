/**
 * The `Process` handed to the supervisor, common to piped and pty processes:
 * signals to the process group, and the end-of-life sequence behind `wait()`.
 */
import type { Readable, Writable } from 'node:stream';
import {
  OverthereError,
  parseSignal,
  type ExitStatus,
  type Logger,
  type Process,
  type TtySize,
} from '@overthere/core';
import { errorCode, killSession, signalGroup, signalPid } from './process-group.js';
import type { Watchdog } from './spawner.js';

/** How the main process ended. */
export interface MainExit {
  code: number | null;
  signal: string | null;
  /** The launcher already SIGKILLed the process group, before the leader was reaped. */
  groupKilled?: boolean;
}

/** A started process, as a launcher (pipes or pty) hands it over. */
export interface Launched {
  /** Pid of the main process; also its process group and session id. */
  readonly pid: number;
  readonly tty: boolean;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | undefined;
  /** Resolves when the main process has exited (never rejects). */
  readonly exit: Promise<MainExit>;
  /**
   * Called once the group was SIGKILLed: resolves when stdout and stderr are
   * complete. `sweep` kills what is left of the session, for a launcher that
   * finds its output still held open.
   */
  drain(sweep: () => Promise<void>): Promise<void>;
  /** Resize the terminal; undefined without a tty. */
  readonly resize: ((size: TtySize) => void) | undefined;
}

/** A Process plus what the runtime needs to manage it. */
export interface TaskProcess extends Process {
  /** SIGKILL the whole group now (dispose). */
  kill(): void;
}

export interface TaskProcessOptions {
  watchdog: Watchdog;
  logger: Logger;
  /** Runs right after the main process exited (removes the script file). */
  onExit: () => Promise<void>;
}

export function createTaskProcess(launched: Launched, options: TaskProcessOptions): TaskProcess {
  const { watchdog, logger } = options;
  const pgid = launched.pid;
  let mainExited = false;
  let finished = false;

  /**
   * A pty child calls setsid only after node-pty's fork returned: until then
   * its group does not exist (ESRCH), and the child, alone, gets the signal.
   */
  const signalGroupOrLeader = (signal: NodeJS.Signals): void => {
    if (!signalGroup(pgid, signal) && !mainExited) signalPid(pgid, signal);
  };

  const sweep = async (): Promise<void> => {
    const killed = await killSession(pgid);
    if (killed > 0) logger.debug({ killed }, 'killed processes left in the session');
  };

  const status: Promise<ExitStatus> = (async () => {
    const exit = await launched.exit;
    mainExited = true;
    logger.debug({ code: exit.code, signal: exit.signal }, 'process exited');
    try {
      // Whatever the task left behind in its group dies with it.
      if (exit.groupKilled !== true) signalGroup(pgid, 'SIGKILL');
    } catch (error) {
      logger.warn({ err: error }, 'could not kill the process group');
    }
    // A terminal's job-control shell puts jobs in groups of their own: sweep the session.
    if (launched.tty) await sweep().catch(() => undefined);
    await options.onExit().catch((error: unknown) => {
      logger.warn({ err: error }, 'cleanup after exit failed');
    });
    try {
      await launched.drain(sweep);
    } catch (error) {
      logger.warn({ err: error }, 'draining output failed');
    }
    watchdog.unregister(pgid);
    finished = true;
    return toExitStatus(exit);
  })();

  return {
    pid: launched.pid,
    handle: undefined,
    stdout: launched.stdout,
    stderr: launched.stderr,
    stdin: launched.stdin,

    signal(signal, signalOptions) {
      return settle(() => {
        const name = parseSignal(signal);
        const group = signalOptions?.group ?? true;
        // Once reaped, the pid (and after the group is gone, the pgid) may be reused.
        if (finished || (!group && mainExited)) return;
        try {
          if (group) signalGroupOrLeader(name);
          else signalPid(pgid, name);
        } catch (error) {
          throw signalError(name, error);
        }
      });
    },

    resize(size) {
      return settle(() => {
        if (launched.resize === undefined) {
          throw new OverthereError('UNSUPPORTED', 'resize needs a process started with a tty');
        }
        validateTtySize(size, 'size');
        if (mainExited) return;
        try {
          launched.resize(size);
        } catch (error) {
          if (mainExited) return; // lost the race with exit
          throw new OverthereError('INTERNAL', `resize failed: ${String(error)}`, { cause: error });
        }
      });
    },

    wait() {
      return status;
    },

    kill() {
      if (finished) return;
      try {
        signalGroupOrLeader('SIGKILL');
      } catch (error) {
        logger.warn({ err: error }, 'could not kill the process group');
      }
    },
  };
}

/** Runs `action` now; its result or throw as a promise. */
function settle(action: () => void): Promise<void> {
  return new Promise((resolve) => {
    action();
    resolve();
  });
}

function signalError(name: string, error: unknown): OverthereError {
  const code = errorCode(error);
  if (code === 'EPERM') {
    return new OverthereError('PERMISSION_DENIED', `kill ${name}: not permitted (EPERM)`, {
      cause: error,
    });
  }
  if (code === 'ERR_UNKNOWN_SIGNAL') {
    return new OverthereError('INVALID_ARGUMENT', `signal ${name} does not exist on this system`, {
      cause: error,
    });
  }
  return new OverthereError('INTERNAL', `kill ${name} failed: ${String(error)}`, { cause: error });
}

function toExitStatus(exit: MainExit): ExitStatus {
  if (exit.signal !== null) return { code: null, signal: exit.signal, reason: 'signalled' };
  if (exit.code !== null) return { code: exit.code, signal: null, reason: 'exited' };
  return { code: null, signal: null, reason: 'lost' };
}

/** Throws INVALID_ARGUMENT unless cols and rows are positive integers. */
export function validateTtySize(size: unknown, what: string): asserts size is TtySize {
  const candidate = size as Partial<TtySize> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    !isPositiveInteger(candidate.cols) ||
    !isPositiveInteger(candidate.rows) ||
    candidate.cols > 0xffff ||
    candidate.rows > 0xffff
  ) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `${what} needs cols and rows as positive integers`,
    );
  }
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}
