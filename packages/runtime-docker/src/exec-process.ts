/**
 * A process exec'd into a sandbox container. Docker has no "kill an exec":
 * the command runs under a small `sh` wrapper that records its pid (an exec'd
 * process leads its own process group) in a tmpfs, and signals are delivered
 * by another exec running `kill` on that group.
 *
 * Starting an exec costs the engine about 60 ms (runc joins the container's
 * namespaces). A sandbox therefore keeps one **warm exec** ready: a wrapper
 * already started and attached, waiting for one line on its stdin. Taking it
 * costs one write: the line exports the process's environment and `exec`s the
 * command, so the pid, streams and exit code are the command's own.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import {
  OverthereError,
  parseSignal,
  type ExitStatus,
  type Logger,
  type SignalName,
  type TtySize,
} from '@overthere/core';
import type Docker from 'dockerode';
import { engineError, engineStatus } from './docker-errors.js';
import { socketStdin, type ManagedProcess } from './container-process.js';
import { pumpOutput } from './output-pump.js';
import { checkTtySize, exitStatusOf } from './spec-options.js';

/** tmpfs in every sandbox where exec'd processes record their pids. */
export const PID_DIR = '/run/overthere';

/**
 * `sh -c` wrapper: remove the pid files of processes that have ended (their
 * names are ours: hex, no quoting needed), record the pid, become the command.
 */
function wrapper(stalePidFiles: readonly string[]): string {
  const cleanup = stalePidFiles.length === 0 ? '' : `rm -f ${stalePidFiles.join(' ')}; `;
  return `${cleanup}echo $$ > "$0" && exec "$@"`;
}

/**
 * `sh -c` wrapper of a warm exec: like {@link wrapper}, then wait for the
 * command as one line (`read` takes exactly one line, so the command's stdin
 * starts right after it) and run it.
 */
function warmWrapper(stalePidFiles: readonly string[]): string {
  const cleanup = stalePidFiles.length === 0 ? '' : `rm -f ${stalePidFiles.join(' ')}; `;
  return `${cleanup}echo $$ > "$0" && IFS= read -r line && eval "$line"`;
}

/** A word for `sh`, single-quoted. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The line a warm exec runs: the environment, then the command in place of the wrapper. */
function warmCommandLine(argv: readonly string[], env: readonly string[]): string {
  const exports = env.length === 0 ? '' : `export ${env.map(shellWord).join(' ')}; `;
  return `${exports}exec ${argv.map(shellWord).join(' ')}\n`;
}

/** `sh -c` script that signals a recorded pid (or its group), waiting briefly for the record. */
const KILLER =
  'i=0; while [ ! -s "$0" ]; do i=$((i+1)); [ "$i" -gt 200 ] && exit 3; sleep 0.01; done; ' +
  'p=$(cat "$0"); if [ "$2" = group ]; then kill -s "$1" -- "-$p"; else kill -s "$1" "$p"; fi';

/** Pid files of ended processes, removed by the next exec (the tmpfs is small). */
export interface PidFileLedger {
  takeStale(): string[];
  ended(pidFile: string): void;
}

/** A ledger for one sandbox. */
export function createPidFileLedger(): PidFileLedger {
  let stale: string[] = [];
  return {
    takeStale() {
      const taken = stale;
      stale = [];
      return taken;
    },
    ended(pidFile) {
      stale.push(pidFile);
    },
  };
}

/** What an exec is started with. */
export interface ExecOptions {
  container: Docker.Container;
  argv: string[];
  env: string[];
  cwd: string | undefined;
  user: string | undefined;
  stdin: boolean;
  tty: TtySize | undefined;
  /** The sandbox's record of pid files left by processes that ended. */
  pidFiles: PidFileLedger;
  daemon: string;
  logger: Logger;
  /** A warm exec to run the command in, instead of a new exec (see {@link canRunWarm}). */
  warm?: WarmExec;
}

