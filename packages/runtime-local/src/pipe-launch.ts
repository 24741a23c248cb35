/** Starting a process with pipes (no tty), through execa. */
import { PassThrough, type Readable } from 'node:stream';
import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
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
  // execa's types only list descriptors up to 9 as values; at run time any number goes to spawn.
  const stdio = [
    plan.stdin ? 'pipe' : 'ignore',
    'pipe',
    'pipe',
    ...extra,
  ] as unknown as ExecaOptions['stdio'];

  const execaOptions: ExecaOptions = {
    cwd: plan.cwd,
    env: plan.env,
    extendEnv: false,
    // Its own session, so its own process group: pgid = pid.
    detached: true,
    stdio,
    // Raw Buffers as they come: no collecting, decoding, line splitting or newline stripping.
    buffer: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    // A non-zero exit is data; spawn errors are read from the events below.
    reject: false,
    // The watchdog does this job, and also when the agent is SIGKILLed.
    cleanup: false,
    ...(plan.credentials ? { uid: plan.credentials.uid, gid: plan.credentials.gid } : {}),
  };
  let subprocess: ResultPromise<ExecaOptions>;
  try {
    subprocess = execa(file, args, execaOptions);
  } catch (error) {
    // execa validates some arguments synchronously.
    throw spawnFailed(`spawn ${file} failed: ${messageOf(error)}`, error);
  }
  // With reject: false this does not reject, but never leave a rejection unhandled.
  const result: Promise<unknown> = subprocess.then(
    (value) => value,
    (error: unknown) => error,
  );

  const pid = subprocess.pid;
  if (pid !== undefined) watchdog.register(pid);

  const exit = new Promise<MainExit>((resolve) => {
    subprocess.once('exit', (code, signal) => resolve({ code, signal }));
  });

  try {
    await new Promise<void>((resolve, reject) => {
      subprocess.once('spawn', () => resolve());
      subprocess.once('error', reject);
      // An early failure (execa could not even call spawn) emits neither event.
      void result.then((value) => reject(causeOf(value)));
    });
  } catch (error) {
    if (pid !== undefined) watchdog.unregister(pid);
    throw spawnFailed(messageOf(error), error);
  }
  if (pid === undefined) throw spawnFailed(`spawn ${file}: no pid`);

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

function causeOf(value: unknown): Error {
  const cause = value instanceof Error && value.cause !== undefined ? value.cause : value;
  return cause instanceof Error ? cause : new Error(String(cause));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
