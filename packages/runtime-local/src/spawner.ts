/**
 * The spawner: a small Node process that forks the runtime's piped tasks and
 * hands their stdio descriptors back over its IPC channel, so the agent reads
 * and writes them directly.
 *
 * Why a separate process: Node forks on the main thread and blocks there
 * until the child has exec'd, and the cost of a fork grows with the parent's
 * memory. A busy agent spent three quarters of its CPU inside
 * `child_process.spawn`; the spawner, small and on the other core, does it
 * instead, and the agent stays free for its tasks' output.
 *
 * It is also the watchdog: no task outlives the agent, even an agent killed
 * with SIGKILL. Node cannot ask the kernel for a parent-death signal, but the
 * spawner sees its channel close, and then kills every process group it
 * watches (its own children, and pty tasks registered with `register`) and
 * every process left in one of those sessions. It ignores SIGINT, SIGTERM and
 * SIGHUP and runs in a session of its own, so a terminal's ^C reaches the
 * agent, not it.
 *
 * Should the spawner itself be killed, the tasks it started are killed too
 * (nobody could observe their exit any more) and end as `lost`; the next
 * spawn starts a new spawner.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '@overthere/core';
import type { MainExit } from './task-process.js';
import { SPAWNER_SCRIPT } from './spawner-script.js';

/** What to start. */
export interface SpawnRequest {
  file: string;
  args: readonly string[];
  cwd: string;
  /** Frozen environments are sent to the spawner once and then referred to. */
  env: Readonly<Record<string, string>>;
  credentials: { uid: number; gid: number } | undefined;
  /** A writable stdin; otherwise stdin is /dev/null. */
  stdin: boolean;
}

/** A started child: its descriptors, owned by the agent now. */
export interface SpawnedChild {
  pid: number;
  stdout: Readable;
  stderr: Readable;
  stdin: Writable | undefined;
  /** Resolves when the main process has exited (never rejects). */
  exit: Promise<MainExit>;
  /**
   * Set when the spawner reads stdout and stderr itself (the native one):
   * `closed` settles once both pipes reached their end (their data may still
   * be unread); `cut()` stops reading and ends both now, for pipes that
   * something outside the group holds open. Without it, stdout and stderr
   * are sockets, and the launcher hands out copies it can end.
   */
  output?: { closed: Promise<void>; cut(): void };
}

/** A failed spawn: the OS error code (ENOENT, EACCES…) and message. */
export class SpawnError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'SpawnError';
  }
}

/** Keeps process groups from outliving the agent. */
export interface Watchdog {
  /** Make sure the spawner process runs (it watches the shared table from its start). */
  ensureRunning(): void;
  /** Watch the session/process group `id` (a process not started by `spawn`). */
  register(id: number): void;
  /** Stop watching `id` (its processes are gone). */
  unregister(id: number): void;
  /** The spawner's pid while it runs. */
  readonly pid: number | undefined;
  /** Close the channel (the spawner then kills what is still watched) and wait for it to exit. */
  close(): Promise<void>;
}

/** One spawner process per runtime. */
export interface Spawner extends Watchdog {
  /** Start a process in a new session; rejects with a SpawnError. */
  spawn(request: SpawnRequest): Promise<SpawnedChild>;
}

export interface SpawnerOptions {
  logger: Logger;
  /** A spawner that dies sooner than this after its start is not replaced at once. Default 1000. */
  restartAfterMs?: number;
  /** Descriptors the spawner would inherit by accident (pty masters); it gets /dev/null there. */
  leakedFds?: () => readonly number[];
  /** A /dev/null descriptor for those. */
  devNull?: () => number;
  /** A shared table of more groups to watch (native spawn's). */
  watchTable?: WatchTable;
}

/**
 * A table of process groups to watch in shared memory (a memfd, one bit per
 * pid), read by the spawner when the agent dies.
 */
export interface WatchTable {
  fd: number;
  bytes: number;
  /** Whether any bit is set: then a killed spawner is replaced at once. */
  hasWatched: () => boolean;
}

