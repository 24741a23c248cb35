/**
 * `GET /v1/tasks/:id/attach` (WebSocket): output as binary messages with a
 * 9-byte header, state changes and the final `exit` as JSON, and stdin, EOF,
 * resize and signals from the client. A malformed client message is answered
 * with an `error` message; the connection stays open.
 */
import type { FastifyRequest } from 'fastify';
import WebSocket, { type RawData } from 'ws';
import {
  OverthereError,
  isFinalState,
  toOverthereError,
  type OutputStream,
  type Supervisor,
  type TaskInfo,
  finalSnapshot,
} from '@overthere/core';
import { validateJson, type JsonSchema } from './json-schema.js';
import type { ApiMetrics } from './metrics.js';
import { integerParameter, queryParameters, streamsParameter } from './request-parsing.js';
import { encodeAttachFrame } from './wire-format.js';

/** Buffered bytes past which the output pump waits for the socket to drain. */
const HIGH_WATER_BYTES = 256 * 1024;
/** Client messages waiting to be applied before the socket stops reading. */
const MAX_PENDING_MESSAGES = 16;

/** What the attach route needs from the API. */
export interface AttachRouteContext {
  supervisor: Supervisor;
  metrics: ApiMetrics;
  /** Aborted when the server shuts down. */
  shutdown: AbortSignal;
}

/** A validated attach request. */
export interface AttachRequest {
  streams: readonly OutputStream[];
  fromSeq: number | undefined;
}

/** Parse and check the query of an attach request (before the upgrade). */
export function parseAttachRequest(request: FastifyRequest): AttachRequest {
  const query = queryParameters(request, { stream: 'single', cursor: 'single' });
  return {
    streams: streamsParameter(query.stream),
    fromSeq: integerParameter('cursor', query.cursor),
  };
}

