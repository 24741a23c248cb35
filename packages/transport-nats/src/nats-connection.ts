/**
 * Opening a NATS connection for an agent or a client: servers, auth
 * (user/password, token, nkey seed, creds) and TLS are passed through to
 * nats.js; reconnects are forever by default; connection failures become
 * `OverthereError`s.
 */
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type Authenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  type TlsOptions,
} from '@nats-io/transport-node';
import { OverthereError } from '@overthere/core';

/** How to reach NATS. Either an open `connection` or the fields to open one. */
export interface NatsConnectOptions {
  /**
   * An open connection to use. It is not closed by `close()` (the caller owns
   * it); the other connection fields are then ignored.
   */
  connection?: NatsConnection;
  /** Server URLs, e.g. `nats://127.0.0.1:4222`. Default nats.js's (`127.0.0.1:4222`). */
  servers?: string | string[];
  /** User and password auth. */
  user?: string;
  pass?: string;
  /** Token auth. */
  token?: string;
  /** NKey auth: the user's seed (`SU…`). */
  nkeySeed?: string | Uint8Array;
  /** JWT auth: the contents of a `.creds` file. */
  credentials?: string | Uint8Array;
  /** TLS settings (`ca`/`caFile`, `cert`/`certFile`, `key`/`keyFile`, `handshakeFirst`). */
  tls?: TlsOptions;
  /** Connection name shown by the server's monitoring. */
  name?: string;
  /** Delay between reconnect attempts to one server. Default 250 ms. */
  reconnectTimeWaitMs?: number;
  /** Any other nats.js connection option, applied last. */
  connectionOptions?: Partial<NodeConnectionOptions>;
}

function bytes(value: string | Uint8Array): Uint8Array {
  return typeof value === 'string' ? new TextEncoder().encode(value) : value;
}

/** A connection error as an OverthereError: bad credentials are `UNAUTHENTICATED`, the rest `UNAVAILABLE`. */
export function connectionError(error: unknown, servers: string): OverthereError {
  if (OverthereError.is(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : '';
  if (name === 'AuthorizationError' || /authori[sz]ation|authentication/i.test(message)) {
    return new OverthereError('UNAUTHENTICATED', `NATS refused the credentials: ${message}`, {
      cause: error,
    });
  }
  return new OverthereError('UNAVAILABLE', `cannot connect to NATS at ${servers}: ${message}`, {
    cause: error,
  });
}

/** Open a connection as `options` say (reconnecting forever unless told otherwise). */
export async function openNatsConnection(options: NatsConnectOptions): Promise<NatsConnection> {
  const authenticators: Authenticator[] = [];
  if (options.nkeySeed !== undefined)
    authenticators.push(nkeyAuthenticator(bytes(options.nkeySeed)));
  if (options.credentials !== undefined) {
    authenticators.push(credsAuthenticator(bytes(options.credentials)));
  }
  const settings: NodeConnectionOptions = {
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 250,
    // A wrong credential is final: do not retry it forever.
    ignoreAuthErrorAbort: false,
    ...(options.servers === undefined ? {} : { servers: options.servers }),
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.pass === undefined ? {} : { pass: options.pass }),
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(authenticators.length === 0 ? {} : { authenticator: authenticators }),
    ...options.connectionOptions,
  };
  try {
    return await connect(settings);
  } catch (error) {
    const servers = [options.servers ?? 'nats://127.0.0.1:4222'].flat().join(',');
    throw connectionError(error, servers);
  }
}