/** An exec started ahead of need, waiting for the line of its command. */
export interface WarmExec {
  exec: Docker.Exec;
  socket: Duplex;
  pidFile: string;
  /** False once its stream ended (the sandbox is gone): start a normal exec instead. */
  usable(): boolean;
}

/** What a warm exec is started with: the sandbox's defaults. */
export interface WarmExecOptions {
  container: Docker.Container;
  cwd: string | undefined;
  pidFiles: PidFileLedger;
}

/** Start a warm exec: attached, stdin open, waiting for its command line. */
export async function startWarmExec(options: WarmExecOptions): Promise<WarmExec> {
  const pidFile = `${PID_DIR}/${randomBytes(8).toString('hex')}.pid`;
  const stale = options.pidFiles.takeStale();
  let ended = false;
  try {
    const exec = await options.container.exec({
      Cmd: ['/bin/sh', '-c', warmWrapper(stale), pidFile],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      ...(options.cwd === undefined ? {} : { WorkingDir: options.cwd }),
    });
    const socket = await exec.start({ hijack: true, stdin: true, Tty: false });
    const end = () => {
      ended = true;
    };
    socket.once('end', end);
    socket.once('close', end);
    socket.once('error', end);
    return { exec, socket, pidFile, usable: () => !ended && !socket.destroyed };
  } catch (error) {
    for (const file of [...stale, pidFile]) options.pidFiles.ended(file);
    throw error;
  }
}

/**
 * Whether a process can run in a warm exec: no tty, the sandbox's user and
 * working directory (fixed when the exec started), words a one-line command
 * can carry, and environment names `export` accepts.
 */
export function canRunWarm(options: {
  argv: readonly string[];
  env: readonly string[];
  tty: TtySize | undefined;
  user: string | undefined;
  cwd: string | undefined;
  defaultCwd: string | undefined;
}): boolean {
  return (
    options.tty === undefined &&
    options.user === undefined &&
    options.cwd === options.defaultCwd &&
    ![...options.argv, ...options.env].some((word) => word.includes('\n')) &&
    // `export` takes shell names only; an exec's Env takes any.
    options.env.every((entry) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(entry))
  );
}

/** Run a short command in the container and wait for its exit code. */
async function runQuiet(container: Docker.Container, argv: string[]): Promise<number> {
  const exec = await container.exec({ Cmd: argv, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: false, stdin: false });
  stream.resume();
  await new Promise<void>((resolve) => {
    stream.once('close', resolve);
    stream.once('end', resolve);
    stream.once('error', () => resolve());
  });
  return (await finalExitCode(exec)) ?? 255;
}

/** The exit code of an exec whose stream has closed (the daemon may lag a moment). */
async function finalExitCode(exec: Docker.Exec): Promise<number | undefined> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const info = await exec.inspect();
    if (!info.Running) return info.ExitCode ?? undefined;
    // No event to await: the daemon records the exit just after closing the stream.
    await new Promise((resolve) => setTimeout(resolve, attempt < 10 ? 2 : 20));
  }
  return undefined;
}

