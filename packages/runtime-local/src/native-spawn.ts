/**
 * The native spawner: piped tasks started by posix_spawn from the agent's own
 * process (native/spawn.c, a Node-API addon built at install), their exits
 * seen through pidfds on one watcher thread.
 *
 * Why: a Node fork, even in the small spawner process, costs about a
 * millisecond of CPU (page tables, copy-on-write faults, IPC of three
 * descriptors); posix_spawn's vfork-style clone copies nothing, on a thread
 * of the addon. `pnpm bench spawn` went from about 400-650 to 620-1170
 * starts of /bin/true per second (one and sixteen at a time).
 *
 * The Node spawner stays the watchdog (it reads the groups to kill from a
 * table in shared memory) and starts what the addon cannot: tasks that switch
 * user. Without the addon (no compiler at install, glibc < 2.34, Linux < 5.3)
 * it starts everything, as before.
 */
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import type { MainExit } from './task-process.js';
import { DEFAULT_PATH } from './preflight.js';
import {
  SpawnError,
  type SpawnRequest,
  type SpawnedChild,
  type Spawner,
  type WatchTable,
} from './spawner.js';

/** What the addon calls with each event: its kind, six numbers, and output bytes (see native/spawn.c). */
type EventListener = (
  kind: number,
  a: number,
  b: number,
  c: number,
  d: number,
  e: number,
  f: number,
  data: Buffer | undefined,
) => void;

/** The addon's functions (see native/spawn.c). */
interface Binding {
  init(onEvent: EventListener): boolean;
  spawn(
    id: number,
    file: string,
    argv: readonly string[],
    env: readonly string[],
    cwd: string,
    withStdin: boolean,
    path: string,
    table: number,
  ): void;
  ref(): void;
  unref(): void;
  openWatchTable(): [slot: number, fd: number, bytes: number] | null;
  watch(slot: number, id: number, on: boolean): void;
  closeWatchTable(slot: number): void;
  ack(fd: number, generation: number, bytes: number): void;
  closeOutput(fd: number, generation: number): void;
}

/** The first argument of the addon's events. */
const SPAWNED = 0;
const FAILED = 1;
const EXITED = 2;
const OUTPUT = 3;
const OUTPUT_END = 4;

const ADDON = new URL('../native/build/overthere_spawn.node', import.meta.url);

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]),
);

/** The addon, once loaded: one per process, shared by every runtime in it. */
let loaded: { binding: Binding } | { reason: string } | undefined;
let nextSpawnId = 1;
/** Spawns queued in the addon: id → what settles them. */
const spawning = new Map<
  number,
  {
    request: SpawnRequest;
    resolve: (child: SpawnedChild) => void;
    reject: (error: Error) => void;
    /** The child's group is watched (the addon marked it in the table, or it must be registered). */
    watch: (pid: number) => void;
  }
>();
/** Running native children: pid → what settles their exit. */
const running = new Map<number, (exit: MainExit) => void>();
/** Taken bytes are acked to the addon once this many add up (it reads at most 512 KiB ahead). */
const ACK_BYTES = 256 * 1024;
/** Output streams the addon reads: fd → stream (the generation tells a reused fd apart). */
const outputs = new Map<number, NativeOutput>();

/**
 * A child's stdout or stderr, read by the addon's watcher thread. The addon
 * runs at most 512 KiB (and a chunk) ahead of what this stream's reader has taken.
 * Each chunk is handed on as it came (object mode): a byte-mode stream joins
 * whatever is buffered into a new buffer on every read, a copy of each byte.
 */
class NativeOutput extends Readable {
  /** Bytes pushed that the addon has not been told were taken. */
  private unacked = 0;
  private pipeClosed!: () => void;
  /** Settles when the pipe reached its end, or was cut (its data may still be unread). */
  readonly pipeDone = new Promise<void>((resolve) => {
    this.pipeClosed = resolve;
  });

  constructor(
    private readonly fd: number,
    readonly generation: number,
  ) {
    super({ objectMode: true, highWaterMark: 1 });
  }

  /** Bytes from the addon; acked once the reader wants more (`_read`). */
  received(data: Buffer): void {
    this.unacked += data.length;
    this.push(data);
  }

