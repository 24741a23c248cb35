/**
 * The watchdog makes sure no task outlives the agent, even an agent killed
 * with SIGKILL. Node cannot ask the kernel for a parent-death signal
 * (PR_SET_PDEATHSIG), so a tiny shell process does the job: it reads `+ID` and
 * `-ID` lines on its stdin, one per task session started and reaped, and when
 * its stdin reaches end of file (the agent died, or disposed the runtime) it
 * SIGKILLs every process group still registered and every process still in
 * one of those sessions, then exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from '@overthere/core';

/**
 * POSIX sh, builtins only (no fork per line). It ignores INT/TERM/HUP so a
 * terminal's ^C or a hang-up that kills the agent cannot take it down first.
 * Ids 0 and 1 are refused: `kill -- -0` / `-1` would hit far too much.
 */
export const WATCHDOG_SCRIPT = `trap '' INT TERM HUP PIPE
s=' '
while IFS= read -r l; do
  n=\${l#?}
  case $n in ''|*[!0-9]*) continue ;; esac
  [ "$n" -gt 1 ] || continue
  case $l in
    +*) s="$s$n " ;;
    -*) r=' '; for x in $s; do [ "$x" = "$n" ] || r="$r$x "; done; s=$r ;;
  esac
done
[ "$s" = ' ' ] && exit 0
for x in $s; do kill -s KILL -- "-$x" 2>/dev/null; done
for pass in 1 2; do
  for p in /proc/[0-9]*; do
    { read -r st < "$p/stat"; } 2>/dev/null || continue
    set -- \${st##*) }
    case $s in *" $4 "*) kill -s KILL -- "\${p#/proc/}" 2>/dev/null ;; esac
  done
done
exit 0
`;

/** One watchdog process per runtime. */
export interface Watchdog {
  /** Start watching the session/process group `id` (starts the watchdog if needed). */
  register(id: number): void;
  /** Stop watching `id` (its processes are gone). */
  unregister(id: number): void;
  /** The watchdog's pid while it runs. */
  readonly pid: number | undefined;
  /** Close its stdin (it then kills what is still registered) and wait for it to exit. */
  close(): Promise<void>;
}

/** How long `close` waits for the watchdog to exit. */
const CLOSE_TIMEOUT_MS = 2_000;

export interface WatchdogOptions {
  logger: Logger;
  /** Shell that runs the script. Default `/bin/sh`. */
  shell?: string;
  /** A watchdog that dies sooner than this after its start is not replaced at once. Default 1000. */
  restartAfterMs?: number;
}

export function createWatchdog(options: WatchdogOptions): Watchdog {
  const { logger } = options;
  const restartAfterMs = options.restartAfterMs ?? 1_000;
  const shell = options.shell ?? '/bin/sh';
  const registered = new Set<number>();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let closed = false;

  // node:child_process rather than execa: this is a fixed internal helper, and
  // what it needs — unref() of the child and of its stdin pipe so it never keeps
  // the agent alive — is plain ChildProcess API that execa's promise would hide.
  function start(): ChildProcess {
    const started = spawn(shell, ['-c', WATCHDOG_SCRIPT, 'overthere-watchdog'], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    started.unref();
    (started.stdin as Socket | null)?.unref();
    started.stdin?.on('error', (error) => {
      // EPIPE when the watchdog died; the next register starts a new one.
      logger.warn({ err: error }, 'watchdog stdin error');
    });
    started.on('error', (error) => {
      logger.error({ err: error }, 'watchdog failed to start');
    });
    const startedAt = Date.now();
    exited = new Promise((resolve) => {
      started.once('exit', (code, signal) => {
        if (child === started) child = undefined;
        if (!closed) {
          logger.warn({ code, signal }, 'watchdog exited unexpectedly');
          // Someone killed it: replace it now, unless it dies at once (no respawn loop).
          if (registered.size > 0 && Date.now() - startedAt >= restartAfterMs) ensureStarted();
        }
        resolve();
      });
      started.once('error', () => {
        if (child === started) child = undefined;
        resolve();
      });
    });
    logger.debug({ pid: started.pid }, 'watchdog started');
    return started;
  }

  /** Starts a watchdog when none runs and tells it everything registered; true when it did. */
  function ensureStarted(): boolean {
    if (child !== undefined || closed) return false;
    child = start();
    for (const id of registered) write(`+${id}`);
    return true;
  }

  // Lines written in one burst (many spawns ending in the same tick) go out
  // in one write: flushed in a microtask, before the event loop moves on.
  let pending = '';
  function flush(): void {
    const lines = pending;
    pending = '';
    const stdin = child?.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded) return;
    stdin.write(lines);
  }
  function write(line: string): void {
    if (pending === '') queueMicrotask(flush);
    pending += `${line}\n`;
  }

  return {
    get pid() {
      return child?.pid;
    },
    register(id) {
      if (closed) return;
      registered.add(id);
      if (!ensureStarted()) write(`+${id}`);
    },
    unregister(id) {
      if (!registered.delete(id)) return;
      write(`-${id}`);
    },
    async close() {
      if (closed) return exited;
      closed = true;
      const current = child;
      if (current === undefined) return;
      flush();
      current.stdin?.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        exited,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
