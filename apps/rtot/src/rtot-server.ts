/**
 * rtot-server as a composition: the local runtime, a supervisor over the file
 * task store in the data dir, and the rtot dialect on the shared HTTP server.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import {
  createFileTaskStore,
  createSupervisor,
  lockDataDir,
  noopLogger,
  type Logger,
  type Supervisor,
} from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import {
  createHttpServer,
  startHttpServer,
  type HttpTlsOptions,
  type StartedHttpServer,
} from '@overthere/transport-http';
import { openJobIds, openScriptFiles } from './data-dir.js';
import { createJobs, type Jobs } from './jobs.js';
import { rtotRoutes } from './rtot-routes.js';

/** Recent output of each job kept in memory; all of it (up to 64 MiB) is on disk. */
const OUTPUT_MEMORY_BYTES = 256 * 1024;

/** Options for {@link createRtotServer}. */
export interface RtotServerOptions {
  secret: string;
  /** Jobs, their output and scripts live here (created, mode 0700). */
  dataDir: string;
  /** Forget completed jobs this long after they complete; 0 keeps them. */
  jobTtlMs: number;
  /** SIGTERM to SIGKILL delay when a running job is deleted or the server stops. */
  killGraceMs: number;
  bodyLimitBytes: number;
  tls?: HttpTlsOptions;
  logger?: Logger;
  /** Base environment of jobs. Default: the server's, without `RTOT_SECRET`. */
  jobEnv?: Readonly<Record<string, string | undefined>>;
  /** Called once `DELETE /` has been answered. */
  onDie?: () => void;
}

/** A server ready to listen. */
export interface RtotServer {
  http: FastifyInstance;
  supervisor: Supervisor;
  jobs: Jobs;
  /** Listen on `host` (undefined: every interface, as Go's `:port`). */
  listen(host: string | undefined, port: number): Promise<StartedHttpServer>;
  /** Stop taking requests, stop running jobs (SIGTERM, grace, SIGKILL), flush. Idempotent. */
  close(): Promise<void>;
}

/** A random secret: 32 hex characters, as the original generated. */
export function generateSecret(): string {
  return randomBytes(16).toString('hex');
}

/** The server's environment minus what jobs must not see. */
export function defaultJobEnv(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const copy: Record<string, string | undefined> = { ...env };
  delete copy.RTOT_SECRET;
  return copy;
}

export async function createRtotServer(options: RtotServerOptions): Promise<RtotServer> {
  const logger = options.logger ?? noopLogger;
  const lock = await lockDataDir(options.dataDir, 'rtot-server');
  try {
    const scripts = await openScriptFiles(options.dataDir);
    const ids = await openJobIds(options.dataDir);
    const store = await createFileTaskStore({ dir: options.dataDir, logger });
    const runtime = createLocalRuntime({
      env: options.jobEnv ?? defaultJobEnv(process.env),
      logger,
    });
    const supervisor = await createSupervisor({
      runtime,
      store,
      logger,
      ...(options.jobTtlMs > 0 ? { ttlMs: options.jobTtlMs } : {}),
      // Completed jobs are kept with their output on disk: little of it stays in memory.
      output: { memoryBytes: OUTPUT_MEMORY_BYTES },
    });
    const jobs = createJobs({
      supervisor,
      ids,
      scripts,
      killGraceMs: options.killGraceMs,
      logger,
    });
    await scripts.prune(new Set(jobs.list().map((job) => job.id)));

    const http = createHttpServer({
      bodyLimitBytes: options.bodyLimitBytes,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    const startedAtNanos = process.hrtime.bigint();
    await http.register((instance, _options, done) => {
      rtotRoutes(instance, {
        jobs,
        secret: options.secret,
        bodyLimitBytes: options.bodyLimitBytes,
        logger,
        startedAtNanos,
        onDie: () => options.onDie?.(),
      });
      done();
    });

    let closing: Promise<void> | undefined;
    return {
      http,
      supervisor,
      jobs,
      async listen(host, port) {
        if (host !== undefined) {
          return startHttpServer(http, { host, port, authenticated: true });
        }
        // Go's ":port" is every interface: both families where the host has IPv6.
        try {
          return await startHttpServer(http, { host: '::', port, authenticated: true });
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw error;
          return startHttpServer(http, { host: '0.0.0.0', port, authenticated: true });
        }
      },
      close() {
        closing ??= (async () => {
          const httpClosed = http.close();
          // Requests waiting on a job (DELETE of a running one) end when the jobs do.
          await supervisor.close();
          await httpClosed;
          await runtime.dispose();
          await lock.release();
        })();
        return closing;
      },
    };
  } catch (error) {
    await lock.release();
    throw error;
  }
}