/** Start `argv` in the sandbox container. */
export async function startExecProcess(options: ExecOptions): Promise<ManagedProcess> {
  const { container, logger, warm } = options;
  const tty = options.tty !== undefined;
  if (warm !== undefined) {
    warm.socket.write(warmCommandLine(options.argv, options.env));
    // No stdin asked for: the command reads end of file, as with /dev/null.
    if (!options.stdin) warm.socket.end();
    return execProcess(options, warm.exec, warm.socket, warm.pidFile);
  }
  const pidFile = `${PID_DIR}/${randomBytes(8).toString('hex')}.pid`;
  const stale = options.pidFiles.takeStale();
  let exec: Docker.Exec;
  let socket: Duplex;
  try {
    exec = await container.exec({
      Cmd: ['/bin/sh', '-c', wrapper(stale), pidFile, ...options.argv],
      AttachStdin: options.stdin,
      AttachStdout: true,
      AttachStderr: true,
      Tty: tty,
      Env: options.env,
      ...(options.cwd === undefined ? {} : { WorkingDir: options.cwd }),
      ...(options.user === undefined ? {} : { User: options.user }),
    });
    // Without stdin a plain streaming response does (no connection upgrade).
    socket = await exec.start({
      hijack: options.stdin,
      stdin: options.stdin,
      Tty: tty,
    });
  } catch (error) {
    // Whatever ran (or did not) leaves these for the next exec to remove.
    for (const file of [...stale, pidFile]) options.pidFiles.ended(file);
    if (engineStatus(error) === 404 || engineStatus(error) === 409) {
      throw new OverthereError('SPAWN_FAILED', 'the sandbox is gone or not running', {
        cause: error,
      });
    }
    throw engineError(error, 'starting a process in the sandbox', 'SPAWN_FAILED', options.daemon);
  }
  if (options.tty !== undefined) {
    await exec.resize({ h: options.tty.rows, w: options.tty.cols }).catch((error: unknown) => {
      logger.debug({ err: error }, 'initial exec resize failed');
    });
  }
  return execProcess(options, exec, socket, pidFile);
}

/** The process of a started exec. */
function execProcess(
  options: ExecOptions,
  exec: Docker.Exec,
  socket: Duplex,
  pidFile: string,
): ManagedProcess {
  const { container, logger } = options;
  const tty = options.tty !== undefined;
  const sent = new Set<SignalName>();
  let finished = false;
  let killedWithSandbox = false;
  const pump = pumpOutput(socket, { tty });

  const status: Promise<ExitStatus> = (async () => {
    await pump.done;
    let code: number | undefined;
    try {
      code = await finalExitCode(exec);
    } catch (error) {
      logger.debug({ err: error }, 'inspecting the exec failed');
    }
    finished = true;
    options.pidFiles.ended(pidFile);
    // The sandbox went away under it (destroyed), which killed it.
    if (code === undefined || killedWithSandbox) {
      return { code: null, signal: 'SIGKILL', reason: 'signalled' };
    }
    return exitStatusOf(code, false, sent);
  })();

  const deliver = async (name: SignalName, group: boolean) => {
    sent.add(name);
    try {
      await runQuiet(container, [
        '/bin/sh',
        '-c',
        KILLER,
        pidFile,
        name.replace(/^SIG/, ''),
        group ? 'group' : 'process',
      ]);
    } catch (error) {
      const code = engineStatus(error);
      if (code === 404 || code === 409) return; // the sandbox is gone: so is the process
      throw engineError(error, `sending ${name} in the sandbox`, 'INTERNAL', options.daemon);
    }
  };

  const stdin = options.stdin ? socketStdin(socket) : undefined;

  return {
    pid: undefined,
    handle: undefined,
    stdout: pump.stdout,
    stderr: pump.stderr,
    stdin,
    get counts() {
      return { ...pump.counts };
    },
    async signal(signal, signalOptions) {
      const name = parseSignal(signal);
      if (finished) return;
      await deliver(name, signalOptions?.group ?? true);
    },
    async resize(size) {
      if (!tty)
        throw new OverthereError('UNSUPPORTED', 'resize needs a process started with a tty');
      checkTtySize(size, 'size');
      if (finished) return;
      try {
        await exec.resize({ h: size.rows, w: size.cols });
      } catch (error) {
        if (finished) return;
        throw engineError(error, 'resizing the tty', 'INTERNAL', options.daemon);
      }
    },
    wait: () => status,
    async kill() {
      if (!finished) await deliver('SIGKILL', true);
    },
    markKilled() {
      if (!finished) killedWithSandbox = true;
    },
    detach() {
      pump.detach();
      return { ...pump.counts };
    },
  };
}
