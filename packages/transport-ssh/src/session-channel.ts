/**
 * One SSH session channel bound to one task: output to the channel (stdout to
 * the channel, stderr to its extended stream), the channel's data to the
 * task's stdin with EOF on channel EOF, window changes and signals to the
 * supervisor, and exit-status or exit-signal when the task ends.
 */
import type { Writable } from 'node:stream';
import type { ServerChannel } from 'ssh2';
import {
  OverthereError,
  isFinalState,
  toOverthereError,
  type KillPolicy,
  type Logger,
  type Supervisor,
  type TaskInfo,
  type TtySize,
  finalSnapshot,
} from '@overthere/core';
import type { SshDisconnectAction } from './types.js';

/** Stdin bytes written to the task but not yet flushed, past which the channel is paused. */
const STDIN_HIGH_WATER_BYTES = 1024 * 1024;

/** Exit status a session gets when the server could not run what it asked for. */
export const SESSION_ERROR_STATUS = 255;

/** What a bound session needs. */
export interface BoundSessionOptions {
  supervisor: Supervisor;
  channel: ServerChannel;
  taskId: string;
  /** Start reading output here (undefined: the oldest retained frame). */
  fromSeq: number | undefined;
  onDisconnect: SshDisconnectAction;
  disconnectKill: KillPolicy;
  logger: Logger;
}

/** A session running or attached to a task. */
export interface BoundSession {
  readonly taskId: string;
  /** Forward a window change to the task's TTY (ignored when it has none). */
  resize(size: TtySize): void;
  /** Forward a signal (`TERM` or `SIGTERM`). */
  signal(name: string): void;
  /** Resolves once the channel is done with (task ended or client gone). */
  readonly done: Promise<void>;
}

/** Write `data`; resolves when the stream wants more (at once when it has room). */
function write(stream: Writable, data: Buffer, abort: AbortSignal): Promise<void> | undefined {
  if (stream.destroyed || stream.writableEnded) return undefined;
  if (stream.write(data)) return undefined;
  return new Promise((resolve) => {
    const finish = (): void => {
      stream.off('drain', finish);
      stream.off('close', finish);
      abort.removeEventListener('abort', finish);
      resolve();
    };
    stream.once('drain', finish);
    stream.once('close', finish);
    abort.addEventListener('abort', finish, { once: true });
  });
}

/** Send the task's end to the client: exit-signal for a signal, else exit-status. */
export function sendExit(channel: ServerChannel, task: TaskInfo | undefined): void {
  const exit = task?.exit;
  if (exit?.signal) {
    channel.exit(exit.signal.replace(/^SIG/, ''), false, '');
  } else {
    channel.exit(exit?.code ?? SESSION_ERROR_STATUS);
  }
}

/** Write an error line to the client's stderr and end the channel with status 255. */
export function failChannel(channel: ServerChannel, error: unknown): void {
  const mapped = toOverthereError(error);
  const newline = channel.subtype === 'shell' ? '\r\n' : '\n';
  channel.stderr.write(`overthere: ${mapped.code}: ${mapped.message}${newline}`);
  channel.exit(SESSION_ERROR_STATUS);
  channel.end();
}

