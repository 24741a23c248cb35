/**
 * `GET /v1/tasks/:id/output`: a task's output as raw bytes, NDJSON or SSE,
 * replayed from a cursor and optionally followed until the task is final.
 *
 * The log is read with its async iterator and written to the socket only as
 * fast as the socket drains, so a slow reader costs at most about
 * {@link WRITE_AHEAD_BYTES} (plus one frame) of memory, not the whole log. A client that goes away aborts the read; the task never notices.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import {
  OverthereError,
  type OutputEvent,
  type OutputStream,
  type Supervisor,
  type TaskInfo,
  finalSnapshot,
  knownTask,
} from '@overthere/core';
import type { ApiMetrics } from './metrics.js';
import {
  booleanParameter,
  integerParameter,
  queryParameters,
  streamsParameter,
} from './request-parsing.js';
import { outputEventJson, sseMessage } from './wire-format.js';

/** The three output formats. */
export type OutputFormat = 'raw' | 'ndjson' | 'sse';

const CONTENT_TYPES: Readonly<Record<OutputFormat, string>> = {
  raw: 'application/octet-stream',
  ndjson: 'application/x-ndjson',
  sse: 'text/event-stream; charset=utf-8',
};

/**
 * Bytes a response may buffer beyond what the socket took before the route waits
 * for 'drain'. Waiting on every frame past the socket's 16 KiB high-water mark
 * costs a promise and three listeners per 64 KiB frame and leaves the socket
 * idle between frames; a budget keeps several frames in flight.
 */
const WRITE_AHEAD_BYTES = 1024 * 1024;

/** What the output route needs from the API. */
export interface OutputRouteContext {
  supervisor: Supervisor;
  metrics: ApiMetrics;
  /** Aborted when the server shuts down. */
  shutdown: AbortSignal;
  /** Interval of SSE keepalive comments. */
  keepaliveMs: number;
}

/** A validated output request. */
export interface OutputRequest {
  streams: readonly OutputStream[];
  fromSeq: number | undefined;
  fromOffset: number | undefined;
  follow: boolean;
  format: OutputFormat;
}

function chooseFormat(format: string | string[] | undefined, accept: string | undefined) {
  if (format === 'raw' || format === 'ndjson' || format === 'sse') return format;
  if (format !== undefined) {
    throw new OverthereError('INVALID_ARGUMENT', 'format must be raw, ndjson or sse');
  }
  const accepted = (accept ?? '').toLowerCase();
  if (accepted.includes('application/x-ndjson')) return 'ndjson';
  if (accepted.includes('text/event-stream')) return 'sse';
  return 'raw';
}

/** Parse and check the query (and `Last-Event-ID`) of an output request. */
export function parseOutputRequest(request: FastifyRequest): OutputRequest {
  const query = queryParameters(request, {
    stream: 'single',
    cursor: 'single',
    offset: 'single',
    follow: 'single',
    format: 'single',
  });
  const streams = streamsParameter(query.stream);
  let fromSeq = integerParameter('cursor', query.cursor);
  const fromOffset = integerParameter('offset', query.offset);
  const format = chooseFormat(query.format, request.headers.accept);
  // A reconnecting EventSource resumes after the last id it saw, whatever the URL says.
  const lastEventId = request.headers['last-event-id'];
  if (format === 'sse' && typeof lastEventId === 'string' && lastEventId.trim() !== '') {
    const last = integerParameter('Last-Event-ID', lastEventId.trim());
    if (last !== undefined) fromSeq = last + 1;
  }
  if (fromOffset !== undefined && (streams.length !== 1 || fromSeq !== undefined)) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      'offset needs a single stream (stdout or stderr) and no cursor',
    );
  }
  return {
    streams,
    fromSeq,
    fromOffset,
    follow: booleanParameter('follow', query.follow, false),
    format,
  };
}

