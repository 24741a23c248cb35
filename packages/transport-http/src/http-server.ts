/**
 * The fastify server every overthere HTTP agent and app starts from: body and
 * header limits, errors as `{code, message}` with the core status table, a
 * shutdown signal for long-lived streams, optional TLS, and the rule that a
 * server without auth listens on loopback only.
 */
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import { setMaxListeners } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  HTTP_STATUS_BY_CODE,
  OverthereError,
  isLoopbackHost,
  type ErrorCode,
  type Logger,
  type SerializedError,
} from '@overthere/core';

/** TLS settings: PEM strings or Buffers, as `node:https` takes them. */
export interface HttpTlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  /** CA for client certificates; with `requestCert`, enables mutual TLS. */
  ca?: string | Buffer;
  /** Ask for (and require) a client certificate signed by `ca`. */
  requestCert?: boolean;
}

/** Options for {@link createHttpServer}. */
export interface HttpServerOptions {
  /** Largest accepted request body. Default 1 MiB. */
  bodyLimitBytes?: number;
  /** Serve HTTPS. */
  tls?: HttpTlsOptions;
  /** pino-compatible logger for requests and errors. Default: silent. */
  logger?: Logger;
}

/** Options for {@link startHttpServer}. */
export interface StartHttpServerOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** True when every command-running route requires a credential. */
  authenticated: boolean;
  /** Listen beyond loopback without auth anyway (you put auth in front of it). Default false. */
  allowUnauthenticated?: boolean;
}

/** A listening server. */
export interface StartedHttpServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  host: string;
  port: number;
}

const shutdownControllers = new WeakMap<FastifyInstance, AbortController>();
const tlsServers = new WeakSet<FastifyInstance>();
const queryTokens = new WeakMap<IncomingMessage, string>();

/** Name of the query parameter that carries a token for clients that cannot set headers. */
export const ACCESS_TOKEN_PARAMETER = 'access_token';

/**
 * Take `access_token` out of the URL before routing and logging, so a token
 * given in the query (browsers' WebSocket and EventSource cannot set headers)
 * never reaches a log line or a route's query string. {@link queryAccessToken}
 * hands it to the auth check.
 */
function stripAccessToken(request: IncomingMessage & { originalUrl?: string }): string {
  const url = request.url ?? '/';
  const queryStart = url.indexOf('?');
  if (queryStart === -1 || !url.includes(ACCESS_TOKEN_PARAMETER, queryStart)) return url;
  const parameters = new URLSearchParams(url.slice(queryStart + 1));
  const token = parameters.get(ACCESS_TOKEN_PARAMETER);
  if (token === null) return url;
  queryTokens.set(request, token);
  parameters.delete(ACCESS_TOKEN_PARAMETER);
  const rest = parameters.toString();
  const stripped = `${url.slice(0, queryStart)}${rest === '' ? '' : `?${rest}`}`;
  request.originalUrl = stripped;
  return stripped;
}

/** The `access_token` query parameter the request came with (removed from its URL), if any. */
export function queryAccessToken(request: FastifyRequest): string | undefined {
  return queryTokens.get(request.raw);
}

/**
 * Graceful close needs to know which connections are busy. Node's own
 * `closeIdleConnections` counts a connection that never sent a request as
 * busy (clients such as undici open spare connections), and such a connection
 * would hold `close()` until the headers timeout. So: when closing, end every
 * connection with no request in flight at once, and every other one as soon as
 * its last response is done. Upgraded (WebSocket) connections are left to
 * their close handshake.
 */
function trackConnections(server: FastifyInstance, tls: boolean): { closeIdle(): void } {
  /** Requests in flight per connection; `-1` once upgraded. */
  const inFlight = new Map<Socket, number>();
  let closing = false;
  server.server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  server.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    if (!inFlight.has(socket)) return;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    response.once('close', () => {
      const count = inFlight.get(socket);
      if (count === undefined || count < 0) return;
      inFlight.set(socket, count - 1);
      if (closing && count - 1 === 0) socket.destroySoon();
    });
  });
  server.server.on('upgrade', (request: IncomingMessage) => {
    if (inFlight.has(request.socket)) inFlight.set(request.socket, -1);
  });
  return {
    closeIdle() {
      closing = true;
      for (const [socket, count] of inFlight) if (count === 0) socket.destroy();
    },
  };
}

/** The body every error response carries. */
export function errorBody(error: OverthereError): SerializedError {
  return { code: error.code, message: error.message };
}

/** HTTP status for an OverthereError. */
export function httpStatusOf(error: OverthereError): number {
  return HTTP_STATUS_BY_CODE[error.code];
}

