/**
 * `createHttpAgent`: a supervisor served over HTTP in one call — the server
 * factory, the `/v1` API and listening, with the loopback rule applied.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger, Runtime, Supervisor } from '@overthere/core';
import { createHttpServer, startHttpServer, type HttpTlsOptions } from './http-server.js';
import { registerOverthereApi } from './overthere-api.js';

/** Options for {@link createHttpAgent}. */
export interface HttpAgentOptions {
  /** The supervisor to serve. The agent does not close it. */
  supervisor: Supervisor;
  /** The supervisor's runtimes (default first), for `GET /v1/runtime`. */
  runtime?: Runtime | readonly Runtime[];
  /** Bearer token for every route but `/healthz`. Required to listen beyond loopback. */
  token?: string;
  /** Interface to bind. Default `127.0.0.1`. */
  host?: string;
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Listen beyond loopback without a token anyway (auth is in front of it). Default false. */
  allowUnauthenticated?: boolean;
  /** Serve HTTPS (and WSS). */
  tls?: HttpTlsOptions;
  /** Largest request body (and WebSocket message). Default 1 MiB. */
  bodyLimitBytes?: number;
  /** pino-compatible logger. Default: silent. */
  logger?: Logger;
  /** Interval of SSE keepalive comments. Default 15 000. */
  keepaliveMs?: number;
}

/** A listening agent. */
export interface HttpAgent {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** The fastify instance (add app dialects before traffic arrives, or inspect it). */
  server: FastifyInstance;
  /**
   * Stop accepting connections, end output streams and attach sessions (WebSocket
   * close 1001), and wait for in-flight requests. Tasks keep running.
   */
  close(): Promise<void>;
}

/**
 * Serve `supervisor` with the `/v1` API. Refuses (`FAILED_PRECONDITION`) to
 * listen on a non-loopback host without `token` unless `allowUnauthenticated`.
 */
export async function createHttpAgent(options: HttpAgentOptions): Promise<HttpAgent> {
  const server = createHttpServer({
    ...(options.bodyLimitBytes === undefined ? {} : { bodyLimitBytes: options.bodyLimitBytes }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  try {
    await registerOverthereApi(server, {
      supervisor: options.supervisor,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.runtime === undefined ? {} : { runtime: options.runtime }),
      ...(options.keepaliveMs === undefined ? {} : { keepaliveMs: options.keepaliveMs }),
      ...(options.bodyLimitBytes === undefined ? {} : { maxMessageBytes: options.bodyLimitBytes }),
    });
    const started = await startHttpServer(server, {
      authenticated: options.token !== undefined,
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.allowUnauthenticated === undefined
        ? {}
        : { allowUnauthenticated: options.allowUnauthenticated }),
    });
    let closing: Promise<void> | undefined;
    return {
      url: started.url,
      server,
      close: () => (closing ??= server.close()),
    };
  } catch (error) {
    await server.close();
    throw error;
  }
}
