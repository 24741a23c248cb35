/**
 * `createHttpClient`: the `/v1` protocol from the other side, with global
 * `fetch` for JSON routes and NDJSON output (reconnecting with the last cursor
 * when a connection drops), and `ws` for WebSocket attach.
 */
import WebSocket, { type ClientOptions, type RawData } from 'ws';
import {
  HTTP_STATUS_BY_CODE,
  OverthereError,
  isErrorCode,
  isFinalState,
  type CreateTaskOptions,
  type ErrorCode,
  type KillPolicy,
  type OutputStream,
  type RuntimeCapabilities,
  type SupervisorCapacity,
  type TaskFilter,
  type TaskInfo,
  type TaskSpec,
  type TaskState,
  type TtySize,
} from '@overthere/core';
import { decodeAttachFrame, parseOutputEvent, type HttpOutputEvent } from './wire-format.js';

/** Options for {@link createHttpClient}. */
export interface HttpClientOptions {
  /** Where the agent is, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  baseUrl: string | URL;
  /** Bearer token. */
  token?: string;
  /** The fetch to use. Default the global `fetch` (Node ≥ 20). */
  fetch?: typeof fetch;
  /** Options for WebSocket connections of `attach` (e.g. `ca` for a private CA). */
  webSocketOptions?: ClientOptions;
  /**
   * How many reconnects in a row an output stream tries, without receiving
   * anything in between, before it fails with `UNAVAILABLE`. Default 5.
   */
  maxReconnects?: number;
  /** Delay before the first reconnect, doubled for each further one (at most 5 s). Default 100. */
  reconnectDelayMs?: number;
}

/** Options for {@link HttpClient.output}. */
export interface HttpOutputOptions {
  /** First seq to read. Default: the oldest retained. */
  cursor?: number;
  /** First byte offset to read; needs a single `stream` and no `cursor`. */
  offset?: number;
  /** Default `both`. */
  stream?: OutputStream | 'both';
  /** Keep reading until the task is final. Default false. */
  follow?: boolean;
  /** Stop reading (the iteration ends without an error). */
  signal?: AbortSignal;
}

/** Options for {@link HttpClient.attach}. */
export interface HttpAttachOptions {
  /** First seq to replay. Default: the oldest retained. */
  cursor?: number;
  /** Default `both`. */
  stream?: OutputStream | 'both';
}

/** What an attach session delivers. */
export type HttpAttachEvent =
  | { type: 'frame'; seq: number; stream: OutputStream; data: Buffer }
  | { type: 'gap'; fromSeq: number; toSeq: number }
  | { type: 'state'; state: TaskState }
  | { type: 'exit'; task: TaskInfo }
  /** The server refused a message of ours; the session goes on. */
  | { type: 'error'; code: ErrorCode; message: string };

/**
 * A WebSocket attach session. Iterate it for output and control events (one
 * consumer); it ends after `exit` (close 1000), or throws `UNAVAILABLE` when the
 * connection ends otherwise (e.g. 1001 when the server shuts down).
 */
