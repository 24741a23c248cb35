/**
 * Fixtures: the programs the conformance suite runs, as TaskSpec fragments,
 * so one suite serves runtimes that run OS processes, containers, or JS
 * functions.
 */
import type { TaskSpec } from '@overthere/core';

/** The part of a TaskSpec a fixture supplies: what to run. */
export type FixtureSpec = Pick<TaskSpec, 'command' | 'script'>;

/** An output stream a fixture writes to. */
export type FixtureStream = 'stdout' | 'stderr';

/**
 * Everything the suite runs, and the facts about the runtime's world it needs.
 * "Prints" means writes to stdout. Programs that print `ready` must do so only
 * once they are set up (signal handlers installed), as the suite signals them
 * right after seeing it.
 */
export interface RuntimeFixtures {
  /** Prints `text` and a newline; `text` reaches the program as one argument, unexpanded. */
  echo(text: string): FixtureSpec;
  /** Prints each argument on its own line, exactly as received. */
  printArgs(args: readonly string[]): FixtureSpec;
  /** Writes exactly `bytes` (any values, NUL included, no newline added) to `stream`. */
  writeBytes(stream: FixtureStream, bytes: Uint8Array): FixtureSpec;
  /** Writes `out1\n` to stdout, `err1\n` to stderr, `out2\n` to stdout, `err2\n` to stderr, in that order. */
  interleaved(): FixtureSpec;
  /** Prints the numbers 1 to `count`, one per line (output larger than a pipe buffer). */
  lines(count: number): FixtureSpec;
  /** Copies stdin to stdout until EOF, then exits 0. */
  cat(): FixtureSpec;
  /** Exits with `code` (0–255). */
  exit(code: number): FixtureSpec;
  /** Prints the value of environment variable `name` (nothing when unset), optionally followed by a newline. */
  printEnv(name: string): FixtureSpec;
  /** Prints the working directory, optionally followed by a newline. */
  printCwd(): FixtureSpec;
  /** Prints the numeric uid it runs as (only used when `capabilities.user`). */
  printUid(): FixtureSpec;
  /** Sleeps `seconds`, then exits 0; SIGTERM ends it with its default action. */
  sleep(seconds: number): FixtureSpec;
  /**
   * Traps SIGTERM, prints `ready`, then keeps running until SIGKILL, printing
   * `term` each time a SIGTERM arrives (the evidence that it was delivered and survived).
   */
  trapTerm(): FixtureSpec;
  /** Prints `ready`, then runs until SIGTERM ends it by the default action (so it ends `signalled`). */
  exitOnTerm(): FixtureSpec;
  /** Prints `ready`, then runs until `signal` (e.g. `SIGUSR1`) arrives, and exits 0 on it. */
  exitOnSignal(signal: string): FixtureSpec;
  /**
   * Starts a long-running child in the same process group that keeps the task's
   * stdout open, prints the child's pid (as the runtime's world sees it) and a
   * newline, then waits for the child. If a group signal missed the child, the
   * task's stdout would never end: that is the evidence the suite relies on
   * where it cannot look into `/proc`.
   */
  groupWithChild(): FixtureSpec;
  /** A command whose program does not exist, so `spawn` must reject with `SPAWN_FAILED`. */
  missingBinary(): FixtureSpec;
  /** A directory that exists in the runtime, other than its default working directory. */
  directory: string;
  /** A directory that does not exist in the runtime. */
  missingDirectory: string;
  /**
   * A variable of the runtime's base environment and its value. When it is not
   * set in this (the test) process, the suite sets it before creating the
   * runtime, which puts it in the base environment of runtimes that inherit
   * the agent's. Runtimes with another base environment (a container image's)
   * name one of theirs.
   */
  baseEnv: { name: string; value: string };
  /** A user to run as (`spec.user`) and the uid `printUid` then prints (only used when `capabilities.user`). */
  user: { user: string | number; uid: number };
}

/** `/bin/sh -c script` with positional parameters: arguments never pass through the shell's parser. */
function sh(script: string, ...args: readonly string[]): FixtureSpec {
  return { command: ['/bin/sh', '-c', script, 'sh', ...args] };
}

