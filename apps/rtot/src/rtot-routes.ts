/**
 * The rtot HTTP dialect as a fastify plugin: routes, status codes and bodies
 * of the original Go server (martini), on top of {@link Jobs}.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { secretsEqual, type ErrorCode, type Logger } from '@overthere/core';
import { httpStatusOf, toHttpError } from '@overthere/transport-http';
import { formatGoDuration } from './go-format.js';
import { renderJob, selectedFields, type JobSource } from './job-json.js';
import type { Jobs } from './jobs.js';
import { VERSION } from './version.js';

/** Options for {@link rtotRoutes}. */
export interface RtotRoutesOptions {
  jobs: Jobs;
  /** What clients must send in `Rtot-Secret`. */
  secret: string;
  /** Largest POST body. */
  bodyLimitBytes: number;
  logger: Logger;
  /** When the server started (`process.hrtime.bigint()`), for the ping uptime. */
  startedAtNanos: bigint;
  /** Called once the response to `DELETE /` has been sent: the server should exit. */
  onDie: () => void;
}

/** The links `GET /` answers with, as the original had them. */
export const ROOT_LINKS = {
  links: { jobs: '/jobs{?state}', 'jobs.byID': '/jobs/{jobs.id}', ping: '/ping' },
} as const;

const METHODS: readonly HTTPMethods[] = [
  'DELETE',
  'GET',
  'HEAD',
  'PATCH',
  'POST',
  'PUT',
  'OPTIONS',
];

/** Short `error` texts for the rtot error bodies `{"error", "message"}`. */
const ERROR_TEXT: Partial<Record<ErrorCode, string>> = {
  INVALID_ARGUMENT: 'bad request',
  NOT_FOUND: 'not found',
  PAYLOAD_TOO_LARGE: 'request body too large',
  UNAVAILABLE: 'unavailable',
  RESOURCE_EXHAUSTED: 'too many jobs',
};

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/**
 * Go's `strconv.Atoi`: optional sign, decimal digits, within int64. Null when
 * it is not such a number (the original answered 400 then).
 */
export function parseJobId(text: string): bigint | null {
  if (!/^[+-]?\d+$/.test(text)) return null;
  const value = BigInt(text);
  if (value > 9_223_372_036_854_775_807n || value < -9_223_372_036_854_775_808n) return null;
  return value;
}

function queryOf(request: FastifyRequest): Record<string, unknown> {
  return (request.query ?? {}) as Record<string, unknown>;
}

/** The first value of a query parameter, as Go's `Query().Get`. */
function firstQueryValue(request: FastifyRequest, name: string): string | undefined {
  const value = queryOf(request)[name];
  const first: unknown = Array.isArray(value) ? value[0] : value;
  return typeof first === 'string' ? first : undefined;
}

