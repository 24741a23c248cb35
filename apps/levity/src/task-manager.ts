/**
 * The `levity.TaskManager` gRPC service over a Supervisor: the original's four
 * unary calls plus the streaming FollowLogs. Errors go out as the original's
 * did, status UNKNOWN with a message (`No such task: <id>`, the spawn error);
 * a wrong or missing token is UNAUTHENTICATED.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  OverthereError,
  noopLogger,
  secretsEqual,
  type Logger,
  type OutputLog,
  type OutputStream,
  type Supervisor,
  type TaskSpec,
} from '@overthere/core';
import { lookPath } from './look-path.js';
import type {
  FetchLogsResponse,
  LogChunk,
  QueryTaskResponse,
  StartTaskRequest,
  StartTaskResponse,
  TaskRequest,
} from './proto.js';
import { taskStatus } from './task-status.js';

/** What FetchLogs returns at most, stdout and stderr together: a stock gRPC client accepts 4 MiB messages. */
export const FETCH_LOGS_LIMIT_BYTES = 4 * 1024 * 1024 - 64 * 1024;

/** Options for {@link createTaskManager}. */
export interface TaskManagerOptions {
  supervisor: Supervisor;
  /** Time between SIGTERM and SIGKILL after SignalTask. */
  graceMs: number;
  /** When set, every call needs metadata `authorization: Bearer <token>`. */
  token?: string | undefined;
  /** Where binaries are looked up. Default: the server's PATH. */
  searchPath?: string | undefined;
  logger?: Logger;
}

/** The handlers, for `server.addService(service, handlers)`. */
export type TaskManagerHandlers = grpc.UntypedServiceImplementation;

/** An expected failure with its gRPC status. */
class CallError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

const ENV_NAME = /^[^=\0]+$/;

function taskIdOf(request: TaskRequest): string {
  const id = request.task_id?.id;
  if (id === undefined || id === '') throw new CallError(grpc.status.UNKNOWN, 'missing task id');
  return id;
}

function environmentOf(request: StartTaskRequest): Record<string, string> {
  const environment = request.environment ?? {};
  for (const name of Object.keys(environment)) {
    if (!ENV_NAME.test(name)) {
      throw new CallError(
        grpc.status.UNKNOWN,
        `invalid environment variable name ${JSON.stringify(name)}`,
      );
    }
  }
  return { ...environment };
}

/** The last `maxBytes` bytes of one stream that the log still holds. */
async function readTail(log: OutputLog, stream: OutputStream, maxBytes: number): Promise<Buffer> {
  const fromOffset = Math.max(0, log.bytes(stream) - maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const event of log.read({ streams: [stream], fromOffset })) {
    if (event.type !== 'frame') continue;
    chunks.push(event.data);
    size += event.data.length;
  }
  const all = Buffer.concat(chunks, size);
  // The task may have written more since `bytes()` was read: keep the newest.
  return all.length > maxBytes ? all.subarray(all.length - maxBytes) : all;
}