/** Resolves when `response` can take more, or it closed, or `signal` aborted. */
function drained(response: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      response.off('drain', done);
      response.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    response.once('drain', done);
    response.once('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Serve one output request. Errors in the request itself (unknown task, bad
 * query) are thrown before anything is sent, so they get a normal error response.
 */
export async function serveOutput(
  request: FastifyRequest<{ Params: { id: string } }>,
  reply: FastifyReply,
  context: OutputRouteContext,
): Promise<void> {
  const { supervisor, metrics } = context;
  const id = request.params.id;
  const parsed = parseOutputRequest(request);
  const log = supervisor.output(id); // NOT_FOUND before any byte is sent
  const controller = new AbortController();
  const { signal } = controller;
  const events = log.read({
    streams: parsed.streams,
    follow: parsed.follow,
    signal,
    ...(parsed.fromSeq === undefined ? {} : { fromSeq: parsed.fromSeq }),
    ...(parsed.fromOffset === undefined ? {} : { fromOffset: parsed.fromOffset }),
  });

  const response = reply.raw;
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPES[parsed.format],
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // Proxies such as nginx must pass frames on as they come.
    'x-accel-buffering': 'no',
  };
  if (parsed.fromOffset === undefined) {
    headers['x-overthere-cursor'] = String(Math.max(parsed.fromSeq ?? log.firstSeq, log.firstSeq));
  }
  let clientGone = false;
  // The response's 'close' (not the request's, which fires once the body is
  // read) tells that the client went away before we ended.
  const onClose = (): void => {
    if (!response.writableFinished) clientGone = true;
    controller.abort();
  };
  const onShutdown = (): void => controller.abort();
  response.once('close', onClose);
  context.shutdown.addEventListener('abort', onShutdown, { once: true });
  if (context.shutdown.aborted) controller.abort();

  reply.hijack();
  response.writeHead(200, headers);
  response.flushHeaders();
  metrics.trackStream('output', 1);

  let keepalive: NodeJS.Timeout | undefined;
  if (parsed.format === 'sse') {
    keepalive = setInterval(() => {
      if (!response.writableEnded) response.write(': ping\n\n');
    }, context.keepaliveMs);
  }

  const countSent = metrics.outputBytes(parsed.format);
  // Frames already in memory arrive in a burst: cork the socket so they leave
  // in as few packets as possible. The socket itself is corked and uncorked
  // (not the response, which lets go of its socket when it ends, and would
  // leave a keep-alive connection corked for good).
  const socket = response.socket;
  let corked = false;
  const uncork = (): void => {
    if (!corked) return;
    corked = false;
    socket?.uncork();
  };
  const write = async (chunk: string | Buffer): Promise<void> => {
    if (!corked && socket) {
      corked = true;
      socket.cork();
      setImmediate(uncork);
    }
    countSent(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length);
    // A false return sets the response's needDrain, so 'drain' comes once the socket empties.
    if (!response.write(chunk) && response.writableLength >= WRITE_AHEAD_BYTES) {
      await drained(response, signal);
    }
  };
  const encode = (event: OutputEvent | { type: 'end'; task: TaskInfo }): string | Buffer => {
    if (parsed.format === 'ndjson') return `${outputEventJson(event)}\n`;
    if (parsed.format === 'sse') return sseMessage(event);
    return event.type === 'frame' ? event.data : Buffer.alloc(0);
  };

  // Raw has no markers: output dropped under a follower (it fell behind
  // retention) must not go missing in silence. The response is cut instead (no
  // last chunk), so the client sees a broken transfer and can resume by offset.
  let cut = false;
  try {
    let first = true;
    for await (const event of events) {
      if (signal.aborted) break;
      if (parsed.format === 'raw' && event.type === 'gap' && !first) {
        request.log.warn(
          { taskId: id, ...event },
          'raw output follower fell behind retention; cut',
        );
        cut = true;
        break;
      }
      first = false;
      if (parsed.format === 'raw' && event.type !== 'frame') continue;
      await write(encode(event));
    }
    if (!signal.aborted && !cut) {
      const task = parsed.follow
        ? await finalSnapshot(supervisor, id, signal)
        : knownTask(supervisor, id);
      if (task !== undefined && !signal.aborted && parsed.format !== 'raw') {
        await write(encode({ type: 'end', task }));
      }
    }
  } catch (error) {
    request.log.warn({ err: error, taskId: id }, 'output stream failed');
  } finally {
    uncork();
    clearInterval(keepalive);
    response.off('close', onClose);
    context.shutdown.removeEventListener('abort', onShutdown);
    metrics.trackStream('output', -1);
    if (clientGone || cut) {
      response.destroy();
    } else if (!response.writableEnded) {
      response.end();
    }
  }
}
