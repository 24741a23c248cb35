/**
 * `createRemoteRuntime`: a core `Runtime` whose processes are tasks on a
 * remote agent, reached with an {@link HttpClient}. A local supervisor on it
 * keeps its own rules (timeouts, restarts, kill escalation); the remote agent
 * only runs the processes.
 */
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import {
  OverthereError,
  noopLogger,
  parseSignal,
  type Logger,
  type ExitStatus,
  type OutputStream,
  type Process,
  type Runtime,
  type RuntimeCapabilities,
  type RuntimeCapacity,
  type SpawnContext,
  type TaskInfo,
  type TaskSpec,
} from '@overthere/core';
import type { HttpClient } from './http-client.js';

/**
 * What {@link createRemoteRuntime} needs from a client: an {@link HttpClient},
 * or another transport's client of the same shape (e.g. the NATS client).
 */
export type RemoteRuntimeClient = Pick<
  HttpClient,
  | 'create'
  | 'get'
  | 'signal'
  | 'stop'
  | 'remove'
  | 'writeStdin'
  | 'closeStdin'
  | 'resize'
  | 'capacity'
  | 'runtime'
> & {
  output(
    id: string,
    options?: { stream?: OutputStream; follow?: boolean; signal?: AbortSignal },
  ): AsyncIterable<
    | { type: 'frame'; data: Uint8Array }
    | { type: 'gap'; fromSeq: number; toSeq: number }
    | { type: 'end'; task: TaskInfo }
  >;
};

/** Options for {@link createRemoteRuntime}. */
export interface RemoteRuntimeOptions {
  /** Client of the agent that runs the processes. */
  client: RemoteRuntimeClient;
  /** Id of this runtime. Default `remote`. `runtimeOptions` of specs are passed on unchanged. */
  id?: string;
  /** Run processes on this runtime of the agent. Default: the agent's default. */
  remoteRuntime?: string;
  /** Use these capabilities instead of asking the agent (`GET /v1/runtime`). */
  capabilities?: RuntimeCapabilities;
  /** Remove a remote task once its process ended and its output was read. Default true. */
  removeFinished?: boolean;
  /** pino-compatible logger (output the agent dropped before it was read is logged). Default silent. */
  logger?: Logger;
}

const LOST: ExitStatus = { code: null, signal: null, reason: 'lost' };

/** Errors that mean "that process is no longer there to act on". */
function isGone(error: unknown): boolean {
  return (
    OverthereError.hasCode(error, 'FAILED_PRECONDITION') ||
    OverthereError.hasCode(error, 'NOT_FOUND')
  );
}

/** A Readable fed by a remote output follow, with backpressure back to the agent. */
function followStream(
  client: RemoteRuntimeClient,
  id: string,
  stream: OutputStream,
  signal: AbortSignal,
  logger: Logger,
): { readable: Readable; ended: Promise<TaskInfo | undefined> } {
  let wantMore: (() => void) | undefined;
  const readable = new Readable({
    read() {
      const resume = wantMore;
      wantMore = undefined;
      resume?.();
    },
  });
  const ended = (async (): Promise<TaskInfo | undefined> => {
    let final: TaskInfo | undefined;
    try {
      for await (const event of client.output(id, { stream, follow: true, signal })) {
        if (event.type === 'end') final = event.task;
        if (event.type === 'gap') {
          // The agent's log let go of output before it was read: nothing to recover.
          logger.warn(
            { remoteTaskId: id, stream, fromSeq: event.fromSeq, toSeq: event.toSeq },
            'remote output was dropped before it was read',
          );
        }
        if (event.type !== 'frame' || readable.destroyed) continue;
        if (!readable.push(event.data)) {
          await new Promise<void>((resolve) => {
            wantMore = resolve;
            readable.once('close', resolve);
          });
        }
      }
    } catch {
      // Unreachable agent or removed task: the process counts as lost.
    }
    if (!readable.destroyed) readable.push(null);
    return final;
  })();
  return { readable, ended };
}

interface RemoteProcess extends Process {
  /** Kill it for good (dispose). */
  kill(): Promise<void>;
}

