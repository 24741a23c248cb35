/**
 * Starting a process under a pseudo-terminal with @lydell/node-pty, a
 * maintained fork of Microsoft's node-pty that ships prebuilt binaries (it
 * installs without a compiler). The child is a session leader (forkpty calls
 * setsid), so its pgid is its pid, as for piped processes.
 *
 * The runtime holds the terminal's slave side open itself until the main
 * process has ended. Many programs close stdin, stdout and stderr themselves
 * just before they exit (`cat`, `tr` and the rest of coreutils do). Once
 * nothing holds the slave, reading the master reports the other side gone
 * (EIO, or end of file from libuv) and node-pty closes the master at once,
 * while the process may still run; closing a master hangs the terminal up,
 * and the kernel sends SIGHUP to its session leader: the task, which would
 * then end by SIGHUP instead of with its exit code. On that hang-up libuv also
 * reads the master only once more, losing what the kernel had not handed over.
 */
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { OverthereError, type Logger, type TtySize } from '@overthere/core';
import type { IPty, IPtyForkOptions } from '@lydell/node-pty';
import { errorCode, signalName } from './process-group.js';
import { spawnFailed } from './preflight.js';
import type { LaunchPlan } from './pipe-launch.js';
import type { Launched, MainExit } from './task-process.js';
import type { Watchdog } from './spawner.js';

/**
 * Terminal masters held open by this process. node-pty opens them without
 * close-on-exec, so other children would inherit them; the pipe launcher
 * covers these numbers in its children.
 */
const openMasters = new Set<number>();

/** Pty master descriptors currently open in this process. */
export function openPtyMasters(): number[] {
  return [...openMasters];
}

/**
 * Run by bash before the task in a pty: closes every inherited descriptor but
 * 0-2 (other tasks' terminal masters, the pty's own master), then execs the
 * task. dash cannot close descriptors above 9, hence bash; without bash the
 * task starts without this step.
 */
const CLOSE_FDS_SCRIPT =
  'for f in /proc/$$/fd/*; do n=${f##*/}; case $n in *[!0-9]*|0|1|2) ;; *) eval "exec $n>&-" 2>/dev/null ;; esac; done; exec "$@"';

/**
 * Output is buffered up to this much before the terminal is paused. Generous
 * on purpose: node-pty destroys the terminal 200 ms after the process exits,
 * and whatever a paused terminal still holds then is lost.
 */
const STDOUT_HIGH_WATER_MARK = 1024 * 1024;

/** ^D: with a tty, ending stdin types the EOF character (canonical mode). */
const EOF_CHARACTER = '\x04';

/**
 * When the main process has ended, at most this much output still in the
 * kernel is read before the terminal is let go (only a descendant writing
 * without pause could have more).
 */
const FINAL_READ_LIMIT = 1024 * 1024;

/**
 * What this module uses of node-pty's UnixTerminal beyond `IPty`. Each part is
 * checked before use: without it, the runtime falls back to node-pty's own
 * teardown.
 */
interface UnixTerminalInternals {
  /** The terminal master descriptor. */
  readonly fd?: unknown;
  /** Path of the slave side (`/dev/pts/N`). */
  readonly ptsName?: unknown;
  /** The tty.ReadStream node-pty reads the master with. */
  readonly _socket?: unknown;
}

/** The parts of node-pty's master stream that the final read needs. */
interface MasterSocket {
  readonly destroyed: boolean;
  readonly readableLength: number;
  read(): unknown;
}

function isMasterSocket(value: unknown): value is MasterSocket {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<MasterSocket>).destroyed === 'boolean' &&
    typeof (value as Partial<MasterSocket>).readableLength === 'number' &&
    typeof (value as Partial<MasterSocket>).read === 'function'
  );
}

/**
 * Pty children whose end is awaited, by pid. node-pty reaps them in a thread
 * of its own and reports the exit only once the terminal has closed, which is
 * too late: the slave has to be let go when the process ends, so its SIGCHLD
 * is listened for here.
 */
const endWatchers = new Map<number, () => void>();

function onChildSignal(): void {
  for (const [pid, ended] of endWatchers) {
    if (hasEnded(pid)) {
      endWatchers.delete(pid);
      ended();
    }
  }
  if (endWatchers.size === 0) process.off('SIGCHLD', onChildSignal);
}