/** Bind `channel` to a task; the channel closes when the task ends. */
export function bindSession(options: BoundSessionOptions): BoundSession {
  const { supervisor, channel, taskId, logger } = options;
  const controller = new AbortController();
  const abort = controller.signal;
  let clientGone = false;
  const spec = supervisor.get(taskId).spec;
  const takesStdin = spec.stdin === 'pipe' || spec.tty !== undefined;

  // Requests (resize, signal) are applied in order.
  let queue: Promise<void> = Promise.resolve();
  const enqueue = (step: () => Promise<void>): void => {
    queue = queue.then(step).catch((error: unknown) => {
      logger.debug({ err: error, taskId }, 'ssh session request not applied');
    });
  };

  // Stdin: writeStdin writes synchronously, so writes keep their order without
  // waiting for each other; up to STDIN_HIGH_WATER_BYTES may be in flight, then
  // the channel is paused and the SSH window holds the client back. Packets
  // that arrive together (ssh2 parses a whole socket read at once) are written
  // as one buffer: one pipe write instead of one per 32 KiB packet.
  let stdinInFlight = 0;
  let lastStdinWrite: Promise<void> = Promise.resolve();
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const flushStdin = (): void => {
    if (batch.length === 0) return;
    const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
    const size = batchBytes;
    batch = [];
    batchBytes = 0;
    lastStdinWrite = supervisor
      .writeStdin(taskId, data)
      .catch((error: unknown) => {
        logger.debug({ err: error, taskId }, 'ssh session input not written');
      })
      .finally(() => {
        stdinInFlight -= size;
        if (stdinInFlight < STDIN_HIGH_WATER_BYTES / 2 && channel.isPaused()) channel.resume();
      });
  };
  channel.on('data', (data: Buffer) => {
    if (!takesStdin) return;
    if (batch.length === 0) queueMicrotask(flushStdin);
    batch.push(data);
    batchBytes += data.length;
    stdinInFlight += data.length;
    if (stdinInFlight >= STDIN_HIGH_WATER_BYTES) channel.pause();
  });
  channel.on('end', () => {
    // ssh2 also ends the stream when the connection drops; only the client's
    // own EOF (incoming state `eof`) means "no more input". A dropped client
    // must not type ^D into a shell that is meant to outlive it.
    const incoming = channel.incoming as { state?: string } | undefined;
    if (!takesStdin || incoming?.state !== 'eof') return;
    flushStdin();
    void lastStdinWrite
      .then(() => supervisor.closeStdin(taskId))
      .catch((error: unknown) => {
        logger.debug({ err: error, taskId }, 'ssh session EOF not applied');
      });
  });

  const done = new Promise<void>((resolve) => {
    channel.once('close', () => {
      clientGone = true;
      controller.abort();
      resolve();
    });
  });

  const onClientGone = async (): Promise<void> => {
    await done;
    if (options.onDisconnect !== 'stop') return;
    let task: TaskInfo;
    try {
      task = supervisor.get(taskId);
    } catch {
      return;
    }
    if (isFinalState(task.state)) return;
    logger.debug({ taskId }, 'ssh client went away; stopping its task');
    await supervisor.stop(taskId, options.disconnectKill).catch((error: unknown) => {
      logger.warn({ err: error, taskId }, 'could not stop the task of a closed ssh session');
    });
  };
  void onClientGone();

  const pump = async (): Promise<void> => {
    const events = supervisor.output(taskId).read({
      follow: true,
      signal: abort,
      ...(options.fromSeq === undefined ? {} : { fromSeq: options.fromSeq }),
    });
    for await (const event of events) {
      if (abort.aborted) return;
      if (event.type !== 'frame') continue;
      const target = event.stream === 'stderr' ? channel.stderr : channel;
      const pending = write(target, event.data, abort);
      if (pending) await pending;
    }
    if (abort.aborted) return;
    const task = await finalSnapshot(supervisor, taskId, abort);
    if (abort.aborted) return;
    sendExit(channel, task);
    channel.end();
  };
  pump().catch((error: unknown) => {
    if (clientGone) return;
    if (!OverthereError.hasCode(error, 'NOT_FOUND')) {
      logger.error({ err: error, taskId }, 'ssh session output failed');
    }
    failChannel(channel, error);
  });

  return {
    taskId,
    done,
    resize(size) {
      if (spec.tty === undefined) return;
      enqueue(() => supervisor.resize(taskId, size));
    },
    signal(name) {
      const signal = name.startsWith('SIG') ? name : `SIG${name}`;
      enqueue(() => supervisor.signal(taskId, signal));
    },
  };
}