/** A shell-safe variable name, or a thrown error (the suite only uses its own names). */
function variableName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a variable name: ${name}`);
  return name;
}

/** Every byte as a three-digit octal escape, which POSIX `printf` formats turn back into bytes (NUL too). */
function octalEscapes(bytes: Uint8Array): string {
  let escaped = '';
  for (const byte of bytes) escaped += `\\${byte.toString(8).padStart(3, '0')}`;
  return escaped;
}

/**
 * Fixtures for runtimes that run POSIX programs: local processes, containers
 * with a busybox or fuller userland, remote hosts over SSH. They need only
 * `/bin/sh` and `sleep`, `cat`, `pwd` and `id` (shell built-ins or programs on
 * `PATH`); the directory is `/tmp`; the user is uid 65534 (`nobody`).
 */
export const shellFixtures: RuntimeFixtures = {
  echo: (text) => sh('printf "%s\\n" "$1"', text),
  printArgs: (args) => sh('for a in "$@"; do printf "%s\\n" "$a"; done', ...args),
  writeBytes: (stream, bytes) =>
    sh(`printf '${octalEscapes(bytes)}'${stream === 'stderr' ? ' >&2' : ''}`),
  interleaved: () => sh('echo out1; echo err1 >&2; echo out2; echo err2 >&2'),
  lines: (count) =>
    sh('i=1; while [ "$i" -le "$1" ]; do echo "$i"; i=$((i + 1)); done', String(count)),
  cat: () => sh('exec cat'),
  exit: (code) => sh(`exit ${Math.trunc(code)}`),
  printEnv: (name) => sh(`printf "%s\\n" "$${variableName(name)}"`),
  printCwd: () => sh('pwd'),
  printUid: () => sh('id -u'),
  sleep: (seconds) => sh(`exec sleep ${seconds}`),
  // A handler, not `trap '' TERM`: the shell prints evidence, and its `sleep`
  // children stay killable so a missed group SIGKILL cannot hang for long.
  trapTerm: () => sh('trap "echo term" TERM; echo ready; while :; do sleep 1; done'),
  exitOnTerm: () => sh('echo ready; exec sleep 30'),
  exitOnSignal: (signal) =>
    sh(
      `trap "exit 0" ${variableName(signal.replace(/^SIG/i, ''))}; echo ready; while :; do sleep 1; done`,
    ),
  groupWithChild: () => sh('sleep 3600 & echo $!; wait'),
  missingBinary: () => ({ command: ['overthere-conformance-no-such-binary'] }),
  directory: '/tmp',
  missingDirectory: '/nonexistent/overthere-conformance',
  baseEnv: { name: 'OVERTHERE_CONFORMANCE_BASE', value: 'inherited' },
  user: { user: 65534, uid: 65534 },
};

/**
 * Fixtures for core's in-memory reference runtime (`createMemoryRuntime`),
 * using its built-in programs; `interleaved` uses its line-oriented `script`
 * support.
 */
export const memoryFixtures: RuntimeFixtures = {
  echo: (text) => ({ command: ['print-args', text] }),
  printArgs: (args) => ({ command: ['print-args', ...args] }),
  writeBytes: (stream, bytes) => ({
    command: ['write', stream, Buffer.from(bytes).toString('base64')],
  }),
  interleaved: () => ({ script: 'echo out1\necho-err err1\necho out2\necho-err err2\n' }),
  lines: (count) => ({ command: ['seq', String(count)] }),
  cat: () => ({ command: ['cat'] }),
  exit: (code) => ({ command: ['exit', String(code)] }),
  printEnv: (name) => ({ command: ['printenv', name] }),
  printCwd: () => ({ command: ['pwd'] }),
  // The memory runtime has no users (`capabilities.user` is false), so this never runs.
  printUid: () => ({ command: ['false'] }),
  sleep: (seconds) => ({ command: ['sleep', String(seconds)] }),
  trapTerm: () => ({ command: ['trap-term'] }),
  exitOnTerm: () => ({ command: ['sleep-ready', '30'] }),
  exitOnSignal: (signal) => ({ command: ['trap', signal, '0'] }),
  groupWithChild: () => ({ command: ['spawn-child'] }),
  missingBinary: () => ({ command: ['overthere-conformance-no-such-program'] }),
  directory: '/tmp',
  missingDirectory: '/nonexistent/overthere-conformance',
  baseEnv: { name: 'OVERTHERE_CONFORMANCE_BASE', value: 'inherited' },
  user: { user: 65534, uid: 65534 },
};
