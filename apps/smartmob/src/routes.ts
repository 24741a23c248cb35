/**
 * The smartmob-agent HTTP dialect: `GET /`, `GET /list-processes`,
 * `POST /create-process`, `GET /process-status/:slug`,
 * `POST /delete-process/:slug` and the WebSocket `GET /attach-console/:slug`,
 * on the shared overthere fastify server (limits, `{code, message}` errors,
 * shutdown signal). URLs in answers follow the request's host and scheme.
 */
import websocket from '@fastify/websocket';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import WebSocket from 'ws';
import { OverthereError, type Logger, type Supervisor, type TaskInfo } from '@overthere/core';
import { requireBearerToken, shutdownSignal } from '@overthere/transport-http';
import { LineSplitter } from './console-lines.js';
import { DownloadError, parseSourceUrl } from './download.js';
import type { CreateProcessRequest, ProcessManager, ProcessView } from './processes.js';

/** Options for {@link smartmobRoutes}. */
export interface SmartmobRoutesOptions {
  processes: ProcessManager;
  supervisor: Supervisor;
  /** When set, every request needs `Authorization: Bearer <token>` (or `?access_token=`). */
  token: string | undefined;
  logger: Logger;
  /** Largest WebSocket message taken from a client (they have nothing to say). */
  maxMessageBytes?: number;
}

interface SlugRequest {
  Params: { slug: string };
}

/** Bytes queued on a console socket past which the reader waits for it to drain. */
const HIGH_WATER_BYTES = 256 * 1024;

const CREATE_FIELDS = new Set(['app', 'node', 'process_type', 'source_url', 'env']);

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

/** Parse a body as JSON whatever its Content-Type (the original's clients send none). */
function jsonBody(body: unknown): unknown {
  const buffer = body as Buffer | undefined;
  if (buffer === undefined || buffer.length === 0) return undefined;
  try {
    return JSON.parse(buffer.toString('utf8')) as unknown;
  } catch {
    invalid('the body must be JSON');
  }
}

/**
 * Check a create request: an object with the four strings, `env` optional
 * (string to string), nothing else.
 *
 * @throws OverthereError `INVALID_ARGUMENT` naming the field.
 */
export function parseCreateRequest(body: unknown): CreateProcessRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    invalid('the body must be a JSON object {app, node, process_type, source_url, env?}');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!CREATE_FIELDS.has(key)) invalid(`unknown field ${JSON.stringify(key)}`);
  }
  const text = (name: string): string => {
    const value = fields[name];
    if (value === undefined) invalid(`${name} is required`);
    if (typeof value !== 'string') invalid(`${name} must be a string`);
    if (value === '') invalid(`${name} must not be empty`);
    return value;
  };
  const request: CreateProcessRequest = {
    app: text('app'),
    node: text('node'),
    processType: text('process_type'),
    sourceUrl: text('source_url'),
    env: {},
  };
  try {
    parseSourceUrl(request.sourceUrl);
  } catch (error) {
    if (error instanceof DownloadError) invalid(error.message);
    throw error;
  }
  const env = fields.env;
  if (env !== undefined) {
    if (typeof env !== 'object' || env === null || Array.isArray(env)) {
      invalid('env must be an object of strings');
    }
    for (const [name, value] of Object.entries(env as Record<string, unknown>)) {
      if (typeof value !== 'string') invalid(`env.${name} must be a string`);
      if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
        invalid(`env.${name} is not a valid environment variable`);
      }
      request.env[name] = value;
    }
  }
  return request;
}

/** Base URLs as the client reached us. */
function origins(request: FastifyRequest): { http: string; ws: string } {
  const host = request.host;
  const secure = request.protocol === 'https';
  return {
    http: `${secure ? 'https' : 'http'}://${host}`,
    ws: `${secure ? 'wss' : 'ws'}://${host}`,
  };
}

/** The process status document: the original's keys, then what we add. */
export function statusDocument(
  view: ProcessView,
  base: { http: string; ws: string },
): Record<string, unknown> {
  const { record, task } = view;
  const slug = encodeURIComponent(record.slug);
  const details = `${base.http}/process-status/${slug}`;
  const document: Record<string, unknown> = {
    app: record.app,
    slug: record.slug,
    attach: `${base.ws}/attach-console/${slug}`,
    details,
    delete: `${base.http}/delete-process/${slug}`,
    state: record.state,
    status: details,
    node: record.node,
    process_type: record.processType,
  };
  if (record.error !== undefined) document.error = record.error;
  if (task !== undefined) addTask(document, task);
  return document;
}

function addTask(document: Record<string, unknown>, task: TaskInfo): void {
  if (task.pid !== undefined) document.pid = task.pid;
  document.restarts = task.restarts;
  if (task.exit !== undefined) {
    document.exit = { code: task.exit.code, signal: task.exit.signal };
  }
  if (task.state === 'backoff' && task.nextRestartAt !== undefined) {
    document.next_restart_at = task.nextRestartAt;
  }
}

function parseCursor(request: FastifyRequest): number {
  const raw = (request.query as Record<string, unknown> | undefined)?.cursor;
  if (raw === undefined) return 0;
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) {
    invalid('cursor must be a number of lines (0 or more)');
  }
  return Number(raw);
}

