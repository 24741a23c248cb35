/**
 * levityd as a library: a Supervisor on the local runtime (with a file task
 * store when there is a data dir) behind a gRPC server speaking the levity
 * protocol, in plaintext, TLS or mutual TLS.
 */
import * as grpc from '@grpc/grpc-js';
import {
  createFileTaskStore,
  createSupervisor,
  lockDataDir,
  noopLogger,
  type DataDirLock,
  type Logger,
  type Supervisor,
  type TaskStore,
} from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { joinHostPort, splitHostPort } from './address.js';
import { loadLevityProto } from './proto.js';
import { createTaskManager } from './task-manager.js';

/** PEM material for TLS. */
export interface LevityTlsOptions {
  cert: Buffer;
  key: Buffer;
  /** Require client certificates signed by this CA (mutual TLS). */
  clientCa?: Buffer | undefined;
}

/** Options for {@link createLevityServer}. */
export interface LevityServerOptions {
  /** Time between SIGTERM and SIGKILL after SignalTask (the original: 5 s). */
  graceMs: number;
  /** Require `authorization: Bearer <token>` metadata on every call. */
  token?: string | undefined;
  /** Keep task records and output here, so they survive a restart. Default: memory only. */
  dataDir?: string | undefined;
  /** Forget finished tasks this long after they ended; 0 keeps them. */
  taskTtlMs: number;
  tls?: LevityTlsOptions | undefined;
  /** Where binaries are looked up. Default: the server's PATH. */
  searchPath?: string | undefined;
  logger?: Logger;
}

/** A bound server. */
export interface LevityServer {
  readonly supervisor: Supervisor;
  /**
   * Listen on `address` (`host:port`, `:port` for every interface, port 0 for
   * a free one). Resolves with the bound address as Go prints it
   * (`127.0.0.1:43567`, `[::]:4321`).
   */
  listen(address: string): Promise<string>;
  /** Stop accepting calls, stop running tasks (SIGTERM, SIGKILL after the grace), release the data dir. */
  close(): Promise<void>;
}

/** How long calls still in flight may take to finish at close before they are cut. */
const CLOSE_GRACE_MS = 2_000;

function bind(server: grpc.Server, target: string, credentials: grpc.ServerCredentials) {
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(target, credentials, (error, port) => (error ? reject(error) : resolve(port)));
  });
}

/** Create the supervisor (recovering a data dir's tasks) and the gRPC server. */
export async function createLevityServer(options: LevityServerOptions): Promise<LevityServer> {
  const logger = options.logger ?? noopLogger;
  let lock: DataDirLock | undefined;
  if (options.dataDir !== undefined) lock = await lockDataDir(options.dataDir, 'levityd');
  const runtime = createLocalRuntime({ logger });
  let supervisor: Supervisor;
  let store: TaskStore | undefined;
  try {
    if (options.dataDir !== undefined) {
      store = await createFileTaskStore({ dir: options.dataDir, logger });
    }
    supervisor = await createSupervisor({
      runtime,
      logger,
      ...(store === undefined ? {} : { store }),
      ...(options.taskTtlMs > 0 ? { ttlMs: options.taskTtlMs } : {}),
    });
  } catch (error) {
    await runtime.dispose().catch(() => undefined);
    await lock?.release().catch(() => undefined);
    throw error;
  }

  const server = new grpc.Server({
    // FollowLogs streams stay open as long as their task runs.
    'grpc.keepalive_time_ms': 60_000,
  });
  const { service } = loadLevityProto();
  server.addService(
    service,
    createTaskManager({
      supervisor,
      graceMs: options.graceMs,
      token: options.token,
      searchPath: options.searchPath,
      logger,
    }),
  );
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(
        options.tls.clientCa ?? null,
        [{ cert_chain: options.tls.cert, private_key: options.tls.key }],
        options.tls.clientCa !== undefined,
      )
    : grpc.ServerCredentials.createInsecure();

  let closing: Promise<void> | undefined;

  async function shutdown(): Promise<void> {
    // No new calls from here on; calls in flight (FollowLogs) end as their tasks do.
    const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await supervisor.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      drained,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, CLOSE_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    await runtime.dispose();
    await lock?.release();
  }

  return {
    supervisor,
    async listen(address) {
      const { host, port } = splitHostPort(address);
      if (host === '') {
        // Go's ":port": every interface, IPv6 and IPv4 where the host has both.
        try {
          const bound = await bind(server, `[::]:${port}`, credentials);
          return joinHostPort('::', bound);
        } catch {
          const bound = await bind(server, `0.0.0.0:${port}`, credentials);
          return joinHostPort('0.0.0.0', bound);
        }
      }
      const bound = await bind(server, joinHostPort(host, port), credentials);
      return joinHostPort(host === 'localhost' ? '127.0.0.1' : host, bound);
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
  };
}
