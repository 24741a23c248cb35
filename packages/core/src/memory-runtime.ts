/**
 * The in-memory reference runtime: "processes" are JS async functions looked
 * up by `command[0]` in a registry of programs. It keeps the Process contract
 * (streams end after the process, wait after the streams, group signals,
 * signal handlers) without touching the OS, so the supervisor and transports
 * can be unit-tested fast and deterministically, and the conformance suite can
 * test itself.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { OverthereError } from './errors.js';
import type {
  ExitStatus,
  Process,
  Runtime,
  RuntimeCapabilities,
  RuntimeCapacity,
  Sandbox,
  SandboxSpec,
  SpawnContext,
} from './runtime.js';
import { parseSignal } from './signals.js';
import type { SignalName } from './signals.js';
import type { TaskSpec } from './task-spec.js';

/** A process started by a program with {@link MemoryProgramContext.spawn}: a member of its group. */
export interface MemoryChildProcess {
  /** The child's memory pid (not an OS pid). */
  readonly pid: number;
  /** Resolves when the child has ended. */
  readonly wait: () => Promise<ExitStatus>;
}

/** What a {@link MemoryProgram} runs with. */
export interface MemoryProgramContext {
  /** The full argv: `argv[0]` is the program name as given in the command. */
  readonly argv: readonly string[];
  /** The process environment (base environment merged with `spec.env`). */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory. */
  readonly cwd: string;
  /** A memory pid, unique within the runtime. Not an OS pid. */
  readonly pid: number;
  /** Readable stdin when the spec asked for `stdin: 'pipe'`; undefined means an immediate EOF. */
  readonly stdin: Readable | undefined;
  /** The process's stdout. Writes wait while the reader is behind (backpressure). */
  readonly stdout: Writable;
  /** The process's stderr. */
  readonly stderr: Writable;
  /**
   * Aborted when the process ends (a signal killed it, or it called `exit`).
   * Long-running programs should stop on it: later writes are discarded.
   */
  readonly signal: AbortSignal;
  /**
   * Handle a signal instead of its default action (for most signals: end the
   * process as `signalled`). `null` restores the default. SIGKILL and SIGSTOP
   * cannot be handled (`INVALID_ARGUMENT`). Returns a function that removes the handler.
   */
  readonly onSignal: (signal: string, handler: ((signal: SignalName) => void) | null) => () => void;
  /** End the process now with `code`, like `process.exit`. Code after it still runs, but its output is discarded. */
  readonly exit: (code: number) => void;
  /**
   * Start another registered program in this process's group: it shares
   * stdout/stderr (keeping them open while it lives) and group signals, but
   * has no stdin. `SPAWN_FAILED` for an unknown program.
   */
  readonly spawn: (command: readonly string[]) => MemoryChildProcess;
}

/**
 * A program for the memory runtime. Returns (or resolves to) its exit code;
 * nothing means 0. A program that throws writes the message to stderr and
 * exits with code 1.
 */
export type MemoryProgram = (
  context: MemoryProgramContext,
) => number | undefined | void | Promise<number | undefined | void>;

/** Options for {@link createMemoryRuntime}. */
export interface MemoryRuntimeOptions {
  /** Runtime id, also the `runtimeOptions` key. Default `memory`. */
  id?: string;
  /** Extra programs by name; they override built-ins of the same name. */
  programs?: Record<string, MemoryProgram>;
  /**
   * Directories that exist, for `cwd`. Default: every absolute path exists
   * except `/nonexistent` and anything under it (the conventional
   * never-there path, as in Debian's home directory for `nobody`).
   */
  directories?: Iterable<string>;
  /** Base environment for `inheritEnv`. Default: this Node process's environment at spawn time. */
  env?: Record<string, string>;
  /** Working directory when the spec has none. Default `/`. */
  cwd?: string;
  /** What `capacity()` reports. Default `{}` (unknown/unlimited). */
  capacity?: RuntimeCapacity;
}