/** The service implementation. */
export function createTaskManager(options: TaskManagerOptions): TaskManagerHandlers {
  const { supervisor, graceMs, token } = options;
  const logger = options.logger ?? noopLogger;
  const searchPath = options.searchPath ?? process.env.PATH;

  function authorized(metadata: grpc.Metadata): boolean {
    if (token === undefined) return true;
    const value = metadata.get('authorization')[0];
    if (typeof value !== 'string') return false;
    const match = /^Bearer +(\S+) *$/i.exec(value);
    return secretsEqual(match?.[1], token);
  }

  /** The status a failure goes out with; `taskId` names the task in `No such task`. */
  function statusOf(error: unknown, taskId?: string): Partial<grpc.StatusObject> {
    if (error instanceof CallError) return { code: error.code, details: error.message };
    if (OverthereError.is(error)) {
      if (error.code === 'NOT_FOUND' && taskId !== undefined) {
        return { code: grpc.status.UNKNOWN, details: `No such task: ${taskId}` };
      }
      if (error.code === 'UNAVAILABLE') {
        return { code: grpc.status.UNAVAILABLE, details: error.message };
      }
      return { code: grpc.status.UNKNOWN, details: error.message };
    }
    logger.error({ err: error, taskId }, 'request failed');
    const message = error instanceof Error ? error.message : String(error);
    return { code: grpc.status.UNKNOWN, details: message };
  }

  const unauthenticated = (): Partial<grpc.StatusObject> => ({
    code: grpc.status.UNAUTHENTICATED,
    details: 'missing or wrong token',
  });

  function unary<Request, Response>(
    handler: (request: Request) => Promise<Response> | Response,
  ): grpc.handleUnaryCall<Request, Response> {
    return (call, callback) => {
      if (!authorized(call.metadata)) {
        callback(unauthenticated());
        return;
      }
      const request = call.request as Request & TaskRequest;
      Promise.resolve()
        .then(() => handler(request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => callback(statusOf(error, request.task_id?.id)),
        );
    };
  }

  async function startTask(request: StartTaskRequest): Promise<StartTaskResponse> {
    const binary = await lookPath(request.binary ?? '', searchPath);
    const spec: TaskSpec = {
      command: [binary, ...(request.args ?? [])],
      // Exactly the environment that was sent, as the original did.
      env: environmentOf(request),
      inheritEnv: false,
      kill: { signal: 'SIGTERM', graceMs },
    };
    if (request.working_dir !== undefined && request.working_dir !== '') {
      spec.cwd = request.working_dir;
    }
    // A failed create leaves nothing registered, in memory or in the store.
    const task = await supervisor.create(spec, { id: randomUUID() });
    logger.info({ taskId: task.id, binary, pid: task.pid }, 'task started');
    return { task_id: { id: task.id } };
  }

  function queryTask(request: TaskRequest): QueryTaskResponse {
    return taskStatus(supervisor.get(taskIdOf(request)));
  }

  function signalTask(request: TaskRequest): Record<string, never> {
    const id = taskIdOf(request);
    supervisor.get(id);
    // stop() signals at once and resolves when the task has ended; the call
    // does not wait for that (the client polls QueryTask).
    supervisor.stop(id, { signal: 'SIGTERM', graceMs }).catch((error: unknown) => {
      logger.warn({ err: error, taskId: id }, 'stopping task failed');
    });
    return {};
  }

  async function fetchLogs(request: TaskRequest): Promise<FetchLogsResponse> {
    const log = supervisor.output(taskIdOf(request));
    const limit = FETCH_LOGS_LIMIT_BYTES;
    const stdoutBytes = log.bytes('stdout');
    const stderrBytes = log.bytes('stderr');
    // Each stream gets half the limit, and what the other does not use.
    const stderrBudget = Math.min(stderrBytes, Math.max(limit / 2, limit - stdoutBytes));
    const [stdout, stderr] = await Promise.all([
      readTail(log, 'stdout', limit - stderrBudget),
      readTail(log, 'stderr', stderrBudget),
    ]);
    return { stdout, stderr };
  }

  function followLogs(call: grpc.ServerWritableStream<TaskRequest, LogChunk>): void {
    const fail = (status: Partial<grpc.StatusObject>) => call.emit('error', status);
    if (!authorized(call.metadata)) {
      fail(unauthenticated());
      return;
    }
    const request = call.request;
    let log: OutputLog;
    try {
      log = supervisor.output(taskIdOf(request));
    } catch (error) {
      fail(statusOf(error, request.task_id?.id));
      return;
    }
    const abort = new AbortController();
    call.once('cancelled', () => abort.abort());
    call.once('close', () => abort.abort());
    void (async () => {
      for await (const event of log.read({ follow: true, signal: abort.signal })) {
        if (event.type !== 'frame') continue;
        const chunk: LogChunk =
          event.stream === 'stdout' ? { stdout: event.data } : { stderr: event.data };
        if (!call.write(chunk) && !abort.signal.aborted) {
          await once(call, 'drain', { signal: abort.signal }).catch(() => undefined);
        }
        if (abort.signal.aborted) return;
      }
      if (!abort.signal.aborted) call.end();
    })().catch((error: unknown) => {
      if (!abort.signal.aborted) fail(statusOf(error, request.task_id?.id));
    });
  }

  return {
    StartTask: unary(startTask),
    QueryTask: unary(queryTask),
    SignalTask: unary(signalTask),
    FetchLogs: unary(fetchLogs),
    FollowLogs: followLogs,
  };
}
