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

/** The addon's functions (see native/spawn.c). */
interface Binding {
  init(
    onEvent: (kind: number, a: number, b: number, c: number, d: number, e: number) => void,
  ): boolean;
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
}

/** The first argument of the addon's events. */
const SPAWNED = 0;
const FAILED = 1;
const EXITED = 2;

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

function binding(): Binding {
  return (loaded as { binding: Binding }).binding;
}

/** Pending spawns and running children keep the event loop alive, as Node's own children do. */
function updateRef(before: number): void {
  const after = spawning.size + running.size;
  if (before === 0 && after > 0) binding().ref();
  else if (before > 0 && after === 0) binding().unref();
}

function onEvent(kind: number, a: number, b: number, c: number, d: number, e: number): void {
  const before = spawning.size + running.size;
  if (kind === EXITED) {
    const settle = running.get(a);
    running.delete(a);
    settle?.(
      c !== 0 ? { code: null, signal: SIGNAL_NAMES.get(c) ?? null } : { code: b, signal: null },
    );
  } else {
    const pending = spawning.get(a);
    spawning.delete(a);
    if (pending !== undefined) {
      if (kind === SPAWNED) settleSpawned(pending, b, c, d, e);
      else if (kind === FAILED) {
        const code = getSystemErrorName(-b);
        // Node's own wording, as child_process.spawn reports it.
        pending.reject(new SpawnError(`spawn ${pending.request.file} ${code}`, code));
      }
    }
  }
  updateRef(before);
}

function settleSpawned(
  pending: { resolve: (child: SpawnedChild) => void; watch: (pid: number) => void },
  pid: number,
  stdinFd: number,
  stdoutFd: number,
  stderrFd: number,
): void {
  const exit = new Promise<MainExit>((resolve) => running.set(pid, resolve));
  // Its own session (pgid = pid): the watchdog kills the group if the agent dies.
  pending.watch(pid);
  pending.resolve({
    pid,
    stdout: new Socket({ fd: stdoutFd, readable: true, writable: false }),
    stderr: new Socket({ fd: stderrFd, readable: true, writable: false }),
    stdin: stdinFd < 0 ? undefined : new Socket({ fd: stdinFd, readable: false, writable: true }),
    exit,
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
        const before = spawning.size + running.size;
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