export function rtotRoutes(instance: FastifyInstance, options: RtotRoutesOptions): void {
  const { jobs, logger } = options;

  async function render(request: FastifyRequest, sources: JobSource[]): Promise<unknown> {
    const fields = selectedFields(queryOf(request).fields);
    return { jobs: await Promise.all(sources.map((source) => renderJob(source, fields))) };
  }

  function sendError(reply: FastifyReply, status: number, error: string, message?: string) {
    return reply.code(status).send(message === undefined ? { error } : { error, message });
  }

  function invalidId(reply: FastifyReply, text: string) {
    return sendError(reply, 400, 'invalid job number', `what is ${JSON.stringify(text)}?`);
  }

  // Scripts are taken as they come, whatever the content type says.
  instance.removeAllContentTypeParsers();
  instance.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });

  instance.addHook('onRequest', async (request, reply) => {
    void reply.header('Rtot-Version', VERSION);
    const isPing =
      request.routeOptions.url === '/ping' &&
      (request.method === 'GET' || request.method === 'HEAD');
    if (isPing) return;
    const presented = request.headers['rtot-secret'];
    if (secretsEqual(typeof presented === 'string' ? presented : undefined, options.secret)) return;
    // As Go's http.Error wrote it.
    await reply
      .code(401)
      .header('Content-Type', 'text/plain; charset=utf-8')
      .header('X-Content-Type-Options', 'nosniff')
      .send('Not Authorized\n');
  });

  instance.setErrorHandler((error, request, reply) => {
    const mapped = toHttpError(error);
    if (mapped.code === 'INTERNAL') {
      logger.error({ err: error, method: request.method, url: request.url }, 'request failed');
    }
    const status = httpStatusOf(mapped);
    const text = ERROR_TEXT[mapped.code] ?? mapped.code.toLowerCase().replace(/_/g, ' ');
    void sendError(reply, status, text, mapped.code === 'INTERNAL' ? undefined : mapped.message);
  });

  /** One route per path taking every method: the ones it has, else 405 with `Allow`. */
  function addPath(
    url: string,
    handlers: Partial<Record<HTTPMethods, Handler>>,
    extra: { bodyLimit?: number; onDie?: boolean } = {},
  ): void {
    if (handlers.GET && !handlers.HEAD) handlers.HEAD = handlers.GET;
    const allow = Object.keys(handlers).sort().join(', ');
    instance.route({
      method: [...METHODS],
      url,
      exposeHeadRoute: false,
      ...(extra.bodyLimit === undefined ? {} : { bodyLimit: extra.bodyLimit }),
      ...(extra.onDie
        ? {
            onResponse: (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
              done();
              if (request.method === 'DELETE' && reply.statusCode === 204) options.onDie();
            },
          }
        : {}),
      handler: async (request, reply) => {
        const handler = handlers[request.method];
        if (handler) return handler(request, reply);
        return reply
          .code(405)
          .header('Allow', allow)
          .send({
            error: 'method not allowed',
            message: `${request.method} ${url} is not allowed; use ${allow}`,
          });
      },
    });
  }

  addPath(
    '/',
    {
      GET: async (_request, reply) => reply.send(ROOT_LINKS),
      DELETE: async (_request, reply) => reply.code(204).send(),
    },
    { onDie: true },
  );

  addPath('/ping', {
    GET: async (_request, reply) =>
      reply.send({
        message: 'still here',
        uptime: formatGoDuration(process.hrtime.bigint() - options.startedAtNanos),
      }),
  });

  addPath(
    '/jobs',
    {
      GET: async (request, reply) =>
        reply.send(await render(request, jobs.list(firstQueryValue(request, 'state')))),
      POST: async (request, reply) => {
        const body = request.body;
        const script = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
        const job = await jobs.create(script);
        return reply.code(201).send(await render(request, [job]));
      },
      DELETE: async (request, reply) => {
        const doomed = jobs.list(firstQueryValue(request, 'state'));
        const results = await Promise.allSettled(doomed.map((job) => jobs.remove(BigInt(job.id))));
        const failure = results.find((result) => result.status === 'rejected');
        if (failure) throw failure.reason;
        return reply.code(204).send();
      },
    },
    { bodyLimit: options.bodyLimitBytes },
  );

  addPath('/jobs/:id', {
    GET: async (request, reply) => {
      const text = (request.params as { id: string }).id;
      const id = parseJobId(text);
      if (id === null) return invalidId(reply, text);
      const job = jobs.get(id);
      if (!job) return reply.code(404).send(await render(request, []));
      void reply.header('Location', `/jobs/${job.id}`);
      return reply.code(job.state === 'complete' ? 200 : 202).send(await render(request, [job]));
    },
    DELETE: async (request, reply) => {
      const text = (request.params as { id: string }).id;
      const id = parseJobId(text);
      if (id === null) return invalidId(reply, text);
      if (!(await jobs.remove(id))) return sendError(reply, 404, 'no such job');
      return reply.code(204).send();
    },
  });

  // Everything else: after the secret check, like every route but /ping.
  instance.route({
    method: [...METHODS],
    url: '/*',
    exposeHeadRoute: false,
    handler: async (request, reply) =>
      reply.code(404).send({
        error: 'not found',
        message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}`,
      }),
  });
}