export interface HttpAttachment extends AsyncIterable<HttpAttachEvent> {
  /** Send bytes to the task's stdin. Resolves once handed to the socket. */
  writeStdin(data: Uint8Array | string): Promise<void>;
  /** Close the task's stdin (EOF), after everything written before. */
  closeStdin(): Promise<void>;
  /** Resize the task's TTY. */
  resize(size: TtySize): Promise<void>;
  /** Signal the task's process group. */
  signal(signal: string): Promise<void>;
  /** Close the session (code 1000). The task goes on. */
  close(): void;
  /** Settles with the close code and reason once the connection is closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** The agent's runtimes, from `GET /v1/runtime`. */
export interface RemoteRuntimeInfo {
  id: string;
  capabilities: RuntimeCapabilities;
  runtimes: { id: string; capabilities: RuntimeCapabilities }[];
}

/** A client of the `/v1` protocol. Methods mirror the `Supervisor`; errors are `OverthereError`s. */
export interface HttpClient {
  /** The base URL, without a trailing slash. */
  readonly baseUrl: string;
  /** Start a task (`POST /v1/tasks`). */
  create(spec: TaskSpec, options?: CreateTaskOptions): Promise<TaskInfo>;
  /** A snapshot of the task. */
  get(id: string): Promise<TaskInfo>;
  /** Matching tasks, oldest first. */
  list(filter?: TaskFilter): Promise<TaskInfo[]>;
  /** Resolves with the task once it is final (long-polls as long as it takes). */
  wait(id: string, options?: { signal?: AbortSignal }): Promise<TaskInfo>;
  /** Signal the task's process group. */
  signal(id: string, signal: string): Promise<void>;
  /**
   * Stop for good. Resolves with the final task, or with `{ wait: false }` as
   * soon as the stop has begun.
   */
  stop(id: string, policy?: KillPolicy, options?: { wait?: boolean }): Promise<TaskInfo>;
  /** Stop if live, then forget the task and its output. */
  remove(id: string): Promise<void>;
  /** Write to the task's stdin. */
  writeStdin(id: string, data: Uint8Array | string): Promise<void>;
  /** Close the task's stdin (EOF). */
  closeStdin(id: string): Promise<void>;
  /** Resize the task's TTY. */
  resize(id: string, size: TtySize): Promise<void>;
  /** What the agent has left. */
  capacity(): Promise<SupervisorCapacity>;
  /** The agent's runtimes and their capabilities. */
  runtime(): Promise<RemoteRuntimeInfo>;
  /**
   * The task's output as NDJSON events, ending with `end`. When the connection
   * drops before `end`, it reconnects from the last seq it delivered: nothing
   * is missed or repeated.
   */
  output(id: string, options?: HttpOutputOptions): AsyncIterableIterator<HttpOutputEvent>;
  /** Open a WebSocket attach session. Rejects with the server's error (e.g. `NOT_FOUND`). */
  attach(id: string, options?: HttpAttachOptions): Promise<HttpAttachment>;
}

const CODE_BY_STATUS = new Map<number, ErrorCode>(
  Object.entries(HTTP_STATUS_BY_CODE).map(([code, status]) => [status, code as ErrorCode]),
);

function codeForStatus(status: number): ErrorCode {
  if (status === 405 || status === 426) return 'INVALID_ARGUMENT';
  if (status === 502) return 'UNAVAILABLE';
  return CODE_BY_STATUS.get(status) ?? (status >= 500 ? 'UNAVAILABLE' : 'INTERNAL');
}

/** The error a non-2xx response carries. */
function errorFromBody(status: number, text: string): OverthereError {
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (isErrorCode(body.code)) return OverthereError.fromJSON(body);
  } catch {
    // not JSON: fall through
  }
  return new OverthereError(
    codeForStatus(status),
    `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`,
  );
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Create a client for an agent serving the `/v1` API. */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const baseUrl = String(options.baseUrl).replace(/\/+$/, '');
  const doFetch = options.fetch ?? globalThis.fetch;
  const maxReconnects = options.maxReconnects ?? 5;
  const reconnectDelayMs = options.reconnectDelayMs ?? 100;
  const authorization: Record<string, string> =
    options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
  const taskPath = (id: string, rest = '') => `/v1/tasks/${encodeURIComponent(id)}${rest}`;

  function url(path: string, query?: URLSearchParams): string {
    const search = query?.toString() ?? '';
    return `${baseUrl}${path}${search === '' ? '' : `?${search}`}`;
  }