const CLIENT_MESSAGES: Readonly<Record<string, JsonSchema>> = {
  stdin: {
    type: 'object',
    properties: { type: { type: 'string' }, data: { type: 'string' } },
    required: ['data'],
    additionalProperties: false,
  },
  eof: { type: 'object', properties: { type: { type: 'string' } }, additionalProperties: false },
  resize: {
    type: 'object',
    properties: {
      type: { type: 'string' },
      cols: { type: 'integer', minimum: 1, maximum: 65535 },
      rows: { type: 'integer', minimum: 1, maximum: 65535 },
    },
    required: ['cols', 'rows'],
    additionalProperties: false,
  },
  signal: {
    type: 'object',
    properties: { type: { type: 'string' }, signal: { type: 'string' } },
    required: ['signal'],
    additionalProperties: false,
  },
};

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function rawBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Run one attach session on an upgraded socket. */
export function serveAttach(
  socket: WebSocket,
  request: FastifyRequest<{ Params: { id: string } }>,
  context: AttachRouteContext,
): void {
  const { supervisor, metrics } = context;
  const id = request.params.id;
  const countSent = metrics.outputBytes('websocket');
  const controller = new AbortController();
  const { signal } = controller;
  let closing = false;
  metrics.trackStream('attach', 1);

  const close = (code: number, reason: string): void => {
    if (closing) return;
    closing = true;
    controller.abort();
    socket.close(code, reason);
  };
  const onShutdown = (): void => close(1001, 'server shutting down');
  const onState = (task: TaskInfo): void => {
    if (task.id === id && !isFinalState(task.state)) {
      void sendJson({ type: 'state', state: task.state });
    }
  };
  context.shutdown.addEventListener('abort', onShutdown, { once: true });
  supervisor.on('task-state', onState);
  socket.once('close', () => {
    closing = true;
    controller.abort();
    context.shutdown.removeEventListener('abort', onShutdown);
    supervisor.off('task-state', onState);
    metrics.trackStream('attach', -1);
  });

  /** Send; resolves once it is flushed when the socket is backed up, else at once. */
  function send(data: Buffer | string, binary: boolean): Promise<void> | undefined {
    if (socket.readyState !== WebSocket.OPEN) return undefined;
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    countSent(bytes);
    if (socket.bufferedAmount < HIGH_WATER_BYTES) {
      socket.send(data, { binary });
      return undefined;
    }
    return new Promise((resolve) => {
      const onAbort = (): void => resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      socket.send(data, { binary }, () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  function sendJson(message: Record<string, unknown>): Promise<void> | undefined {
    return send(JSON.stringify(message), false);
  }

  function sendError(error: unknown): void {
    const mapped = toOverthereError(error);
    if (mapped.code === 'INTERNAL') request.log.error({ err: error, taskId: id }, 'attach failed');
    void sendJson({ type: 'error', code: mapped.code, message: mapped.message });
  }

  async function handle(data: RawData, isBinary: boolean): Promise<void> {
    if (isBinary) {
      const bytes = rawBytes(data);
      if (bytes.length > 0) await supervisor.writeStdin(id, bytes);
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(rawBytes(data).toString('utf8'));
    } catch {
      throw new OverthereError('INVALID_ARGUMENT', 'a text message must be JSON');
    }
    const type = (message as { type?: unknown } | null)?.type;
    const schema = typeof type === 'string' ? CLIENT_MESSAGES[type] : undefined;
    if (schema === undefined || typeof message !== 'object' || message === null) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        'type must be one of stdin, eof, resize, signal',
      );
    }
    const problem = validateJson(schema, message, 'message');
    if (problem !== undefined) throw new OverthereError('INVALID_ARGUMENT', problem);
    const fields = message as Record<string, unknown>;
    switch (type) {
      case 'stdin': {
        const text = fields.data as string;
        if (!BASE64.test(text)) {
          throw new OverthereError('INVALID_ARGUMENT', 'message.data must be base64');
        }
        const bytes = Buffer.from(text, 'base64');
        if (bytes.length > 0) await supervisor.writeStdin(id, bytes);
        return;
      }
      case 'eof':
        await supervisor.closeStdin(id);
        return;
      case 'resize':
        await supervisor.resize(id, { cols: fields.cols as number, rows: fields.rows as number });
        return;
      default:
        await supervisor.signal(id, fields.signal as string);
    }
  }

  // Client messages apply in order: stdin written before an EOF sent after it.
  // A client that sends faster than the task reads is paused (TCP pushes back).
  let queue: Promise<void> = Promise.resolve();
  let pending = 0;
  socket.on('message', (data, isBinary) => {
    pending += 1;
    if (pending === MAX_PENDING_MESSAGES) socket.pause();
    queue = queue
      .then(() => handle(data, isBinary))
      .catch(sendError)
      .finally(() => {
        pending -= 1;
        if (pending === MAX_PENDING_MESSAGES / 2 && socket.isPaused) socket.resume();
      });
  });

  async function pump(): Promise<void> {
    const { streams, fromSeq } = parseAttachRequest(request);
    const events = supervisor.output(id).read({
      streams,
      follow: true,
      signal,
      ...(fromSeq === undefined ? {} : { fromSeq }),
    });
    for await (const event of events) {
      if (signal.aborted) return;
      const pending =
        event.type === 'frame'
          ? send(encodeAttachFrame(event.stream, event.seq, event.data), true)
          : sendJson({ type: 'gap', fromSeq: event.fromSeq, toSeq: event.toSeq });
      if (pending) await pending;
    }
    if (signal.aborted) return;
    const task = await finalSnapshot(supervisor, id, signal);
    if (task === undefined || signal.aborted) return;
    await sendJson({ type: 'exit', task });
    close(1000, 'task ended');
  }

  if (context.shutdown.aborted) {
    onShutdown();
    return;
  }
  pump().catch((error: unknown) => {
    sendError(error);
    close(1011, 'output failed');
  });
}
