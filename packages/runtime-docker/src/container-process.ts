/**
 * A task's container as a core `Process`: output pumped from an attach (or,
 * after re-adoption, a logs) stream, stdin through the hijacked attach
 * connection, signals with `docker kill`, and the exit read from the daemon.
 */
import { Writable, type Duplex, type Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import {
  OverthereError,
  parseSignal,
  type ExitStatus,
  type Logger,
  type Process,
  type ProcessHandle,
  type SignalName,
} from '@overthere/core';
import type Docker from 'dockerode';
import { engineError, engineStatus } from './docker-errors.js';
import { pumpOutput, type StreamCounts } from './output-pump.js';
import { checkTtySize, exitStatusOf } from './spec-options.js';

/** How often, and how far apart, an unexplained SIGKILL exit is re-inspected for an OOM kill. */
const OOM_RECHECKS = 5;
const OOM_RECHECK_MS = 100;

/** A Process the runtime can also kill and detach from. */
export interface ManagedProcess extends Process {
  /** SIGKILL the container (dispose). */
  kill(): Promise<void>;
  /** Stop reading without ending anything (agent detaching); returns the delivered counts. */
  detach(): StreamCounts;
  /** Delivered byte counts so far. */
  readonly counts: StreamCounts;
  /** Its sandbox is being destroyed: unless it has ended already, it ends as SIGKILLed. */
  markKilled?(): void;
}

/** What {@link createContainerProcess} needs. */
export interface ContainerProcessOptions {
  container: Docker.Container;
  /** Output source: an attach socket (before start) or a logs stream (adoption). */
  source: Readable;
  /** The attach socket when stdin is piped. */
  stdinSocket: Duplex | undefined;
  tty: boolean;
  pid: number | undefined;
  handle: ProcessHandle;
  skip?: StreamCounts;
  daemon: string;
  logger: Logger;
  onProgress: () => void;
  /** After the exit is known: remove the container, release its quota. */
  onExit: (status: ExitStatus) => void;
}

/**
 * A stdin that forwards to the hijacked socket; ending it half-closes the
 * socket (EOF). Input for a process that has gone is dropped, as with a pipe
 * whose reader exited, rather than failing the writer.
 */
export function socketStdin(socket: Duplex): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (socket.destroyed || socket.writableEnded) return callback();
      socket.write(chunk, () => callback());
    },
    final(callback) {
      if (!socket.destroyed && !socket.writableEnded) socket.end();
      callback();
    },
  });
}

export function createContainerProcess(options: ContainerProcessOptions): ManagedProcess {
  const { container, logger } = options;
  const sent = new Set<SignalName>();
  let finished = false;
  let detached = false;
  const pump = pumpOutput(options.source, {
    tty: options.tty,
    ...(options.skip === undefined ? {} : { skip: options.skip }),
    onProgress: options.onProgress,
  });

  const status: Promise<ExitStatus> = (async () => {
    let code: number | undefined;
    let oomKilled = false;
    let removed = false;
    try {
      const result = (await container.wait()) as { StatusCode?: number };
      code = result.StatusCode;
    } catch (error) {
      logger.debug({ err: error }, 'waiting for the container failed');
      removed = engineStatus(error) === 404;
    }
    await pump.done;
    if (detached) return new Promise<never>(() => undefined);
    // Only a SIGKILL (137) can be the OOM killer, and only inspect tells: skip the
    // round trip for every other exit.
    if (code === undefined || code === 137) {
      // dockerd learns of the OOM kill from a separate event that can come just
      // after the exit: a SIGKILL nobody sent is asked about a few more times.
      for (let attempt = 0; attempt <= OOM_RECHECKS; attempt += 1) {
        if (attempt > 0) await delay(OOM_RECHECK_MS);
        try {
          const info = await container.inspect();
          oomKilled = info.State.OOMKilled;
          if (!info.State.Running && typeof info.State.ExitCode === 'number') {
            code = info.State.ExitCode;
          }
        } catch (error) {
          logger.debug({ err: error }, 'inspecting the ended container failed');
          removed ||= engineStatus(error) === 404;
          break;
        }
        if (oomKilled || code !== 137 || sent.has('SIGKILL')) break;
      }
    }
    finished = true;
    let exit: ExitStatus;
    if (code !== undefined) {
      exit = exitStatusOf(code, oomKilled, sent);
    } else if (removed) {
      // Removed under us (by someone else): removal kills.
      exit = { code: null, signal: 'SIGKILL', reason: 'signalled' };
    } else {
      // The daemon stopped answering: its fate is unknown.
      exit = { code: null, signal: null, reason: 'lost' };
    }
    options.onExit(exit);
    return exit;
  })();

  const kill = async (name: SignalName) => {
    sent.add(name);
    try {
      await container.kill({ signal: name });
    } catch (error) {
      const code = engineStatus(error);
      // 409: not running any more; 404: gone. Either way, it has ended.
      if (code === 409 || code === 404) return;
      throw engineError(error, `sending ${name} to the container`, 'INTERNAL', options.daemon);
    }
  };

  return {
    pid: options.pid,
    handle: options.handle,
    stdout: pump.stdout,
    stderr: pump.stderr,
    stdin: options.stdinSocket === undefined ? undefined : socketStdin(options.stdinSocket),
    get counts() {
      return { ...pump.counts };
    },
    async signal(signal) {
      const name = parseSignal(signal);
      if (finished) return;
      // The container's init (tini) forwards it to the task's process group.
      await kill(name);
    },
    async resize(size) {
      if (!options.tty) {
        throw new OverthereError('UNSUPPORTED', 'resize needs a task started with a tty');
      }
      checkTtySize(size, 'size');
      if (finished) return;
      try {
        await container.resize({ h: size.rows, w: size.cols });
      } catch (error) {
        const code = engineStatus(error);
        if (finished || code === 409 || code === 404) return;
        throw engineError(error, 'resizing the tty', 'INTERNAL', options.daemon);
      }
    },
    wait: () => status,
    async kill() {
      if (!finished) await kill('SIGKILL');
    },
    detach() {
      detached = true;
      pump.detach();
      options.stdinSocket?.destroy();
      return { ...pump.counts };
    },
  };
}