/** Listens for SIGCHLD; call before forking, so a child that ends at once is not missed. */
function listenForChildSignals(): void {
  if (process.listeners('SIGCHLD').includes(onChildSignal)) return;
  process.on('SIGCHLD', onChildSignal);
}

function stopListeningIfIdle(): void {
  if (endWatchers.size === 0) process.off('SIGCHLD', onChildSignal);
}

let procAvailable: boolean | undefined;

/**
 * Whether the child `pid` has ended: a zombie or already reaped (Linux, from
 * /proc). Without /proc only a reaped child counts; a zombie is then seen to
 * end by node-pty's exit report instead.
 */
function hasEnded(pid: number): boolean {
  procAvailable ??= process.platform === 'linux' && canRead('/proc/self/stat');
  if (procAvailable) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    } catch {
      return true; // reaped
    }
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return errorCode(error) === 'ESRCH';
  }
}

function canRead(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

export interface PtyLaunchOptions {
  watchdog: Watchdog;
  logger: Logger;
  size: TtySize;
}

type PtyModule = typeof import('@lydell/node-pty');
let ptyModule: Promise<PtyModule> | undefined;

/** Loaded on first use, so a runtime that never asks for a tty works without the native module. */
function loadPty(): Promise<PtyModule> {
  ptyModule ??= import('@lydell/node-pty').then(
    (module) => (module as { default?: PtyModule }).default ?? module,
  );
  return ptyModule;
}

const helpers = new Map<string, Promise<string | undefined>>();

/** The first of `candidates` that is executable, cached. */
function findHelper(name: string, candidates: readonly string[]): Promise<string | undefined> {
  let found = helpers.get(name);
  if (found === undefined) {
    found = (async () => {
      for (const candidate of candidates) {
        try {
          await access(candidate, constants.X_OK);
          return candidate;
        } catch {
          // next
        }
      }
      return undefined;
    })();
    helpers.set(name, found);
  }
  return found;
}

export async function launchPty(plan: LaunchPlan, options: PtyLaunchOptions): Promise<Launched> {
  const { watchdog, logger, size } = options;
  let pty: PtyModule;
  try {
    pty = await loadPty();
  } catch (error) {
    throw new OverthereError('UNSUPPORTED', `no pty support on this system: ${String(error)}`, {
      cause: error,
    });
  }

  let argv: string[] = [...plan.argv];
  const forkOptions: IPtyForkOptions = {
    cols: size.cols,
    rows: size.rows,
    cwd: plan.cwd,
    env: plan.env,
    // null: raw Buffers both ways, no UTF-8 decoding that would mangle binary output.
    encoding: null,
  };
  if (plan.credentials) {
    const { uid, gid } = plan.credentials;
    if (process.geteuid?.() !== 0) {
      throw spawnFailed(`cannot run as uid ${uid}: the agent is not root (EPERM)`);
    }
    // node-pty's own uid/gid switch keeps the agent's supplementary groups
    // (root's); setpriv drops them, as Node does for piped processes.
    const setpriv = await findHelper('setpriv', [
      '/usr/bin/setpriv',
      '/bin/setpriv',
      '/usr/sbin/setpriv',
      '/sbin/setpriv',
    ]);
    if (setpriv !== undefined) {
      argv = [setpriv, `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...argv];
    } else {
      logger.warn('setpriv not found: the pty task keeps the agent supplementary groups');
      forkOptions.uid = uid;
      forkOptions.gid = gid;
    }
  }
  const bash = await findHelper('bash', ['/bin/bash', '/usr/bin/bash']);
  if (bash !== undefined) argv = [bash, '-c', CLOSE_FDS_SCRIPT, 'overthere-pty', ...argv];

  const [file, ...args] = argv as [string, ...string[]];
  listenForChildSignals();
  let terminal: IPty;
  try {
    terminal = pty.spawn(file, args, forkOptions);
  } catch (error) {
    stopListeningIfIdle();
    throw spawnFailed(`forkpty for ${plan.argv[0]} failed: ${String(error)}`, error);
  }
  const pid = terminal.pid;
  watchdog.register(pid);
  const internals = terminal as unknown as UnixTerminalInternals;
  const master = internals.fd;
  if (typeof master === 'number') openMasters.add(master);

  // Our own hold on the slave: the terminal stays up (no EIO on the master,
  // so node-pty does not close it) until the main process has ended, even if
  // the process closes its descriptors first. Opened right after the fork, in
  // the same tick: node-pty cannot have seen the master fail yet, and a child
  // that already closed the slave does not matter, as reopening it clears the
  // condition. O_NOCTTY: it must not become the agent's controlling terminal;
  // Node adds O_CLOEXEC, so no child inherits it.
  let slave: number | undefined;
  if (typeof internals.ptsName === 'string') {
    try {
      slave = openSync(internals.ptsName, constants.O_RDWR | constants.O_NOCTTY);
    } catch (error) {
      logger.warn(
        { err: error },
        'could not hold the terminal open: a process that closes its output first may get SIGHUP',
      );
    }
  }

  let outputEnded = false;
  const stdout = new Readable({
    highWaterMark: STDOUT_HIGH_WATER_MARK,
    read() {
      terminal.resume();
    },
  });
  // Always empty: a terminal merges stderr into stdout. Ends with the process.
  const stderr = new Readable({ read() {} });
  const deliver = (data: string | Buffer): void => {
    if (outputEnded) return;
    if (!stdout.push(typeof data === 'string' ? Buffer.from(data, 'binary') : data))
      terminal.pause();
  };
  terminal.onData(deliver);

  /**
   * Reads what the process wrote that is still in the kernel, then lets go of
   * the slave: the master then fails with EIO once nothing else (a descendant)
   * holds the terminal, and node-pty closes it and reports the exit.
   *
   * The final read is done here rather than left to node-pty because libuv
   * stops at the first short read once the master reports a hang-up, and a
   * read of a pty master returns at most the 4 KiB of its line discipline
   * buffer: whatever the kernel still held beyond that would be lost. A
   * synchronous read of the master goes on until EAGAIN, which the kernel
   * returns only once its pending buffers are empty (node-pty makes the master
   * non-blocking, and fails the spawn when it cannot: the read cannot hang).
   */
  const letGo = (): void => {
    if (slave === undefined) return;
    const socket = internals._socket;
    if (typeof master === 'number' && isMasterSocket(socket) && !socket.destroyed) {
      // First what node-pty read but did not hand out yet (paused), in order.
      while (socket.readableLength > 0 && socket.read() !== null);
      const buffer = Buffer.allocUnsafe(64 * 1024);
      let total = 0;
      while (total < FINAL_READ_LIMIT) {
        let count: number;
        try {
          count = readSync(master, buffer, 0, buffer.length, null);
        } catch {
          break; // EAGAIN: nothing left; EIO: nothing else holds the slave
        }
        if (count === 0) break;
        deliver(Buffer.from(buffer.subarray(0, count)));
        total += count;
      }
    }
    try {
      closeSync(slave);
    } catch (error) {
      logger.warn({ err: error }, 'could not close the terminal slave');
    }
    slave = undefined;
  };
  if (slave !== undefined) endWatchers.set(pid, letGo);
  else stopListeningIfIdle();

  let exited = false;
  const exit = new Promise<MainExit>((resolve) => {
    // node-pty reports the exit once the terminal is drained, or 200 ms after
    // reaping the process when the terminal stays open (a descendant holds
    // it, or SIGCHLD could not be listened for, as in a worker thread).
    terminal.onExit(({ exitCode, signal }) => {
      exited = true;
      if (endWatchers.get(pid) === letGo) {
        endWatchers.delete(pid);
        stopListeningIfIdle();
      }
      letGo();
      if (typeof master === 'number') openMasters.delete(master);
      resolve(
        signal ? { code: null, signal: signalName(signal) } : { code: exitCode, signal: null },
      );
    });
  });

  const stdin = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      // node-pty types write() as string, but hands the value to a net.Socket, which takes Buffers.
      if (!exited) terminal.write(chunk as unknown as string);
      callback();
    },
    final(callback) {
      if (!exited) terminal.write(EOF_CHARACTER);
      callback();
    },
  });

  return {
    pid,
    tty: true,
    stdout,
    stderr,
    stdin,
    exit,
    resize(next) {
      terminal.resize(next.cols, next.rows);
    },
    drain() {
      // The terminal is closed by the time node-pty reports the exit: nothing more will come.
      outputEnded = true;
      stdout.push(null);
      stderr.push(null);
      return Promise.resolve();
    },
  };
}