/** Signals whose default action is to do nothing (ignore, or stop/continue, which memory processes cannot). */
const NO_DEFAULT_ACTION: ReadonlySet<SignalName> = new Set<SignalName>([
  'SIGCHLD',
  'SIGCONT',
  'SIGURG',
  'SIGWINCH',
  'SIGSTOP',
  'SIGTSTP',
  'SIGTTIN',
  'SIGTTOU',
]);

/** Signals a program cannot handle. */
const UNCATCHABLE: ReadonlySet<SignalName> = new Set<SignalName>(['SIGKILL', 'SIGSTOP']);

const CAPABILITIES: RuntimeCapabilities = Object.freeze({
  stdin: true,
  tty: false,
  signals: true,
  processGroups: true,
  user: false,
  limits: Object.freeze([]),
  isolation: 'none',
  sandboxes: true,
  adopt: false,
});

/**
 * The shared end of a stdout or stderr pipe: one Readable for the reader, one
 * Writable per holder (group member). It ends when the last holder lets go,
 * as a pipe reaches EOF when its last writer closes it.
 */
class OutputPipe {
  readonly readable: Readable;
  /** Resolves once the reader has seen the end (or destroyed the stream). */
  readonly done: Promise<void>;
  private holders = 0;
  private ended = false;
  /** The reader went away: discard writes, as a process would get EPIPE. */
  private discarding = false;
  private waiting: Array<() => void> = [];

  constructor() {
    this.readable = new Readable({ read: () => this.release() });
    this.done = new Promise((resolve) => {
      this.readable.once('end', resolve);
      this.readable.once('close', () => {
        this.discarding = true;
        this.release();
        resolve();
      });
    });
  }

  /** A writer for one holder; ending or destroying it lets go of the pipe. */
  open(): Writable {
    this.holders += 1;
    let held = true;
    const letGo = (): void => {
      if (!held) return;
      held = false;
      this.holders -= 1;
      if (this.holders === 0) this.end();
    };
    const writable = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.ended || this.discarding) {
          callback();
        } else if (this.readable.push(chunk)) {
          callback();
        } else {
          this.waiting.push(() => callback());
        }
      },
      final: (callback) => {
        letGo();
        callback();
      },
      destroy: (error, callback) => {
        letGo();
        callback(error);
      },
    });
    // Writes after a process ended fail on a destroyed stream; that is not news.
    writable.on('error', () => undefined);
    return writable;
  }

  /** Like Node's child_process: a stream nobody ever read is drained so it can end. */
  flushIfUnread(): void {
    if (this.readable.readableFlowing === null) this.readable.resume();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.readable.destroyed) this.readable.push(null);
    this.release();
  }

  private release(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resume of waiting) resume();
  }
}

interface Member {
  readonly pid: number;
  readonly group: Group;
  readonly handlers: Map<SignalName, (signal: SignalName) => void>;
  readonly controller: AbortController;
  readonly stdout: Writable;
  readonly stderr: Writable;
  status: ExitStatus | undefined;
  readonly done: Promise<ExitStatus>;
  resolveDone(status: ExitStatus): void;
}

interface Group {
  readonly members: Set<Member>;
  leader: Member | undefined;
  readonly stdout: OutputPipe;
  readonly stderr: OutputPipe;
  /** The program's side of a `stdin: 'pipe'`. */
  readonly input: PassThrough | undefined;
  readonly sandbox: SandboxState | undefined;
  live: number;
  readonly membersEnded: Promise<void>;
  resolveMembersEnded(): void;
}

interface SandboxState {
  readonly spec: SandboxSpec;
  readonly groups: Set<Group>;
  destroyed: boolean;
}

interface LaunchOptions {
  argv: readonly string[];
  program: MemoryProgram;
  env: Record<string, string>;
  cwd: string;
  group: Group;
}