function spawnRemote(
  client: RemoteRuntimeClient,
  task: TaskInfo,
  settings: { removeFinished: boolean; logger: Logger },
  onDone: () => void,
): RemoteProcess {
  const id = task.id;
  const controller = new AbortController();
  const stdout = followStream(client, id, 'stdout', controller.signal, settings.logger);
  const stderr = followStream(client, id, 'stderr', controller.signal, settings.logger);
  const hasStdin = task.spec.stdin === 'pipe' || task.spec.tty !== undefined;

  let stdin: Writable | undefined;
  if (hasStdin) {
    stdin = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        client.writeStdin(id, chunk).then(
          () => callback(),
          (error: unknown) => callback(error as Error),
        );
      },
      writev(chunks, callback) {
        const data = Buffer.concat(chunks.map((entry) => entry.chunk as Buffer));
        client.writeStdin(id, data).then(
          () => callback(),
          (error: unknown) => callback(error as Error),
        );
      },
      final(callback) {
        client.closeStdin(id).then(
          () => callback(),
          // EOF to a process that has ended is no news.
          (error: unknown) => callback(isGone(error) ? null : (error as Error)),
        );
      },
    });
    // Write errors reach the writer through its callback; an unheard 'error' must not crash the agent.
    stdin.on('error', () => undefined);
  }

  const fed = Promise.all([stdout.ended, stderr.ended]);
  const exit = (async (): Promise<ExitStatus> => {
    const [fromStdout, fromStderr] = await fed;
    // The contract: wait() resolves after both streams have ended for their reader.
    await Promise.all([
      finished(stdout.readable).catch(() => undefined),
      finished(stderr.readable).catch(() => undefined),
    ]);
    let final = fromStdout ?? fromStderr;
    if (final === undefined) {
      final = await client.get(id).catch(() => undefined);
    }
    onDone();
    if (settings.removeFinished) {
      client.remove(id).catch(() => undefined);
    }
    return final?.exit ?? LOST;
  })();

  return {
    pid: undefined,
    handle: undefined,
    stdout: stdout.readable,
    stderr: stderr.readable,
    stdin,
    async signal(name) {
      const canonical = parseSignal(name);
      try {
        await client.signal(id, canonical);
      } catch (error) {
        if (!isGone(error)) throw error;
      }
    },
    async resize(size) {
      await client.resize(id, size);
    },
    wait: () => exit,
    async kill() {
      try {
        await client.stop(id, { signal: 'SIGKILL' }, { wait: false });
      } catch (error) {
        // The agent cannot be reached: stop following, the process counts as lost.
        if (!isGone(error)) controller.abort();
      }
      await fed;
    },
  };
}

/**
 * A `Runtime` whose processes run as tasks on the agent behind `client`:
 * `spawn` creates a task (without `timeoutMs` and `restart`, which the local
 * supervisor applies itself), stdout and stderr follow its output, stdin is
 * written with `POST …/stdin`, signals go to its process group, and `wait`
 * resolves with its exit once both streams have ended.
 *
 * Asks the agent for its capabilities (`GET /v1/runtime`) unless given them.
 * `pid` is undefined (the remote pid means nothing here); there are no
 * sandboxes and no `adopt`.
 */
export async function createRemoteRuntime(options: RemoteRuntimeOptions): Promise<Runtime> {
  const { client } = options;
  let remote = options.capabilities;
  if (remote === undefined) {
    const info = await client.runtime();
    const chosen =
      options.remoteRuntime === undefined
        ? info
        : info.runtimes.find((runtime) => runtime.id === options.remoteRuntime);
    if (chosen === undefined) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `the agent has no runtime ${String(options.remoteRuntime)}`,
      );
    }
    remote = chosen.capabilities;
  }
  const capabilities: RuntimeCapabilities = { ...remote, sandboxes: false, adopt: false };
  const live = new Set<RemoteProcess>();
  let disposed = false;

  return {
    id: options.id ?? 'remote',
    capabilities,
    async spawn(spec: TaskSpec, _context: SpawnContext): Promise<Process> {
      if (disposed) throw new OverthereError('UNAVAILABLE', 'the remote runtime was disposed');
      // The local supervisor times out and restarts; the agent must not do it twice.
      const { timeoutMs: _timeout, restart: _restart, ...remoteSpec } = spec;
      const task = await client.create(
        remoteSpec,
        options.remoteRuntime === undefined ? {} : { runtime: options.remoteRuntime },
      );
      const process = spawnRemote(
        client,
        task,
        { removeFinished: options.removeFinished ?? true, logger: options.logger ?? noopLogger },
        () => live.delete(process),
      );
      live.add(process);
      return process;
    },
    async capacity(): Promise<RuntimeCapacity> {
      const capacity = await client.capacity();
      const result: RuntimeCapacity = {};
      if (capacity.memoryBytes !== undefined) result.memoryBytes = capacity.memoryBytes;
      if (capacity.diskBytes !== undefined) result.diskBytes = capacity.diskBytes;
      if (capacity.tasks !== undefined) result.tasks = capacity.tasks;
      return result;
    },
    async dispose(): Promise<void> {
      disposed = true;
      await Promise.all([...live].map((process) => process.kill().catch(() => undefined)));
    },
  };
}
