/**
 * File calls made synchronously while they are quick, on the thread pool for
 * a while after one was slow.
 *
 * Why: every call handed to libuv's thread pool wakes a pool thread and then
 * the event loop, and on a small or virtualised machine those wake-ups cost
 * far more than the call: an open, write or rename that the page cache
 * answers in microseconds took about a tenth of a millisecond of the event
 * loop's time through the pool. Calls that wait for the disk (fsync) always go
 * to the pool. A synchronous batch that blocks longer than
 * {@link SLOW_FILE_CALLS_MS} (a busy or remote disk) switches its user to the
 * thread pool for a cooldown, doubled each time it happens again, so a slow
 * disk cannot keep stalling the event loop.
 */
import {
  close,
  closeSync,
  fdatasync,
  ftruncate,
  ftruncateSync,
  mkdir,
  mkdirSync,
  open,
  openSync,
  rename,
  renameSync,
  rm,
  rmSync,
  writev,
  writevSync,
} from 'node:fs';
import { open as openHandle } from 'node:fs/promises';

/** Synchronous calls slower than this (in one batch) move their user to the thread pool. */
export const SLOW_FILE_CALLS_MS = 10;
const FIRST_COOLDOWN_MS = 5_000;
const MAX_COOLDOWN_MS = 5 * 60_000;

/** File calls in one flavour: synchronous, or on the thread pool. */
export interface FileCalls {
  open(path: string, flags: 'w' | 'r+', mode?: number): number | Promise<number>;
  writev(fd: number, buffers: Buffer[], position: number): number | Promise<number>;
  truncate(fd: number, length: number): void | Promise<void>;
  rename(from: string, to: string): void | Promise<void>;
  close(fd: number): void | Promise<void>;
  unlink(path: string): void | Promise<void>;
  /** mkdir -p; resolves to the first directory it made, if any. */
  mkdir(path: string, mode?: number): string | undefined | Promise<string | undefined>;
}

/** Synchronous file calls that add the time they block to `blocked`. */
function synchronousCalls(blocked: (milliseconds: number) => void): FileCalls {
  const timed =
    <A extends unknown[], R>(call: (...parameters: A) => R) =>
    (...parameters: A): R => {
      const started = performance.now();
      try {
        return call(...parameters);
      } finally {
        blocked(performance.now() - started);
      }
    };
  return {
    open: timed((path: string, flags: 'w' | 'r+', mode?: number) => openSync(path, flags, mode)),
    writev: timed((fd: number, buffers: Buffer[], position: number) =>
      writevSync(fd, buffers, position),
    ),
    truncate: timed((fd: number, length: number) => ftruncateSync(fd, length)),
    rename: timed((from: string, to: string) => renameSync(from, to)),
    close: timed((fd: number) => closeSync(fd)),
    unlink: timed((path: string) => rmSync(path, { force: true })),
    mkdir: timed((path: string, mode?: number) => mkdirSync(path, { recursive: true, mode })),
  };
}

/** The same calls on libuv's thread pool. */
export const THREAD_POOL_CALLS: FileCalls = {
  open: (path, flags, mode) => callback<number>((done) => open(path, flags, mode, done)),
  writev: (fd, buffers, position) =>
    callback<number>((done) => writev(fd, buffers, position, done)),
  truncate: (fd, length) => callback<void>((done) => ftruncate(fd, length, done)),
  rename: (from, to) => callback<void>((done) => rename(from, to, done)),
  close: (fd) => callback<void>((done) => close(fd, done)),
  unlink: (path) => callback<void>((done) => rm(path, { force: true }, done)),
  mkdir: (path, mode) =>
    callback<string | undefined>((done) => mkdir(path, { recursive: true, mode }, done)),
};

/** Write all of `buffers` at `position`, carrying on after a short write. */
export async function writeAll(
  calls: FileCalls,
  fd: number,
  buffers: Buffer[],
  position: number,
): Promise<void> {
  let remaining = buffers;
  let at = position;
  for (;;) {
    const written = await calls.writev(fd, remaining, at);
    at += written;
    let skip = written;
    let index = 0;
    while (index < remaining.length && skip >= (remaining[index]?.length ?? 0)) {
      skip -= remaining[index]?.length ?? 0;
      index += 1;
    }
    if (index >= remaining.length) return;
    if (written === 0) throw new Error('a file write made no progress');
    remaining = remaining.slice(index);
    const first = remaining[0];
    if (first !== undefined && skip > 0) remaining[0] = first.subarray(skip);
  }
}

/** fsync a file or a directory by path (a directory: so a rename in it is durable). */
export async function syncPath(path: string): Promise<void> {
  const handle = await openHandle(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fdatasync on the thread pool (it waits for the disk). */
export function datasync(fd: number): Promise<void> {
  return callback<void>((done) => fdatasync(fd, done));
}

function callback<T>(
  start: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((error, value) => (error === null ? resolve(value as T) : reject(error)));
  });
}

/**
 * Picks the flavour for each batch of calls of one user (an output log, a
 * task store): synchronous while they are quick, unless `adaptive` is false.
 */
export class FileCallMode {
  private threadPoolUntil = 0;
  private cooldownMs = FIRST_COOLDOWN_MS;
  private blockedMs = 0;
  private readonly synchronous = synchronousCalls((milliseconds) => {
    this.blockedMs += milliseconds;
  });

  constructor(private readonly adaptive = true) {}

  /** The calls for the next batch; call `end()` when the batch is done. */
  begin(): { calls: FileCalls; end: () => void } {
    if (!this.adaptive || performance.now() < this.threadPoolUntil) {
      return { calls: THREAD_POOL_CALLS, end: () => undefined };
    }
    const blockedBefore = this.blockedMs;
    return {
      calls: this.synchronous,
      end: () => {
        if (this.blockedMs - blockedBefore > SLOW_FILE_CALLS_MS) {
          this.threadPoolUntil = performance.now() + this.cooldownMs;
          this.cooldownMs = Math.min(this.cooldownMs * 2, MAX_COOLDOWN_MS);
        } else {
          this.cooldownMs = FIRST_COOLDOWN_MS;
        }
      },
    };
  }
}