  async function send(
    method: string,
    path: string,
    init: { json?: unknown; body?: Uint8Array; query?: URLSearchParams; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...authorization };
    let body: string | Uint8Array | undefined;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (init.body !== undefined) {
      headers['content-type'] = 'application/octet-stream';
      body = init.body;
    }
    let response: Response;
    try {
      response = await doFetch(url(path, init.query), {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      const reason =
        error instanceof Error
          ? ((error.cause as Error | undefined)?.message ?? error.message)
          : String(error);
      throw new OverthereError('UNAVAILABLE', `cannot reach ${baseUrl}: ${reason}`, {
        cause: error,
      });
    }
    if (!response.ok) throw errorFromBody(response.status, await response.text());
    return response;
  }

  async function json<T>(
    method: string,
    path: string,
    init?: Parameters<typeof send>[2],
  ): Promise<T> {
    const response = await send(method, path, init);
    return (await response.json()) as T;
  }

  async function empty(method: string, path: string, init?: Parameters<typeof send>[2]) {
    const response = await send(method, path, init);
    await response.arrayBuffer();
  }

  async function* output(
    id: string,
    outputOptions: HttpOutputOptions = {},
  ): AsyncGenerator<HttpOutputEvent, void, undefined> {
    const userSignal = outputOptions.signal;
    let cursor = outputOptions.cursor;
    let offset = outputOptions.offset;
    let failures = 0;
    while (userSignal?.aborted !== true) {
      const query = new URLSearchParams({ format: 'ndjson' });
      if (outputOptions.stream !== undefined) query.set('stream', outputOptions.stream);
      if (outputOptions.follow) query.set('follow', '1');
      if (cursor !== undefined) query.set('cursor', String(cursor));
      else if (offset !== undefined) query.set('offset', String(offset));
      const controller = new AbortController();
      const onAbort = (): void => controller.abort();
      userSignal?.addEventListener('abort', onAbort, { once: true });
      try {
        let response: Response;
        try {
          response = await send('GET', taskPath(id, '/output'), {
            query,
            signal: controller.signal,
          });
        } catch (error) {
          if (userSignal?.aborted) return;
          const retryable =
            OverthereError.hasCode(error, 'UNAVAILABLE') ||
            OverthereError.hasCode(error, 'TIMEOUT');
          if (!retryable || failures >= maxReconnects) throw error;
          await delay(Math.min(reconnectDelayMs * 2 ** failures, 5000), userSignal);
          failures += 1;
          continue;
        }
        if (response.body === null) throw new OverthereError('INTERNAL', 'output has no body');
        let pending = Buffer.alloc(0);
        try {
          for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
            let newline = pending.indexOf(0x0a);
            let start = 0;
            while (newline !== -1) {
              const line = pending.toString('utf8', start, newline);
              start = newline + 1;
              newline = pending.indexOf(0x0a, start);
              if (line.trim() === '') continue;
              let event: HttpOutputEvent;
              try {
                event = parseOutputEvent(line);
              } catch (error) {
                throw new OverthereError('INTERNAL', `bad output stream: ${String(error)}`, {
                  cause: error,
                });
              }
              failures = 0;
              if (event.type === 'frame') {
                cursor = event.seq + 1;
                offset = undefined;
              } else if (event.type === 'gap') {
                cursor = event.toSeq;
                offset = undefined;
              }
              yield event;
              if (event.type === 'end') return;
            }
            pending = pending.subarray(start);
          }
        } catch (error) {
          if (userSignal?.aborted) return;
          if (OverthereError.is(error)) throw error;
          // The connection dropped: reconnect from the cursor below.
        }
        if (userSignal?.aborted) return;
        if (failures >= maxReconnects) {
          throw new OverthereError(
            'UNAVAILABLE',
            `output of ${id} ended ${failures + 1} times without its end`,
          );
        }
        await delay(
          failures === 0 ? 0 : Math.min(reconnectDelayMs * 2 ** failures, 5000),
          userSignal,
        );
        failures += 1;
      } finally {
        userSignal?.removeEventListener('abort', onAbort);
        controller.abort();
      }
    }
  }

  async function attach(
    id: string,
    attachOptions: HttpAttachOptions = {},
  ): Promise<HttpAttachment> {
    const query = new URLSearchParams();
    if (attachOptions.stream !== undefined) query.set('stream', attachOptions.stream);
    if (attachOptions.cursor !== undefined) query.set('cursor', String(attachOptions.cursor));
    const address = url(taskPath(id, '/attach'), query).replace(/^http/, 'ws');
    const socket = new WebSocket(address, {
      ...options.webSocketOptions,
      headers: { ...options.webSocketOptions?.headers, ...authorization },
    });
    // Listen before 'open': the first messages may arrive in the same packet as the upgrade.
    const attachment = createAttachment(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('unexpected-response', (request, response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('end', () => {
          reject(errorFromBody(response.statusCode ?? 500, Buffer.concat(chunks).toString()));
          request.destroy();
        });
        response.once('error', () => {
          reject(errorFromBody(response.statusCode ?? 500, ''));
          request.destroy();
        });
      });
      socket.once('error', (error) => {
        reject(
          new OverthereError('UNAVAILABLE', `cannot attach at ${baseUrl}: ${error.message}`, {
            cause: error,
          }),
        );
      });
    });
    return attachment;
  }

