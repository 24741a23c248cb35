/**
 * The `/v1` API of docs/http-protocol.md as a fastify plugin: tasks, output
 * streams, WebSocket attach, capacity, runtime, OpenAPI, health and metrics.
 */
import websocket from '@fastify/websocket';
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  HTTPMethods,
} from 'fastify';
import {
  OverthereError,
  isFinalState,
  knownTask,
  parseSignal,
  type KillPolicy,
  type Runtime,
  type Supervisor,
  type TaskFilter,
  type TaskInfo,
  type TaskSpec,
  type TaskState,
} from '@overthere/core';
import { serveAttach, parseAttachRequest } from './attach-route.js';
import { requireBearerToken } from './bearer-auth.js';
import { shutdownSignal } from './http-server.js';
import { createApiMetrics, METRICS_CONTENT_TYPE } from './metrics.js';
import { createOpenApiDocument } from './openapi.js';
import { serveOutput } from './output-route.js';
import {
  booleanParameter,
  integerParameter,
  jsonBody,
  queryParameters,
} from './request-parsing.js';
import {
  TASK_STATE_NAMES,
  createTaskRequestSchema,
  resizeRequestSchema,
  signalRequestSchema,
  stopRequestSchema,
} from './wire-schemas.js';

/** Version shown in the OpenAPI document. */
const API_VERSION = '0.1.0';
const DEFAULT_WAIT_MS = 30_000;
const MAX_WAIT_MS = 300_000;
const ALL_METHODS: readonly HTTPMethods[] = [
  'DELETE',
  'GET',
  'HEAD',
  'PATCH',
  'POST',
  'PUT',
  'OPTIONS',
];

/** Options for {@link registerOverthereApi}. */
export interface OverthereApiOptions {
  /** The supervisor whose tasks the API exposes. */
  supervisor: Supervisor;
  /**
   * Bearer token every route but `GET /healthz` requires (compared in constant
   * time). Without one, every route is open: keep such a server on loopback.
   */
  token?: string;
  /**
   * The supervisor's runtimes (the default first), described by
   * `GET /v1/runtime`. Without them that route answers 501 `UNSUPPORTED`.
   */
  runtime?: Runtime | readonly Runtime[];
  /** Interval of the SSE keepalive comment (`: ping`). Default 15 000. */
  keepaliveMs?: number;
  /**
   * Largest WebSocket message accepted from a client, in bytes. Default 1 MiB.
   * Only applies when this plugin registers `@fastify/websocket` itself.
   */
  maxMessageBytes?: number;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

/** Routes that answer without a token. */
const PUBLIC_ROUTES = new Set(['/healthz']);
/** Routes that accept the token as `?access_token=` (browsers' EventSource and WebSocket set no headers). */
const QUERY_TOKEN_ROUTES = new Set(['/v1/tasks/:id/output', '/v1/tasks/:id/attach']);

function parseStates(values: string[] | undefined): TaskState[] | undefined {
  if (values === undefined) return undefined;
  const states = values
    .flatMap((value) => value.split(','))
    .map((state) => state.trim())
    .filter((state) => state !== '');
  for (const state of states) {
    if (!TASK_STATE_NAMES.includes(state)) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `unknown state ${JSON.stringify(state)}; states are ${TASK_STATE_NAMES.join(', ')}`,
      );
    }
  }
  return states as TaskState[];
}

function parseLabels(values: string[] | undefined): Record<string, string> | undefined {
  if (values === undefined) return undefined;
  const labels: Record<string, string> = {};
  for (const value of values) {
    const equals = value.indexOf('=');
    if (equals <= 0) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `label must be key=value, got ${JSON.stringify(value)}`,
      );
    }
    labels[value.slice(0, equals)] = value.slice(equals + 1);
  }
  return labels;
}

function noQuery(request: FastifyRequest): void {
  queryParameters(request, {});
}

