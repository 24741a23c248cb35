/**
 * Bearer-token auth for a fastify server or plugin scope: the `/v1` API and
 * the app dialects (jobrunner, smartmob) check requests the same way.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { secretsEqual } from '@overthere/core';
import { queryAccessToken } from './http-server.js';

/** Options for {@link requireBearerToken}. */
export interface BearerAuthOptions {
  /** The token every request must present; undefined adds no check. Compared in constant time. */
  token: string | undefined;
  /** Realm named in the 401's `WWW-Authenticate` header. */
  realm: string;
  /** Requests that need no token (e.g. a health check). Default: none. */
  isPublic?: (request: FastifyRequest) => boolean;
  /**
   * Requests that may carry the token as `?access_token=` instead (browsers'
   * WebSocket and EventSource set no headers). Default: none.
   */
  acceptsQueryToken?: (request: FastifyRequest) => boolean;
}

/** The token of an `Authorization: Bearer <token>` header, if any. */
function headerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)?.[1];
}

/**
 * Refuse, with 401 `UNAUTHENTICATED` and `WWW-Authenticate: Bearer`, every
 * request of `server` that does not present `token`.
 */
export function requireBearerToken(server: FastifyInstance, options: BearerAuthOptions): void {
  const { token, realm } = options;
  if (token === undefined) return;
  server.addHook('onRequest', async (request, reply) => {
    if (options.isPublic?.(request) === true) return;
    let presented = headerToken(request.headers.authorization);
    if (presented === undefined && options.acceptsQueryToken?.(request) === true) {
      presented = queryAccessToken(request);
    }
    if (secretsEqual(presented, token)) return;
    await reply
      .code(401)
      .header('www-authenticate', `Bearer realm="${realm}"`)
      .send({
        code: 'UNAUTHENTICATED',
        message: presented === undefined ? 'a bearer token is required' : 'wrong bearer token',
      });
    return reply;
  });
}