/**
 * Create the in-memory reference runtime (id `memory` unless `options.id`).
 *
 * Built-in programs (a registered program of the same name wins):
 * `true`, `false`, `exit <code>`, `echo [-n] <args…>` (stdout),
 * `echo-err <args…>` (stderr), `print-args <args…>` (one per line), `cat`
 * (stdin to stdout until EOF), `sleep <seconds|infinity>`, `sleep-ready
 * <seconds>` (prints `ready`, then sleeps), `printenv [NAME]`, `pwd`,
 * `write <stdout|stderr> <base64>` (raw bytes), `trap-term [seconds]` (prints
 * `ready`, then `term` for each SIGTERM it ignores; sleeps, default forever),
 * `trap <signal> [code] [seconds]` (prints `ready`, exits with `code`, default
 * 0, on `signal`), `spawn-child [command…]` (starts a group member, default
 * `sleep infinity`, prints its pid, waits for it), `seq <last>` (1 to `last`,
 * one per line) and `yes [count] [text]`.
 *
 * `command[0]` is looked up as given, then by its basename (`/bin/echo`
 * finds `echo`). A `script` runs line by line like a tiny `sh`: one command
 * per line, words split on blanks with `'…'`, `"…"` and `\` quoting, `#`
 * comments and a `#!` line ignored, no variables, pipes or redirections; an
 * unknown command prints `name: not found` and has status 127; the script's
 * exit code is that of its last command (`exit <code>` ends it at once).
 *
 * Memory processes have no OS pid (`Process.pid` is undefined), no TTY and no
 * users: a spec with `tty` or `user` is `UNSUPPORTED`; `limits` are ignored.
 * Writing to stdin after the process ended is silently discarded.
 */