/** The `/v1` routes, `/healthz` and `/metrics`, as a fastify plugin (encapsulated). */
export const overthereApi: FastifyPluginAsync<OverthereApiOptions> = async (scope, options) => {
  const { supervisor } = options;
  const token = options.token;
  if (token !== undefined && token.length === 0) {
    throw new OverthereError('INVALID_ARGUMENT', 'token must not be empty');
  }
  const runtimes: readonly Runtime[] =
    options.runtime === undefined
      ? []
      : Array.isArray(options.runtime)
        ? (options.runtime as readonly Runtime[])
        : [options.runtime as Runtime];
  const keepaliveMs = options.keepaliveMs ?? 15_000;
  const shutdown = shutdownSignal(scope);
  const metrics = createApiMetrics(supervisor);
  scope.addHook('onClose', (_instance, done) => {
    metrics.dispose();
    done();
  });

  if (!scope.hasDecorator('websocketServer')) {
    await scope.register(websocket, {
      options: { maxPayload: options.maxMessageBytes ?? 1024 * 1024 },
    });
  }

  // Counted when the response is done, hijacked streams and upgrades included.
  scope.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unknown';
    let counted = false;
    const count = (): void => {
      if (counted) return;
      counted = true;
      const upgraded = (request as { ws?: boolean }).ws === true;
      const status = upgraded && reply.raw.statusCode === 200 ? 101 : reply.raw.statusCode;
      metrics.countRequest(request.method, route, status);
    };
    reply.raw.once('finish', count);
    reply.raw.once('close', count);
    done();
  });

  requireBearerToken(scope, {
    token,
    realm: 'overthere',
    isPublic: (request) => PUBLIC_ROUTES.has(request.routeOptions.url ?? ''),
    acceptsQueryToken: (request) => QUERY_TOKEN_ROUTES.has(request.routeOptions.url ?? ''),
  });

  /** Answer 405 for the methods a path does not have. */
  const allowOnly = (
    url: string,
    methods: readonly HTTPMethods[],
    options: { head?: boolean } = {},
  ): void => {
    const allowed = new Set<HTTPMethods>(methods);
    if (allowed.has('GET') && options.head !== false) allowed.add('HEAD');
    const others = ALL_METHODS.filter((method) => !allowed.has(method));
    scope.route({
      method: others,
      url,
      exposeHeadRoute: false,
      handler: (request, reply) => {
        void reply
          .code(405)
          .header('allow', [...allowed].join(', '))
          .send({
            code: 'INVALID_ARGUMENT',
            message: `method ${request.method} is not allowed on ${url}; use ${[...allowed].join(', ')}`,
          });
      },
    });
  };

  scope.get('/healthz', (request) => {
    noQuery(request);
    return { status: 'ok' };
  });
  allowOnly('/healthz', ['GET']);

  scope.get('/metrics', (request, reply) => {
    noQuery(request);
    return reply.type(METRICS_CONTENT_TYPE).send(metrics.render());
  });
  allowOnly('/metrics', ['GET']);

  const openApi = createOpenApiDocument(API_VERSION);
  scope.get('/v1/openapi.json', (request) => {
    noQuery(request);
    return openApi;
  });
  allowOnly('/v1/openapi.json', ['GET']);

  scope.get('/v1/capacity', (request) => {
    noQuery(request);
    return supervisor.capacity();
  });
  allowOnly('/v1/capacity', ['GET']);

  scope.get('/v1/runtime', (request) => {
    noQuery(request);
    const [first] = runtimes;
    if (first === undefined) {
      throw new OverthereError('UNSUPPORTED', 'this agent does not describe its runtime');
    }
    return {
      id: first.id,
      capabilities: first.capabilities,
      runtimes: runtimes.map((runtime) => ({ id: runtime.id, capabilities: runtime.capabilities })),
    };
  });
  allowOnly('/v1/runtime', ['GET']);

  scope.post('/v1/tasks', async (request, reply) => {
    const query = queryParameters(request, { wait: 'single', timeoutMs: 'single' });
    const wait = booleanParameter('wait', query.wait, false);
    const timeoutMs = integerParameter('timeoutMs', query.timeoutMs, MAX_WAIT_MS);
    if (timeoutMs !== undefined && !wait) {
      throw new OverthereError('INVALID_ARGUMENT', 'timeoutMs needs wait=1');
    }
    const body = jsonBody(request, createTaskRequestSchema);
    const { id, runtime, sandboxId, ...spec } = body as TaskSpec & {
      id?: string;
      runtime?: string;
      sandboxId?: string;
    };
    const task = await supervisor.create(spec, {
      ...(id === undefined ? {} : { id }),
      ...(runtime === undefined ? {} : { runtime }),
      ...(sandboxId === undefined ? {} : { sandboxId }),
    });
    // With wait=1, one request runs a command to its end (a webhook's way):
    // the answer is the task once final, or as it is at the timeout.
    const answer = wait
      ? ((await waitBounded(supervisor.wait(task.id), timeoutMs ?? DEFAULT_WAIT_MS, shutdown)) ??
        knownTask(supervisor, task.id) ??
        task)
      : task;
    return reply
      .code(201)
      .header('location', `/v1/tasks/${encodeURIComponent(task.id)}`)
      .send(answer);
  });

  scope.get('/v1/tasks', (request) => {
    const query = queryParameters(request, { state: 'multiple', label: 'multiple' });
    const filter: TaskFilter = {};
    const states = parseStates(query.state as string[] | undefined);
    const labels = parseLabels(query.label as string[] | undefined);
    if (states !== undefined) filter.state = states;
    if (labels !== undefined) filter.labels = labels;
    return { tasks: supervisor.list(filter) };
  });
  allowOnly('/v1/tasks', ['GET', 'POST']);

  scope.get('/v1/tasks/:id', (request: IdRequest) => {
    noQuery(request);
    return supervisor.get(request.params.id);
  });

  scope.delete('/v1/tasks/:id', async (request: IdRequest, reply) => {
    noQuery(request);
    await supervisor.remove(request.params.id);
    return reply.code(204).send();
  });
  allowOnly('/v1/tasks/:id', ['GET', 'DELETE']);

  scope.get(
    '/v1/tasks/:id/wait',
    { exposeHeadRoute: false },
    async (request: IdRequest, reply: FastifyReply) => {
      const query = queryParameters(request, { timeoutMs: 'single' });
      const timeoutMs =
        integerParameter('timeoutMs', query.timeoutMs, MAX_WAIT_MS) ?? DEFAULT_WAIT_MS;
      const id = request.params.id;
      const now = supervisor.get(id);
      if (isFinalState(now.state)) return now;
      const final = await waitBounded(supervisor.wait(id), timeoutMs, shutdown);
      if (final !== undefined) return final;
      return reply.code(202).send(supervisor.get(id));
    },
  );
  allowOnly('/v1/tasks/:id/wait', ['GET'], { head: false });

  scope.post('/v1/tasks/:id/signal', async (request: IdRequest, reply) => {
    noQuery(request);
    supervisor.get(request.params.id);
    const body = jsonBody(request, signalRequestSchema);
    await supervisor.signal(request.params.id, body.signal as string);
    return reply.code(204).send();
  });
  allowOnly('/v1/tasks/:id/signal', ['POST']);

  scope.post('/v1/tasks/:id/stop', async (request: IdRequest, reply) => {
    noQuery(request);
    const id = request.params.id;
    supervisor.get(id);
    const body = jsonBody(request, stopRequestSchema, { optional: true }) as KillPolicy & {
      wait?: boolean;
    };
    const policy: KillPolicy = {};
    if (body.signal !== undefined) policy.signal = parseSignal(body.signal);
    if (body.graceMs !== undefined) policy.graceMs = body.graceMs;
    const stopped = supervisor.stop(id, policy);
    if (body.wait === true) return reply.code(200).send(await stopped);
    stopped.catch((error: unknown) => request.log.warn({ err: error, taskId: id }, 'stop failed'));
    const task: TaskInfo = supervisor.get(id);
    return reply.code(isFinalState(task.state) ? 200 : 202).send(task);
  });
  allowOnly('/v1/tasks/:id/stop', ['POST']);

  // Stdin takes the body as bytes whatever its content type, so it lives in a
  // scope of its own with a single catch-all parser.
  await scope.register((raw, _options, registered) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
      done(null, body);
    });
    raw.post('/v1/tasks/:id/stdin', async (request: IdRequest, reply) => {
      const query = queryParameters(request, { eof: 'single' });
      const eof = booleanParameter('eof', query.eof, false);
      const id = request.params.id;
      supervisor.get(id);
      const body = request.body;
      const data = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
      if (data.length > 0) await supervisor.writeStdin(id, data);
      if (eof) await supervisor.closeStdin(id);
      return reply.code(204).send();
    });
    registered();
  });
  allowOnly('/v1/tasks/:id/stdin', ['POST']);

  scope.post('/v1/tasks/:id/resize', async (request: IdRequest, reply) => {
    noQuery(request);
    supervisor.get(request.params.id);
    const body = jsonBody(request, resizeRequestSchema);
    await supervisor.resize(request.params.id, {
      cols: body.cols as number,
      rows: body.rows as number,
    });
    return reply.code(204).send();
  });
  allowOnly('/v1/tasks/:id/resize', ['POST']);

  scope.get(
    '/v1/tasks/:id/output',
    { exposeHeadRoute: false },
    async (request: IdRequest, reply: FastifyReply) => {
      await serveOutput(request, reply, { supervisor, metrics, shutdown, keepaliveMs });
    },
  );
  allowOnly('/v1/tasks/:id/output', ['GET'], { head: false });

  scope.route({
    method: 'GET',
    url: '/v1/tasks/:id/attach',
    exposeHeadRoute: false,
    // Checked before the upgrade, so an unknown task or bad query is a plain 404/400.
    preValidation: (request: IdRequest, _reply, done) => {
      try {
        parseAttachRequest(request);
        supervisor.get(request.params.id);
        done();
      } catch (error) {
        done(error as Error);
      }
    },
    handler: (_request, reply) => {
      void reply
        .code(426)
        .header('upgrade', 'websocket')
        .send({ code: 'INVALID_ARGUMENT', message: 'attach needs a WebSocket upgrade' });
    },
    wsHandler: (socket, request: IdRequest) => {
      serveAttach(socket, request, { supervisor, metrics, shutdown });
    },
  });
  allowOnly('/v1/tasks/:id/attach', ['GET'], { head: false });
};

/** Resolves with the task once final, or undefined after `timeoutMs` or on shutdown. */
async function waitBounded(
  final: Promise<TaskInfo>,
  timeoutMs: number,
  shutdown: AbortSignal,
): Promise<TaskInfo | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const bound = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
    onAbort = () => resolve(undefined);
    shutdown.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([final, bound]);
  } finally {
    clearTimeout(timer);
    if (onAbort) shutdown.removeEventListener('abort', onAbort);
  }
}

/**
 * Register the `/v1` API (plus `/healthz` and `/metrics`) on a server made by
 * `createHttpServer`, as docs/http-protocol.md describes it. Resolves once the
 * routes are registered; then call `startHttpServer`.
 *
 * Registers `@fastify/websocket` unless the server has it already (register it
 * yourself, on the root, when other plugins of the server need WebSockets too).
 */
export async function registerOverthereApi(
  server: FastifyInstance,
  options: OverthereApiOptions,
): Promise<void> {
  await server.register(overthereApi, options);
}