  /** The addon reached the end (errno 0) or failed to read. */
  ended(errno: number): void {
    this.forget();
    if (errno === 0) this.push(null);
    else this.destroy(new Error(`reading output failed: ${getSystemErrorName(-errno)}`));
  }

  /** Stop reading now and end the stream (a descendant outside the group holds the pipe open). */
  cut(): void {
    if (this.release()) this.push(null);
  }

  override _read(): void {
    // Acked in batches (an ack may wake the watcher thread); the addon reads
    // on until 512 KiB is unacked, so this never holds it back for good.
    if (this.unacked < ACK_BYTES || outputs.get(this.fd) !== this) return;
    binding().ack(this.fd, this.generation, this.unacked);
    this.unacked = 0;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.release();
    callback(error);
  }

  /** Close the pipe if the addon still reads it; true if it did. */
  private release(): boolean {
    if (outputs.get(this.fd) !== this) return false;
    const before = liveCount();
    this.forget();
    binding().closeOutput(this.fd, this.generation);
    updateRef(before);
    return true;
  }

  /** The addon no longer reads the pipe for this stream. */
  private forget(): void {
    outputs.delete(this.fd);
    this.pipeClosed();
  }
}

function liveCount(): number {
  return spawning.size + running.size + outputs.size;
}

function binding(): Binding {
  return (loaded as { binding: Binding }).binding;
}

/** Pending spawns, running children and open output keep the event loop alive, as Node's own children do. */
function updateRef(before: number): void {
  const after = liveCount();
  if (before === 0 && after > 0) binding().ref();
  else if (before > 0 && after === 0) binding().unref();
}

/** The stream read from `fd` as `generation`; undefined once it was cut (its fd may be another's now). */
function outputOf(fd: number, generation: number): NativeOutput | undefined {
  const output = outputs.get(fd);
  return output?.generation === generation ? output : undefined;
}

const onEvent: EventListener = (kind, a, b, c, d, e, f, data) => {
  if (kind === OUTPUT) {
    if (data !== undefined) outputOf(a, b)?.received(data);
    return;
  }
  const before = liveCount();
  if (kind === OUTPUT_END) {
    outputOf(a, b)?.ended(c);
  } else if (kind === EXITED) {
    const settle = running.get(a);
    running.delete(a);
    // The addon SIGKILLed the group before it reaped the leader.
    settle?.(
      c !== 0
        ? { code: null, signal: SIGNAL_NAMES.get(c) ?? null, groupKilled: true }
        : { code: b, signal: null, groupKilled: true },
    );
  } else {
    const pending = spawning.get(a);
    spawning.delete(a);
    if (pending !== undefined) {
      if (kind === SPAWNED) settleSpawned(pending, b, c, d, e, f);
      else if (kind === FAILED) {
        const code = getSystemErrorName(-b);
        // Node's own wording, as child_process.spawn reports it.
        pending.reject(new SpawnError(`spawn ${pending.request.file} ${code}`, code));
      }
    }
  }
  updateRef(before);
};

function settleSpawned(
  pending: { resolve: (child: SpawnedChild) => void; watch: (pid: number) => void },
  pid: number,
  stdinFd: number,
  stdoutFd: number,
  stderrFd: number,
  generation: number,
): void {
  const exit = new Promise<MainExit>((resolve) => running.set(pid, resolve));
  // Its own session (pgid = pid): the watchdog kills the group if the agent dies.
  pending.watch(pid);
  const stdin =
    stdinFd < 0 ? undefined : new Socket({ fd: stdinFd, readable: false, writable: true });
  if (generation < 0) {
    // The addon could not watch the pipes: Node reads them.
    pending.resolve({
      pid,
      stdout: new Socket({ fd: stdoutFd, readable: true, writable: false }),
      stderr: new Socket({ fd: stderrFd, readable: true, writable: false }),
      stdin,
      exit,
    });
    return;
  }
  const stdout = new NativeOutput(stdoutFd, generation);
  const stderr = new NativeOutput(stderrFd, generation);
  outputs.set(stdoutFd, stdout);
  outputs.set(stderrFd, stderr);
  pending.resolve({
    pid,
    stdout,
    stderr,
    stdin,
    exit,
    output: {
      closed: Promise.all([stdout.pipeDone, stderr.pipeDone]).then(() => undefined),
      cut() {
        stdout.cut();
        stderr.cut();
      },
    },
  });
}