/** Add the smartmob routes to a server made by `createHttpServer`. */
export async function smartmobRoutes(
  server: FastifyInstance,
  options: SmartmobRoutesOptions,
): Promise<void> {
  const { processes, supervisor, token, logger } = options;
  const shutdown = shutdownSignal(server);

  await server.register(websocket, {
    options: { maxPayload: options.maxMessageBytes ?? 64 * 1024 },
  });

  server.removeAllContentTypeParsers();
  server.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });

  requireBearerToken(server, { token, realm: 'smartmob-agent', acceptsQueryToken: () => true });

  function find(slug: string): ProcessView {
    const view = processes.get(slug);
    if (view === undefined) {
      throw new OverthereError('NOT_FOUND', `no such process: ${slug}`, { details: { slug } });
    }
    return view;
  }

  server.get('/', (request) => {
    const base = origins(request);
    return { create: `${base.http}/create-process`, list: `${base.http}/list-processes` };
  });

  server.get('/list-processes', (request) => {
    const base = origins(request);
    return { processes: processes.list().map((view) => statusDocument(view, base)) };
  });

  server.post('/create-process', async (request, reply) => {
    const record = await processes.create(parseCreateRequest(jsonBody(request.body)));
    const document = statusDocument({ record, task: undefined }, origins(request));
    return reply.code(201).header('location', document.details).send(document);
  });

  server.get<SlugRequest>('/process-status/:slug', (request) =>
    statusDocument(find(request.params.slug), origins(request)),
  );

  server.post<SlugRequest>('/delete-process/:slug', async (request) => {
    // "For the moment, this document is always empty": anything but JSON is refused.
    const body = jsonBody(request.body);
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
      invalid('the delete request must be a JSON object (empty)');
    }
    if (!(await processes.delete(request.params.slug))) find(request.params.slug);
    return {};
  });

  server.route<SlugRequest>({
    method: 'GET',
    url: '/attach-console/:slug',
    exposeHeadRoute: false,
    // Checked before the upgrade: an unknown slug or bad cursor is a plain 404/400.
    preValidation: (request, _reply, done) => {
      try {
        parseCursor(request);
        find(request.params.slug);
        done();
      } catch (error) {
        done(error as Error);
      }
    },
    handler: (_request, reply) => {
      void reply
        .code(426)
        .header('upgrade', 'websocket')
        .send({ code: 'INVALID_ARGUMENT', message: 'attach-console needs a WebSocket upgrade' });
    },
    wsHandler: (socket, request) => {
      void serveConsole(socket, request.socket, request.params.slug, parseCursor(request));
    },
  });

  /** One console session: retained lines from `cursor`, then live ones, until the process goes. */
  async function serveConsole(
    socket: WebSocket,
    connection: Socket,
    slug: string,
    cursor: number,
  ): Promise<void> {
    const controller = new AbortController();
    const { signal } = controller;
    let closed = false;
    const close = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      controller.abort();
      socket.close(code, reason);
    };
    const onShutdown = () => close(1001, 'agent shutting down');
    shutdown.addEventListener('abort', onShutdown, { once: true });
    socket.once('close', () => {
      closed = true;
      controller.abort();
      shutdown.removeEventListener('abort', onShutdown);
    });
    // Clients have nothing to say; what they send is dropped.
    socket.on('message', () => undefined);

    const send = (text: string): Promise<void> | undefined => {
      if (socket.readyState !== WebSocket.OPEN) return undefined;
      if (socket.bufferedAmount < HIGH_WATER_BYTES) {
        socket.send(text);
        return undefined;
      }
      return new Promise((resolve) => {
        const onAbort = () => resolve();
        signal.addEventListener('abort', onAbort, { once: true });
        socket.send(text, () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    };

    try {
      const start = await processes.consoleStart(slug, cursor, signal);
      if (start === undefined) {
        const state = processes.get(slug)?.record.state;
        close(1000, state === undefined ? 'process deleted' : state);
        return;
      }
      let line = start.line;
      let splitter = new LineSplitter(start.offset);
      for await (const event of supervisor.output(start.taskId).read({
        streams: ['stdout'],
        fromOffset: start.offset,
        follow: true,
        signal,
      })) {
        if (event.type !== 'frame') continue;
        if (event.offset !== splitter.nextOffset) splitter = new LineSplitter(event.offset);
        // The lines of one output chunk leave in as few TCP writes as the socket allows.
        connection.cork();
        try {
          for (const complete of splitter.push(event.data)) {
            if (line >= cursor) {
              const waiting = send(complete.text.toString('utf8'));
              if (waiting) {
                connection.uncork();
                await waiting;
                connection.cork();
              }
            }
            line += 1;
          }
        } finally {
          connection.uncork();
        }
      }
      const last = splitter.flush();
      if (last !== undefined && line >= cursor && !signal.aborted) {
        await send(last.text.toString('utf8'));
      }
      close(1000, 'process deleted');
    } catch (error) {
      if (signal.aborted) return;
      if (OverthereError.hasCode(error, 'NOT_FOUND')) {
        close(1000, 'process deleted');
        return;
      }
      logger.warn({ err: error, slug }, 'console stream failed');
      close(1011, 'console stream failed');
    }
  }
}