  return {
    baseUrl,
    create: (spec, createOptions = {}) =>
      json<TaskInfo>('POST', '/v1/tasks', { json: { ...spec, ...createOptions } }),
    get: (id) => json<TaskInfo>('GET', taskPath(id)),
    async list(filter = {}) {
      const query = new URLSearchParams();
      if (filter.state !== undefined) {
        const states = typeof filter.state === 'string' ? [filter.state] : filter.state;
        query.set('state', states.join(','));
      }
      for (const [key, value] of Object.entries(filter.labels ?? {})) {
        query.append('label', `${key}=${value}`);
      }
      const body = await json<{ tasks: TaskInfo[] }>('GET', '/v1/tasks', { query });
      return body.tasks;
    },
    async wait(id, waitOptions = {}) {
      for (;;) {
        const task = await json<TaskInfo>('GET', taskPath(id, '/wait'), {
          query: new URLSearchParams({ timeoutMs: '30000' }),
          ...(waitOptions.signal === undefined ? {} : { signal: waitOptions.signal }),
        });
        if (isFinalState(task.state)) return task;
      }
    },
    signal: (id, signal) => empty('POST', taskPath(id, '/signal'), { json: { signal } }),
    stop: (id, policy = {}, stopOptions = {}) =>
      json<TaskInfo>('POST', taskPath(id, '/stop'), {
        json: { ...policy, wait: stopOptions.wait ?? true },
      }),
    remove: (id) => empty('DELETE', taskPath(id)),
    writeStdin: (id, data) =>
      empty('POST', taskPath(id, '/stdin'), {
        body: typeof data === 'string' ? Buffer.from(data) : data,
      }),
    closeStdin: (id) =>
      empty('POST', taskPath(id, '/stdin'), {
        query: new URLSearchParams({ eof: '1' }),
        body: new Uint8Array(0),
      }),
    resize: (id, size) =>
      empty('POST', taskPath(id, '/resize'), { json: { cols: size.cols, rows: size.rows } }),
    capacity: () => json<SupervisorCapacity>('GET', '/v1/capacity'),
    runtime: () => json<RemoteRuntimeInfo>('GET', '/v1/runtime'),
    output: (id, outputOptions) => output(id, outputOptions),
    attach,
  };
}

/** Messages waiting for the consumer before the socket is paused. */
const ATTACH_QUEUE_LIMIT = 256;

function createAttachment(socket: WebSocket): HttpAttachment {
  const queue: HttpAttachEvent[] = [];
  let wake: (() => void) | undefined;
  let closedByUs = false;
  let closeInfo: { code: number; reason: string } | undefined;
  let paused = false;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.once('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      resolve(closeInfo);
      wake?.();
    });
  });
  socket.on('error', () => undefined); // reported through 'close'

  socket.on('message', (data: RawData, isBinary) => {
    const bytes = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    if (isBinary) {
      const frame = decodeAttachFrame(bytes);
      if (frame) queue.push({ type: 'frame', ...frame });
    } else {
      try {
        queue.push(JSON.parse(bytes.toString('utf8')) as HttpAttachEvent);
      } catch {
        // not ours to interpret: ignore
      }
    }
    if (queue.length >= ATTACH_QUEUE_LIMIT && !paused) {
      paused = true;
      socket.pause();
    }
    wake?.();
  });

  const sendJson = (message: Record<string, unknown>) => sendRaw(JSON.stringify(message), false);
  function sendRaw(data: string | Uint8Array, binary: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      if (socket.readyState !== WebSocket.OPEN) {
        reject(new OverthereError('UNAVAILABLE', 'the attach session is closed'));
        return;
      }
      socket.send(data, { binary }, (error) =>
        error
          ? reject(new OverthereError('UNAVAILABLE', error.message, { cause: error }))
          : resolve(),
      );
    });
  }

  async function* events(): AsyncGenerator<HttpAttachEvent, void, undefined> {
    try {
      for (;;) {
        const event = queue.shift();
        if (event !== undefined) {
          if (paused && queue.length < ATTACH_QUEUE_LIMIT / 2) {
            paused = false;
            socket.resume();
          }
          yield event;
          continue;
        }
        if (closeInfo !== undefined) {
          if (closeInfo.code === 1000 || closedByUs) return;
          throw new OverthereError(
            'UNAVAILABLE',
            `attach connection closed (${closeInfo.code}${closeInfo.reason ? ` ${closeInfo.reason}` : ''})`,
          );
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      if (paused) socket.resume();
    }
  }

  return {
    [Symbol.asyncIterator]: () => events(),
    writeStdin: (data) => sendRaw(typeof data === 'string' ? Buffer.from(data) : data, true),
    closeStdin: () => sendJson({ type: 'eof' }),
    resize: (size) => sendJson({ type: 'resize', cols: size.cols, rows: size.rows }),
    signal: (signal) => sendJson({ type: 'signal', signal }),
    close() {
      closedByUs = true;
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
        socket.close(1000);
      }
    },
    closed,
  };
}