function load(): { binding: Binding } | { reason: string } {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') return (loaded = { reason: 'not Linux' });
  try {
    const binding = createRequire(import.meta.url)(fileURLToPath(ADDON)) as Binding;
    loaded = binding.init(onEvent)
      ? { binding }
      : { reason: 'this kernel has no pidfd_open (Linux < 5.3)' };
  } catch (error) {
    loaded = { reason: `the addon did not load: ${(error as Error).message}` };
  }
  return loaded;
}

/**
 * Whether piped tasks can be started natively here, and if not, why (the
 * addon was not built at install, or the kernel is too old).
 */
export function nativeSpawnSupport(): { available: true } | { available: false; reason: string } {
  const state = load();
  return 'binding' in state ? { available: true } : { available: false, reason: state.reason };
}

/** Environments as the addon takes them, cached per frozen environment. */
const envStrings = new WeakMap<object, string[]>();

function envArray(env: Readonly<Record<string, string>>): string[] {
  const cached = envStrings.get(env);
  if (cached !== undefined) return cached;
  const strings = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  if (Object.isFrozen(env)) envStrings.set(env, strings);
  return strings;
}

/**
 * A Spawner that starts what it can natively and hands the rest to the Node
 * spawner `makeFallback` makes. That one is the watchdog: groups to watch go
 * into a table in shared memory it reads when the agent dies (no message per
 * task; a natively spawned child is marked by the addon the moment it
 * exists). Undefined when the addon is not available.
 */
export function createNativeSpawner(
  makeFallback: (watchTable: WatchTable | undefined) => Spawner,
): Spawner | undefined {
  const state = load();
  if (!('binding' in state)) return undefined;
  const { binding } = state;
  /** Groups set in the table (or, without one, registered with the fallback). */
  const watched = new Set<number>();
  const opened = binding.openWatchTable();
  const slot = opened?.[0] ?? -1;
  const fallback = makeFallback(
    opened === null
      ? undefined
      : { fd: opened[1], bytes: opened[2], hasWatched: () => watched.size > 0 },
  );
  let closed = false;
  /** Spawns of this spawner still queued in the addon (its table must outlive them). */
  const inFlight = new Set<Promise<SpawnedChild>>();

  const watch = (id: number): void => {
    watched.add(id);
    if (slot < 0) fallback.register(id);
    else {
      binding.watch(slot, id, true);
      fallback.ensureRunning();
    }
  };

  return {
    spawn(request) {
      if (closed) return Promise.reject(new SpawnError('the spawner is closed', undefined));
      // posix_spawn cannot switch user: the Node spawner does it.
      if (request.credentials !== undefined) return fallback.spawn(request);
      const id = nextSpawnId++;
      const started = new Promise<SpawnedChild>((resolve, reject) => {
        const before = liveCount();
        binding.spawn(
          id,
          request.file,
          [request.file, ...request.args],
          envArray(request.env),
          request.cwd,
          request.stdin,
          request.env.PATH ?? DEFAULT_PATH,
          slot,
        );
        spawning.set(id, { request, resolve, reject, watch });
        updateRef(before);
      });
      inFlight.add(started);
      const settled = () => inFlight.delete(started);
      started.then(settled, settled);
      return started;
    },
    ensureRunning: () => fallback.ensureRunning(),
    register(id) {
      if (!closed && id > 1) watch(id);
    },
    unregister(id) {
      if (watched.delete(id) && slot >= 0) binding.watch(slot, id, false);
      else fallback.unregister(id);
    },
    get pid() {
      return fallback.pid;
    },
    async close() {
      if (closed) return fallback.close();
      closed = true;
      // The spawn thread marks children in the table: it goes after the last spawn.
      await Promise.allSettled(inFlight);
      await fallback.close();
      if (slot >= 0) binding.closeWatchTable(slot);
    },
  };
}