export function createMemoryRuntime(options: MemoryRuntimeOptions = {}): Runtime {
  const programs: Record<string, MemoryProgram> = { ...BUILTINS, ...options.programs };
  const directories =
    options.directories === undefined
      ? undefined
      : new Set([...options.directories].map(normaliseDirectory));
  const defaultCwd = options.cwd ?? '/';
  const groups = new Set<Group>();
  let nextPid = 100;
  let disposed = false;

  function lookup(name: string | undefined): MemoryProgram | undefined {
    if (name === undefined || name === '') return undefined;
    const program = Object.hasOwn(programs, name) ? programs[name] : undefined;
    if (program !== undefined) return program;
    const base = name.slice(name.lastIndexOf('/') + 1);
    return base !== name && Object.hasOwn(programs, base) ? programs[base] : undefined;
  }

  function directoryExists(path: string): boolean {
    if (!path.startsWith('/')) return false;
    const normalised = normaliseDirectory(path);
    if (directories !== undefined) return directories.has(normalised);
    return normalised !== '/nonexistent' && !normalised.startsWith('/nonexistent/');
  }

  function baseEnv(): Record<string, string> {
    if (options.env !== undefined) return { ...options.env };
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined) env[key] = value;
    }
    return env;
  }

  function createGroup(input: PassThrough | undefined, sandbox: SandboxState | undefined): Group {
    let resolveMembersEnded!: () => void;
    const membersEnded = new Promise<void>((resolve) => {
      resolveMembersEnded = resolve;
    });
    return {
      members: new Set(),
      leader: undefined,
      stdout: new OutputPipe(),
      stderr: new OutputPipe(),
      input,
      sandbox,
      live: 0,
      membersEnded,
      resolveMembersEnded,
    };
  }

  /** End a member with `status` (if it has not ended yet). */
  function finish(member: Member, status: ExitStatus, graceful: boolean): void {
    if (member.status !== undefined) return;
    member.status = status;
    member.controller.abort();
    if (graceful) {
      // A process's completed writes are not lost when it exits: let buffered ones drain.
      for (const stream of [member.stdout, member.stderr]) {
        if (!stream.writableEnded && !stream.destroyed) stream.end();
      }
    } else {
      member.stdout.destroy();
      member.stderr.destroy();
    }
    const group = member.group;
    if (member === group.leader && group.input !== undefined) {
      group.input.destroy();
    }
    group.live -= 1;
    if (group.live === 0) {
      group.stdout.flushIfUnread();
      group.stderr.flushIfUnread();
      groups.delete(group);
      group.sandbox?.groups.delete(group);
      group.resolveMembersEnded();
    }
    member.resolveDone(status);
  }

  function deliver(member: Member, signal: SignalName): void {
    if (member.status !== undefined) return;
    const handler = member.handlers.get(signal);
    if (handler !== undefined && !UNCATCHABLE.has(signal)) {
      try {
        handler(signal);
      } catch (error) {
        crash(member, error);
      }
      return;
    }
    if (NO_DEFAULT_ACTION.has(signal)) return;
    finish(member, { code: null, signal, reason: 'signalled' }, false);
  }

  function crash(member: Member, error: unknown): void {
    if (member.status !== undefined) return;
    const message = error instanceof Error ? error.message : String(error);
    member.stderr.write(`${message}\n`);
    finish(member, { code: 1, signal: null, reason: 'exited' }, true);
  }

  function launch(launchOptions: LaunchOptions): Member {
    const { argv, program, env, cwd, group } = launchOptions;
    let resolveDone!: (status: ExitStatus) => void;
    const done = new Promise<ExitStatus>((resolve) => {
      resolveDone = resolve;
    });
    const member: Member = {
      pid: nextPid++,
      group,
      handlers: new Map(),
      controller: new AbortController(),
      stdout: group.stdout.open(),
      stderr: group.stderr.open(),
      status: undefined,
      done,
      resolveDone,
    };
    const isLeader = group.leader === undefined;
    if (isLeader) group.leader = member;
    group.members.add(member);
    group.live += 1;

    const context: MemoryProgramContext = {
      argv: Object.freeze([...argv]),
      env: Object.freeze({ ...env }),
      cwd,
      pid: member.pid,
      stdin: isLeader ? group.input : undefined,
      stdout: member.stdout,
      stderr: member.stderr,
      signal: member.controller.signal,
      onSignal(signal, handler) {
        const name = parseSignal(signal);
        if (UNCATCHABLE.has(name)) {
          throw new OverthereError('INVALID_ARGUMENT', `${name} cannot be caught`);
        }
        if (handler === null) {
          member.handlers.delete(name);
          return () => undefined;
        }
        member.handlers.set(name, handler);
        return () => {
          if (member.handlers.get(name) === handler) member.handlers.delete(name);
        };
      },
      exit(code) {
        finish(member, exited(code), true);
      },
      spawn(command) {
        const child = lookup(command[0]);
        if (child === undefined) {
          throw new OverthereError('SPAWN_FAILED', `spawn ${command[0] ?? ''} ENOENT`);
        }
        if (member.status !== undefined) {
          throw new OverthereError('SPAWN_FAILED', 'spawn after the parent ended');
        }
        const started = launch({ argv: command, program: child, env, cwd, group });
        return { pid: started.pid, wait: () => started.done };
      },
    };

    // Run on a later tick: spawn returns first, as with a real process.
    setImmediate(() => {
      if (member.status !== undefined) return;
      Promise.resolve()
        .then(() => program(context))
        .then(
          (code) => finish(member, exited(code ?? 0), true),
          (error: unknown) => crash(member, error),
        );
    });
    return member;
  }

  function processFor(group: Group, leader: Member): Process {
    // Listen from the start so an end that happens early is not missed.
    const ended = Promise.all([
      leader.done,
      group.membersEnded,
      group.stdout.done,
      group.stderr.done,
    ]).then(([status]) => ({ ...status }));
    const input = group.input;
    const stdin =
      input === undefined
        ? undefined
        : new Writable({
            write: (chunk: Buffer, _encoding, callback) => {
              // Like a pipe whose reader exited, minus the EPIPE: the bytes go nowhere.
              if (leader.status !== undefined || input.destroyed) {
                callback();
              } else if (input.write(chunk)) {
                callback();
              } else {
                const resume = (): void => {
                  input.off('drain', resume);
                  input.off('close', resume);
                  callback();
                };
                input.on('drain', resume);
                input.on('close', resume);
              }
            },
            final: (callback) => {
              if (!input.destroyed) input.end();
              callback();
            },
          });
    return {
      pid: undefined,
      handle: undefined,
      stdout: group.stdout.readable,
      stderr: group.stderr.readable,
      stdin,
      signal: (signal, signalOptions = {}) =>
        attempt(() => {
          const name = parseSignal(signal);
          const targets = signalOptions.group === false ? [leader] : [...group.members];
          for (const member of targets) deliver(member, name);
        }),
      resize: () => Promise.reject(new OverthereError('UNSUPPORTED', 'the process has no TTY')),
      wait: () => ended,
    };
  }

  function kill(group: Group): void {
    for (const member of group.members) deliver(member, 'SIGKILL');
  }

  function spawnIn(spec: TaskSpec, sandbox: SandboxState | undefined): Process {
    if (disposed) throw new OverthereError('UNAVAILABLE', 'the memory runtime was disposed');
    if (sandbox?.destroyed === true) {
      throw new OverthereError('FAILED_PRECONDITION', 'the sandbox was destroyed');
    }
    const hasCommand = spec.command !== undefined;
    const hasScript = spec.script !== undefined;
    if (hasCommand === hasScript) {
      throw new OverthereError('INVALID_ARGUMENT', 'exactly one of command and script is required');
    }
    if (spec.tty !== undefined) {
      throw new OverthereError('UNSUPPORTED', 'the memory runtime has no TTY');
    }
    if (spec.user !== undefined) {
      throw new OverthereError('UNSUPPORTED', 'the memory runtime cannot run as another user');
    }

    let argv: readonly string[];
    let program: MemoryProgram;
    if (spec.command !== undefined) {
      argv = spec.command;
      const found = lookup(argv[0]);
      if (argv.length === 0) throw new OverthereError('SPAWN_FAILED', 'spawn: empty command');
      if (found === undefined) {
        throw new OverthereError('SPAWN_FAILED', `spawn ${argv[0] ?? ''} ENOENT`);
      }
      program = found;
    } else {
      argv = ['sh', '-c', spec.script ?? ''];
      program = scriptProgram(spec.script ?? '', lookup);
    }

    const cwd = spec.cwd ?? sandbox?.spec.cwd ?? defaultCwd;
    if (!directoryExists(cwd)) {
      throw new OverthereError(
        'SPAWN_FAILED',
        `spawn ${argv[0] ?? 'sh'} ENOENT: no such directory ${cwd}`,
      );
    }
    const env = {
      ...(spec.inheritEnv === false ? {} : { ...baseEnv(), ...sandbox?.spec.env }),
      ...spec.env,
    };

    const group = createGroup(spec.stdin === 'pipe' ? new PassThrough() : undefined, sandbox);
    groups.add(group);
    sandbox?.groups.add(group);
    const leader = launch({ argv, program, env, cwd, group });
    return processFor(group, leader);
  }

  return {
    id: options.id ?? 'memory',
    capabilities: CAPABILITIES,
    spawn: (spec, _context: SpawnContext) => attempt(() => spawnIn(spec, undefined)),
    capacity: () => Promise.resolve({ ...options.capacity }),
    createSandbox(spec, _context) {
      if (disposed) {
        return Promise.reject(new OverthereError('UNAVAILABLE', 'the memory runtime was disposed'));
      }
      const state: SandboxState = { spec, groups: new Set(), destroyed: false };
      const sandbox: Sandbox = {
        id: `memory-sandbox-${randomUUID()}`,
        handle: undefined,
        spawn: (taskSpec, _context) => attempt(() => spawnIn(taskSpec, state)),
        async destroy() {
          state.destroyed = true;
          const ending = [...state.groups];
          for (const group of ending) kill(group);
          await Promise.all(ending.map((group) => group.membersEnded));
        },
      };
      return Promise.resolve(sandbox);
    },
    async dispose() {
      disposed = true;
      const ending = [...groups];
      for (const group of ending) kill(group);
      await Promise.all(ending.map((group) => group.membersEnded));
    },
  };
}