/**
 * Map anything thrown while serving a request to an OverthereError: fastify's
 * own errors (bad JSON, body too large, schema validation) get their codes.
 */
export function toHttpError(error: unknown): OverthereError {
  if (OverthereError.is(error)) return error;
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown };
  const code: ErrorCode | undefined =
    fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
      ? 'PAYLOAD_TOO_LARGE'
      : fastifyError.validation !== undefined || (fastifyError.statusCode ?? 0) === 400
        ? 'INVALID_ARGUMENT'
        : fastifyError.statusCode === 404
          ? 'NOT_FOUND'
          : fastifyError.statusCode === 413
            ? 'PAYLOAD_TOO_LARGE'
            : fastifyError.statusCode === 415
              ? 'INVALID_ARGUMENT'
              : undefined;
  if (code !== undefined) {
    return new OverthereError(code, fastifyError.message ?? 'bad request', { cause: error });
  }
  return new OverthereError('INTERNAL', 'internal error', { cause: error });
}

/**
 * Create a fastify server with overthere's defaults. Routes are added by
 * plugins: `registerOverthereApi` for `/v1`, or an app's dialect.
 */
export function createHttpServer(options: HttpServerOptions = {}): FastifyInstance {
  const serverOptions: FastifyServerOptions & { https?: unknown } = {
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    // Long output streams are ended by the shutdown signal, not by force.
    forceCloseConnections: 'idle',
    // Requests arriving while closing get a 503 in the protocol's error shape (hook below).
    return503OnClosing: false,
    routerOptions: { maxParamLength: 256 },
    rewriteUrl: stripAccessToken,
    ...(options.logger
      ? { loggerInstance: options.logger as unknown as FastifyBaseLogger }
      : { logger: false }),
  };
  if (options.tls) {
    serverOptions.https = {
      key: options.tls.key,
      cert: options.tls.cert,
      ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
      ...(options.tls.requestCert ? { requestCert: true, rejectUnauthorized: true } : {}),
    };
  }
  const server = Fastify(serverOptions as FastifyServerOptions) as unknown as FastifyInstance;
  if (options.tls) tlsServers.add(server);
  const controller = new AbortController();
  // Every long-lived response listens to it.
  setMaxListeners(0, controller.signal);
  shutdownControllers.set(server, controller);
  const connections = trackConnections(server, options.tls !== undefined);
  server.addHook('preClose', (done) => {
    controller.abort();
    connections.closeIdle();
    done();
  });
  server.addHook('onRequest', (_request, reply, done) => {
    if (!controller.signal.aborted) {
      done();
      return;
    }
    void reply
      .code(503)
      .header('connection', 'close')
      .send({ code: 'UNAVAILABLE', message: 'the server is shutting down' });
  });
  server.setErrorHandler((error, request, reply) => {
    const mapped = toHttpError(error);
    if (mapped.code === 'INTERNAL') request.log.error({ err: error }, 'request failed');
    void reply.status(httpStatusOf(mapped)).send(errorBody(mapped));
  });
  server.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({
      code: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
    });
  });
  return server;
}

/**
 * Aborted when the server starts closing: long-lived responses (follow,
 * attach, long polls) end on it. Works from inside encapsulated plugins too
 * (their instances inherit from the server's).
 */
export function shutdownSignal(server: FastifyInstance): AbortSignal {
  for (
    let current: object | null = server;
    current !== null;
    current = Object.getPrototypeOf(current) as object | null
  ) {
    const found = shutdownControllers.get(current as FastifyInstance);
    if (found) return found.signal;
  }
  // A server not made by createHttpServer: abort on its own preClose.
  const controller = new AbortController();
  shutdownControllers.set(server, controller);
  server.addHook('preClose', (done) => {
    controller.abort();
    done();
  });
  return controller.signal;
}

/**
 * Listen, refusing a non-loopback address without auth unless
 * `allowUnauthenticated` — anything that runs commands for a network client
 * needs auth.
 */
export async function startHttpServer(
  server: FastifyInstance,
  options: StartHttpServerOptions,
): Promise<StartedHttpServer> {
  const host = options.host ?? '127.0.0.1';
  if (!options.authenticated && !options.allowUnauthenticated && !isLoopbackHost(host)) {
    throw new OverthereError(
      'FAILED_PRECONDITION',
      `refusing to listen on ${host} without auth: set a token, listen on 127.0.0.1, or allow it explicitly`,
    );
  }
  await server.listen({ host, port: options.port ?? 0 });
  const address = server.server.address() as AddressInfo;
  const scheme = tlsServers.has(server) ? 'https' : 'http';
  const printable = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `${scheme}://${printable}:${address.port}`,
    host: address.address,
    port: address.port,
  };
}
