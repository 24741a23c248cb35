/**
 * Starting a process with pipes (no tty), by the native spawner
 * (native-spawn.ts) or in the Node spawner process (spawner.ts), which hands
 * the pipes back. execa was the first choice, but its per-spawn promise and
 * stream machinery cost about a fifth of spawn throughput, and we use none of
 * what it adds.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from '@overthere/core';
import { spawnFailed } from './preflight.js';
import { SpawnError, type SpawnedChild, type Spawner } from './spawner.js';
import type { Launched } from './task-process.js';

/** What to start, after the runtime resolved the spec. */
export interface LaunchPlan {
  /** Final argv (wrappers included). */
  argv: readonly [string, ...string[]];
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** Set to switch user (only when it differs from the agent's). */
  credentials: { uid: number; gid: number } | undefined;
  /** A writable stdin; otherwise stdin is /dev/null. */
  stdin: boolean;
}

export interface PipeLaunchOptions {
  spawner: Spawner;
  logger: Logger;
  /** See `LocalRuntimeOptions.drainTimeoutMs`. */
  drainTimeoutMs: number;
}

/** How long to wait for output to end after the group kill before sweeping the session. */
const SWEEP_AFTER_MS = 100;

export async function launchPipe(plan: LaunchPlan, options: PipeLaunchOptions): Promise<Launched> {
  const { spawner, logger } = options;
  const [file, ...args] = plan.argv;

  let child;
  try {
    child = await spawner.spawn({
      file,
      args,
      cwd: plan.cwd,
      env: plan.env,
      credentials: plan.credentials,
      stdin: plan.stdin,
    });
  } catch (error) {
    // Node's own wording ("spawn /x ENOENT"), as an in-process spawn would report it.
    const message =
      error instanceof SpawnError ? error.message : `spawn ${file} failed: ${messageOf(error)}`;
    throw spawnFailed(message, error);
  }
  const { pid, exit } = child;

  const output =
    child.output === undefined
      ? copiesOf(child, logger)
      : directOutput(child.stdout, child.stderr, child.output);

  const stdin = child.stdin;
  // Writing after the process closed its stdin is an EPIPE; the caller may not listen for it.
  stdin?.on('error', (error) => logger.debug({ err: error }, 'stdin error'));

  return {
    pid,
    tty: false,
    stdout: output.stdout,
    stderr: output.stderr,
    stdin,
    exit,
    resize: undefined,
    async drain(sweep) {
      if (await settlesWithin(output.done, SWEEP_AFTER_MS)) return;
      // Still open after the group kill: something outside the group holds it.
      await sweep();
      for (;;) {
        if (await settlesWithin(output.done, options.drainTimeoutMs)) return;
        // A reader that is merely slow: its data is still coming, keep waiting.
        if (output.readerBehind()) continue;
        logger.warn(
          { pid },
          'output still open after the process group was killed (a descendant left the session?); closing it',
        );
        output.cut();
        return;
      }
    },
  };
}

/** The child's stdout and stderr as handed to the supervisor. */
interface Output {
  stdout: Readable;
  stderr: Readable;
  /** Settles when both pipes are at their end. */
  done: Promise<void>;
  /** Their reader has not taken everything that arrived. */
  readerBehind(): boolean;
  /** End both now, though the pipes are still open. */
  cut(): void;
}

/** The spawner's own streams, which it can cut (the native spawner's). */
function directOutput(
  stdout: Readable,
  stderr: Readable,
  pipes: NonNullable<SpawnedChild['output']>,
): Output {
  return {
    stdout,
    stderr,
    done: pipes.closed,
    // Held back by its reader, the spawner stops reading the pipe: its end is not seen.
    readerBehind: () => stdout.readableLength > 0 || stderr.readableLength > 0,
    cut: () => pipes.cut(),
  };
}

/** Copies of sockets (the Node spawner's): a copy can be ended while its socket is still open. */
function copiesOf(child: SpawnedChild, logger: Logger): Output {
  const rawStdout = child.stdout;
  const rawStderr = child.stderr;
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  return {
    stdout,
    stderr,
    done: Promise.all([
      connect(rawStdout, stdout, logger),
      connect(rawStderr, stderr, logger),
    ]).then(() => undefined),
    readerBehind: () => stdout.writableNeedDrain || stderr.writableNeedDrain,
    cut() {
      for (const [raw, stream] of [
        [rawStdout, stdout],
        [rawStderr, stderr],
      ] as const) {
        raw.unpipe(stream);
        raw.destroy();
        if (!stream.writableEnded) stream.end();
      }
    },
  };
}

/** Pipes `raw` into `stream`; resolves when `raw` is done (ended, closed or failed), then ends `stream`. */
function connect(raw: Readable, stream: PassThrough, logger: Logger): Promise<void> {
  raw.pipe(stream);
  return new Promise((resolve) => {
    const done = () => {
      if (!stream.writableEnded) stream.end();
      resolve();
    };
    if (raw.readableEnded || raw.destroyed) {
      done();
      return;
    }
    raw.once('end', done);
    raw.once('close', done);
    raw.once('error', (error) => {
      logger.warn({ err: error }, 'output stream error');
      done();
    });
  });
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