/** Run `fn` and turn its result or throw into a promise. */
function attempt<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

function exited(code: number): ExitStatus {
  const integer = Number.isFinite(code) ? Math.trunc(code) : 1;
  return { code: ((integer % 256) + 256) % 256, signal: null, reason: 'exited' };
}

function normaliseDirectory(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

/** Write and resolve once the chunk was taken (so loops respect backpressure). */
function write(stream: Writable, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (error) => (error ? reject(error) : resolve()));
  });
}

/** Milliseconds for a `sleep` argument in seconds (`infinity`/`inf`: forever); undefined when invalid. */
function parseSeconds(seconds: string | undefined): number | undefined {
  if (seconds === 'infinity' || seconds === 'inf') return Infinity;
  const value = Number(seconds);
  if (seconds === undefined || seconds.trim() === '' || !Number.isFinite(value) || value < 0) {
    return undefined;
  }
  return value * 1000;
}

/** Sleep `ms` (Infinity: forever); rejects as soon as the process ends. */
function sleepMs(ms: number, signal: AbortSignal): Promise<void> {
  if (ms !== Infinity) return delay(ms, undefined, { signal });
  return new Promise((_resolve, reject) => {
    const aborted = (): void => reject(new Error('the process ended'));
    if (signal.aborted) aborted();
    else signal.addEventListener('abort', aborted, { once: true });
  });
}

