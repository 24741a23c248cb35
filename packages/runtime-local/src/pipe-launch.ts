/**
 * Starting a process with pipes (no tty), with node:child_process. execa was
 * the first choice, but its per-spawn promise and stream machinery cost about
 * a fifth of spawn throughput (measured in bench/spawn-throughput.ts), and we
 * use none of what it adds: no buffering, no decoding, no shell, no rejection.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from '@overthere/core';
import { spawnFailed } from './preflight.js';
import type { Launched, MainExit } from './task-process.js';
import type { Watchdog } from './watchdog.js';

/** What to start, after the runtime resolved the spec. */
export interface LaunchPlan {
  /** Final argv (wrappers included). */
  argv: readonly [string, ...string[]];
  env: Record<string, string>;
  cwd: string;
  /** Set to switch user (only when it differs from the agent's). */
  credentials: { uid: number; gid: number } | undefined;
  /** A writable stdin; otherwise stdin is /dev/null. */
  stdin: boolean;
}

export interface PipeLaunchOptions {
  watchdog: Watchdog;
  logger: Logger;
  /** See `LocalRuntimeOptions.drainTimeoutMs`. */
  drainTimeoutMs: number;
  /** Descriptors the child would inherit by accident (pty masters), to cover with /dev/null. */
  leakedFds: readonly number[];
  /** A /dev/null descriptor for those. */
  devNull: () => number;
}

/** How long to wait for output to end after the group kill before sweeping the session. */
const SWEEP_AFTER_MS = 100;

export async function launchPipe(plan: LaunchPlan, options: PipeLaunchOptions): Promise<Launched> {
  const { watchdog, logger } = options;
  const [file, ...args] = plan.argv;

  // node-pty opens its terminal masters without close-on-exec, and Node has no
  // way to set that flag: every child would inherit the masters of the tasks
  // running in a terminal, and could read or type into them. Mapping those
  // descriptor numbers to /dev/null in the child closes them there.
  const extra: Array<'ignore' | number> = [];
  for (const fd of options.leakedFds) {
    if (fd < 3) continue;
    while (extra.length <= fd - 3) extra.push('ignore');
    extra[fd - 3] = options.devNull();
  }
  const stdio: StdioOptions = [plan.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', ...extra];

  let subprocess: ChildProcess;
  try {
    subprocess = spawn(file, args, {
      cwd: plan.cwd,
      env: plan.env,
      // Its own session, so its own process group: pgid = pid.
      detached: true,
      stdio,
      ...(plan.credentials ? { uid: plan.credentials.uid, gid: plan.credentials.gid } : {}),
    });
  } catch (error) {
    // spawn validates some arguments synchronously.
    throw spawnFailed(`spawn ${file} failed: ${messageOf(error)}`, error);
  }

  const pid = subprocess.pid;
  if (pid !== undefined) watchdog.register(pid);

  const exit = new Promise<MainExit>((resolve) => {
    subprocess.once('exit', (code, signal) => resolve({ code, signal }));
  });

  try {
    await new Promise<void>((resolve, reject) => {
      subprocess.once('spawn', () => resolve());
      subprocess.once('error', reject);
    });
  } catch (error) {
    if (pid !== undefined) watchdog.unregister(pid);
    throw spawnFailed(messageOf(error), error);
  }
  if (pid === undefined) throw spawnFailed(`spawn ${file}: no pid`);
  // Later errors (a failed kill) must not crash the agent; exit still comes.
  subprocess.on('error', (error) => logger.warn({ err: error, pid }, 'child process error'));

  const rawStdout = subprocess.stdout as Readable;
  const rawStderr = subprocess.stderr as Readable;
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const outputDone = Promise.all([
    connect(rawStdout, stdout, logger),
    connect(rawStderr, stderr, logger),
  ]);

  const stdin = subprocess.stdin ?? undefined;
  // Writing after the process closed its stdin is an EPIPE; the caller may not listen for it.
  stdin?.on('error', (error) => logger.debug({ err: error }, 'stdin error'));

  return {
    pid,
    tty: false,
    stdout,
    stderr,
    stdin,
    exit,
    resize: undefined,
    async drain(sweep) {
      if (await settlesWithin(outputDone, SWEEP_AFTER_MS)) return;
      // Still open after the group kill: something outside the group holds it.
      await sweep();
      for (;;) {
        if (await settlesWithin(outputDone, options.drainTimeoutMs)) return;
        // A reader that is merely slow: its data is still coming, keep waiting.
        if (stdout.writableNeedDrain || stderr.writableNeedDrain) continue;
        logger.warn(
          { pid },
          'output still open after the process group was killed (a descendant left the session?); closing it',
        );
        for (const [raw, stream] of [
          [rawStdout, stdout],
          [rawStderr, stderr],
        ] as const) {
          raw.unpipe(stream);
          raw.destroy();
          if (!stream.writableEnded) stream.end();
        }
        return;
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
