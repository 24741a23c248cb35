/**
 * Starting a process under a pseudo-terminal with @lydell/node-pty, a
 * maintained fork of Microsoft's node-pty that ships prebuilt binaries (it
 * installs without a compiler). The child is a session leader (forkpty calls
 * setsid), so its pgid is its pid, as for piped processes.
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { OverthereError, type Logger, type TtySize } from '@overthere/core';
import type { IPty, IPtyForkOptions } from '@lydell/node-pty';
import { signalName } from './process-group.js';
import { spawnFailed } from './preflight.js';
import type { LaunchPlan } from './pipe-launch.js';
import type { Launched, MainExit } from './task-process.js';
import type { Watchdog } from './watchdog.js';

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
  let terminal: IPty;
  try {
    terminal = pty.spawn(file, args, forkOptions);
  } catch (error) {
    throw spawnFailed(`forkpty for ${plan.argv[0]} failed: ${String(error)}`, error);
  }
  const pid = terminal.pid;
  watchdog.register(pid);
  const master = (terminal as unknown as { fd?: unknown }).fd;
  if (typeof master === 'number') openMasters.add(master);

  let outputEnded = false;
  const stdout = new Readable({
    highWaterMark: STDOUT_HIGH_WATER_MARK,
    read() {
      terminal.resume();
    },
  });
  // Always empty: a terminal merges stderr into stdout. Ends with the process.
  const stderr = new Readable({ read() {} });
  terminal.onData((data: string | Buffer) => {
    if (outputEnded) return;
    if (!stdout.push(typeof data === 'string' ? Buffer.from(data, 'binary') : data))
      terminal.pause();
  });

  let exited = false;
  const exit = new Promise<MainExit>((resolve) => {
    // node-pty reports the exit once the terminal is drained (or 200 ms later).
    terminal.onExit(({ exitCode, signal }) => {
      exited = true;
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