function parseCode(value: string | undefined): number {
  const code = Number(value ?? '0');
  return Number.isInteger(code) ? code : 2;
}

const BUILTINS: Record<string, MemoryProgram> = {
  true: () => 0,
  false: () => 1,
  exit: ({ argv, exit }) => {
    const code = parseCode(argv[1]);
    exit(code);
    return code;
  },
  echo: async ({ argv, stdout }) => {
    const noNewline = argv[1] === '-n';
    const words = argv.slice(noNewline ? 2 : 1).join(' ');
    await write(stdout, noNewline ? words : `${words}\n`);
  },
  'echo-err': async ({ argv, stderr }) => {
    await write(stderr, `${argv.slice(1).join(' ')}\n`);
  },
  'print-args': async ({ argv, stdout }) => {
    for (const argument of argv.slice(1)) await write(stdout, `${argument}\n`);
  },
  cat: async ({ stdin, stdout }) => {
    if (stdin === undefined) return 0;
    for await (const chunk of stdin) await write(stdout, chunk as Buffer);
    return 0;
  },
  sleep: async ({ argv, stderr, signal }) => {
    const ms = parseSeconds(argv[1]);
    if (ms === undefined) {
      await write(stderr, `sleep: invalid time interval '${argv[1] ?? ''}'\n`);
      return 1;
    }
    await sleepMs(ms, signal);
    return 0;
  },
  'sleep-ready': async ({ argv, stdout, stderr, signal }) => {
    const ms = parseSeconds(argv[1] ?? 'infinity');
    if (ms === undefined) {
      await write(stderr, `sleep-ready: invalid time interval '${argv[1] ?? ''}'\n`);
      return 1;
    }
    await write(stdout, 'ready\n');
    await sleepMs(ms, signal);
    return 0;
  },
  printenv: async ({ argv, env, stdout }) => {
    const name = argv[1];
    if (name === undefined) {
      for (const [key, value] of Object.entries(env)) await write(stdout, `${key}=${value}\n`);
      return 0;
    }
    const value = env[name];
    if (value === undefined) return 1;
    await write(stdout, `${value}\n`);
    return 0;
  },
  pwd: async ({ cwd, stdout }) => {
    await write(stdout, `${cwd}\n`);
  },
  write: async ({ argv, stdout, stderr }) => {
    const stream = argv[1] === 'stdout' ? stdout : argv[1] === 'stderr' ? stderr : undefined;
    if (stream === undefined) {
      await write(stderr, `write: unknown stream '${argv[1] ?? ''}'\n`);
      return 2;
    }
    await write(stream, Buffer.from(argv[2] ?? '', 'base64'));
    return 0;
  },
  'trap-term': async ({ argv, stdout, stderr, signal, onSignal }) => {
    const ms = parseSeconds(argv[1] ?? 'infinity');
    if (ms === undefined) {
      await write(stderr, `trap-term: invalid time interval '${argv[1] ?? ''}'\n`);
      return 1;
    }
    onSignal('SIGTERM', () => {
      stdout.write('term\n');
    });
    await write(stdout, 'ready\n');
    await sleepMs(ms, signal);
    return 0;
  },
  trap: async ({ argv, stdout, stderr, signal, onSignal, exit }) => {
    const code = parseCode(argv[2]);
    const ms = parseSeconds(argv[3] ?? 'infinity');
    if (argv[1] === undefined || ms === undefined) {
      await write(stderr, 'usage: trap <signal> [code] [seconds]\n');
      return 2;
    }
    onSignal(argv[1], () => exit(code));
    await write(stdout, 'ready\n');
    await sleepMs(ms, signal);
    return 0;
  },
  'spawn-child': async ({ argv, stdout, spawn }) => {
    const child = spawn(argv.length > 1 ? argv.slice(1) : ['sleep', 'infinity']);
    await write(stdout, `${child.pid}\n`);
    const status = await child.wait();
    return status.code ?? 0;
  },
  seq: async ({ argv, stdout, stderr, signal }) => {
    const last = Number(argv[1]);
    if (!Number.isInteger(last)) {
      await write(stderr, `seq: invalid number '${argv[1] ?? ''}'\n`);
      return 1;
    }
    for (let number = 1; number <= last && !signal.aborted; number += 1) {
      await write(stdout, `${number}\n`);
    }
    return 0;
  },
  yes: async ({ argv, stdout, signal }) => {
    const count = argv[1] === undefined ? Infinity : Number(argv[1]);
    const line = `${argv.length > 2 ? argv.slice(2).join(' ') : 'y'}\n`;
    for (let written = 0; written < count && !signal.aborted; written += 1) {
      await write(stdout, line);
    }
  },
};