/**
 * A small young generation, no V8 worker threads, no optimizing compiler (its
 * hot path is the fork, not JavaScript): the spawner's heap holds
 * little more than one ChildProcess per task, and every MiB of its RSS is
 * footprint the agent adds per machine.
 */
const SPAWNER_NODE_FLAGS = ['--max-semi-space-size=1', '--single-threaded', '--lite-mode'];

/** How long `close` waits for the spawner to exit. */
const CLOSE_TIMEOUT_MS = 2_000;

type Message =
  | { t: 'stdout'; id: number; pid: number }
  | { t: 'stderr' | 'stdin'; id: number }
  | { t: 'failed'; id: number; code?: string; message: string }
  | { t: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

interface Pending {
  request: SpawnRequest;
  pid?: number;
  stdout?: Socket;
  stderr?: Socket;
  stdin?: Socket;
  resolve: (child: SpawnedChild) => void;
  reject: (error: Error) => void;
  settleExit: (exit: MainExit) => void;
  exit: Promise<MainExit>;
  started: boolean;
}

/** One running spawner process and what it was told. */
interface Connection {
  child: ChildProcess;
  startedAt: number;
  exited: Promise<void>;
  /** Frozen environments already sent, by identity. */
  envRefs: WeakMap<object, number>;
  nextEnvRef: number;
}

export function createSpawner(options: SpawnerOptions): Spawner {
  const { logger } = options;
  const restartAfterMs = options.restartAfterMs ?? 1_000;
  const registered = new Set<number>();
  /** Spawns in flight and children not yet exited, by request id. */
  const children = new Map<number, Pending>();
  let connection: Connection | undefined;
  let nextId = 1;
  let closed = false;

  function start(): Connection {
    // Descriptors a pty left open without close-on-exec are covered with /dev/null.
    const stdio: StdioOptions = ['ignore', 'ignore', 'ignore', 'ipc'];
    for (const fd of options.leakedFds?.() ?? []) {
      if (fd <= 3 || options.devNull === undefined) continue;
      while (stdio.length <= fd) stdio.push('ignore');
      stdio[fd] = options.devNull();
    }
    // Nothing of the agent's environment: no NODE_OPTIONS loaders, no inspector.
    const env: Record<string, string> =
      process.env.PATH === undefined ? {} : { PATH: process.env.PATH };
    if (options.watchTable !== undefined) {
      env.OVERTHERE_WATCH_TABLE = `${stdio.length}:${options.watchTable.bytes}`;
      stdio.push(options.watchTable.fd);
    }
    const child = spawn(process.execPath, [...SPAWNER_NODE_FLAGS, '-e', SPAWNER_SCRIPT], {
      detached: true,
      stdio,
      env,
      serialization: 'json',
    });
    const startedAt = Date.now();
    const current: Connection = {
      child,
      startedAt,
      exited: Promise.resolve(),
      envRefs: new WeakMap(),
      nextEnvRef: 1,
    };
    current.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        if (connection === current) connection = undefined;
        if (!closed)
          logger.warn({ code, signal }, 'spawner exited unexpectedly; its tasks are lost');
        orphan();
        // Someone killed it: replace it now, unless it dies at once (no respawn loop).
        const watching = registered.size > 0 || options.watchTable?.hasWatched() === true;
        if (!closed && watching && Date.now() - startedAt >= restartAfterMs) {
          ensureStarted();
        }
        resolve();
      });
    });
    child.on('error', (error) => logger.error({ err: error }, 'spawner failed'));
    child.on('message', (message: Message, handle: unknown) => receive(message, handle));
    // Only a spawner with work keeps the agent alive (see updateRef).
    child.unref();
    child.channel?.unref();
    logger.debug({ pid: child.pid }, 'spawner started');
    if (registered.size > 0) child.send({ t: '+', ids: [...registered] });
    return current;
  }

  function ensureStarted(): Connection {
    connection ??= start();
    return connection;
  }

  /** The channel keeps the event loop alive exactly while a child is pending or running. */
  function updateRef(): void {
    const channel = connection?.child.channel;
    if (channel === undefined || channel === null) return;
    if (children.size > 0) channel.ref();
    else channel.unref();
  }

  /** The spawner died: its children can no longer be watched; kill them and report them lost. */
  function orphan(): void {
    for (const [id, pending] of children) {
      children.delete(id);
      if (pending.pid !== undefined) killGroup(pending.pid);
      if (!pending.started) pending.reject(new SpawnError('the spawner process died', 'EPIPE'));
      pending.settleExit({ code: null, signal: null });
    }
  }

  function receive(message: Message, handle: unknown): void {
    const pending = children.get(message.id);
    if (pending === undefined) return;
    if (message.t === 'failed') {
      children.delete(message.id);
      updateRef();
      pending.reject(new SpawnError(message.message, message.code));
      return;
    }
    if (message.t === 'exit') {
      children.delete(message.id);
      updateRef();
      pending.settleExit({ code: message.code, signal: message.signal });
      return;
    }
    if (message.t === 'stdout') pending.pid = message.pid;
    const socket = handle instanceof Socket ? handle : undefined;
    if (socket === undefined) {
      // Cannot happen with a sound spawner; the task could not be read, so it must not run.
      if (pending.pid !== undefined) killGroup(pending.pid);
      if (!pending.started) pending.reject(new SpawnError(`no ${message.t} descriptor`, 'EBADF'));
      return;
    }
    pending[message.t] = socket;
    const { pid, stdout, stderr, stdin } = pending;
    if (pending.started || pid === undefined || stdout === undefined || stderr === undefined) {
      return;
    }
    if (pending.request.stdin && stdin === undefined) return;
    pending.started = true;
    pending.resolve({ pid, stdout, stderr, stdin, exit: pending.exit });
  }

  function send(message: object): void {
    const current = ensureStarted();
    current.child.send(message, (error) => {
      if (error) logger.warn({ err: error }, 'could not reach the spawner');
    });
  }

  // Unregistrations of one burst (many tasks ending in the same tick) go out as one message.
  let unregistering: number[] = [];
  function flushUnregister(): void {
    const ids = unregistering;
    unregistering = [];
    if (connection !== undefined && connection.child.connected) send({ t: '-', ids });
  }

  return {
    get pid() {
      return connection?.child.pid;
    },

    spawn(request) {
      if (closed) return Promise.reject(new SpawnError('the spawner is closed', undefined));
      const current = ensureStarted();
      const id = nextId++;
      let settleExit!: (exit: MainExit) => void;
      const exit = new Promise<MainExit>((resolve) => {
        settleExit = resolve;
      });
      const started = new Promise<SpawnedChild>((resolve, reject) => {
        children.set(id, { request, resolve, reject, settleExit, exit, started: false });
      });
      updateRef();
      const message: Record<string, unknown> = {
        t: 'spawn',
        id,
        file: request.file,
        args: request.args,
        cwd: request.cwd,
        stdin: request.stdin,
      };
      if (request.credentials) {
        message.uid = request.credentials.uid;
        message.gid = request.credentials.gid;
      }
      if (Object.isFrozen(request.env)) {
        let ref = current.envRefs.get(request.env);
        if (ref === undefined) {
          ref = current.nextEnvRef++;
          current.envRefs.set(request.env, ref);
          send({ t: 'env', ref, env: request.env });
        }
        message.envRef = ref;
      } else {
        message.env = request.env;
      }
      send(message);
      return started;
    },

    ensureRunning() {
      if (!closed) ensureStarted();
    },

    register(id) {
      if (closed || id <= 1) return;
      registered.add(id);
      send({ t: '+', ids: [id] });
    },

    unregister(id) {
      // Spawned children are watched by the spawner without registration.
      registered.delete(id);
      if (unregistering.length === 0) queueMicrotask(flushUnregister);
      unregistering.push(id);
    },

    async close() {
      if (closed) return connection?.exited;
      closed = true;
      const current = connection;
      if (current === undefined) return;
      flushUnregister();
      if (current.child.connected) current.child.disconnect();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        current.exited,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // gone already
  }
}