/** Split one script line into words: blanks separate, `'…'` and `"…"` quote, `\` escapes. */
function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let index = 0; index < line.length; index += 1) {
    const character = line.charAt(index);
    if (quote !== undefined) {
      if (character === quote) quote = undefined;
      else if (character === '\\' && quote === '"' && index + 1 < line.length) {
        index += 1;
        word += line.charAt(index);
      } else word += character;
    } else if (character === '"' || character === "'") {
      quote = character;
      inWord = true;
    } else if (character === '\\' && index + 1 < line.length) {
      index += 1;
      word += line.charAt(index);
      inWord = true;
    } else if (character === '#' && !inWord) {
      break;
    } else if (/\s/.test(character)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += character;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The tiny line-oriented `sh` described on {@link createMemoryRuntime}. */
function scriptProgram(
  script: string,
  lookup: (name: string | undefined) => MemoryProgram | undefined,
): MemoryProgram {
  return async (context) => {
    let status = 0;
    for (const line of script.split('\n')) {
      if (context.signal.aborted) break;
      const argv = splitWords(line);
      const name = argv[0];
      if (name === undefined) continue;
      if (name === 'exit') {
        const code = argv[1] === undefined ? status : parseCode(argv[1]);
        context.exit(code);
        return code;
      }
      const program = lookup(name);
      if (program === undefined) {
        await write(context.stderr, `${name}: not found\n`);
        status = 127;
        continue;
      }
      const code = await program({ ...context, argv });
      status = exited(code ?? 0).code ?? 0;
    }
    return status;
  };
}
