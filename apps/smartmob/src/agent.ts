/**
 * smartmob-agent as a composition: the local runtime, a supervisor over the
 * file task store in the data dir, the process manager, and the smartmob
 * routes on the shared HTTP server.
 */
import {
  createFileTaskStore,
  createSupervisor,
  isLoopbackHost,
  lockDataDir,
  OverthereError,
  noopLogger,
  type Logger,
  type Supervisor,
} from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createHttpServer, startHttpServer } from '@overthere/transport-http';
import { openProcessStore } from './process-store.js';
import {
  createProcessManager,
  type ProcessManager,
  type ProcessPolicy,
  type SourceLimits,
} from './processes.js';
import { smartmobRoutes } from './routes.js';

/** Options for {@link startSmartmobAgent}. */
export interface SmartmobAgentOptions {
  /** Interface to listen on. Beyond loopback needs `token` or `insecure`. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Records, task store, output and unpacked sources live here (mode 0700). */
  dataDir: string;
  /** Bearer token every request must carry. */
  token: string | undefined;
  /** Listen beyond loopback without a token (auth is in front of it). */
  insecure: boolean;
  limits: SourceLimits;
  policy: ProcessPolicy;
  /** Largest request body. */
  bodyLimitBytes: number;
  /** Console output kept on disk per process (the oldest goes past it). */
  outputMaxBytes: number;
  logger?: Logger;
  /** Base environment of processes. Default: the agent's, without `SMARTMOB_TOKEN`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Every console line, for the agent's own log. */
  onLine?: (slug: string, line: Buffer, time: number) => void;
}

/** A listening agent. */
export interface SmartmobAgent {
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  supervisor: Supervisor;
  processes: ProcessManager;
  /** Stop taking requests, stop every process (SIGTERM, grace, SIGKILL), flush, unlock. Idempotent. */
  close(): Promise<void>;
}

/** Recent output of each process kept in memory; the rest is on disk. */
const OUTPUT_MEMORY_BYTES = 256 * 1024;

/** The agent's environment without its own secret. */
export function processEnvironment(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string | undefined> {
  const copy: Record<string, string | undefined> = { ...env };
  delete copy.SMARTMOB_TOKEN;
  return copy;
}

/** Build the agent, restore its processes, and listen. */
export async function startSmartmobAgent(options: SmartmobAgentOptions): Promise<SmartmobAgent> {
  const logger = options.logger ?? noopLogger;
  // Refused before anything is touched (startHttpServer checks it again).
  if (options.token === undefined && !options.insecure && !isLoopbackHost(options.host)) {
    throw new OverthereError(
      'FAILED_PRECONDITION',
      `refusing to listen on ${options.host} without auth: anyone who can reach it could run commands. Give --token, listen on 127.0.0.1, or pass --insecure`,
    );
  }
  const lock = await lockDataDir(options.dataDir, 'smartmob-agent');
  const cleanups: (() => Promise<void>)[] = [() => lock.release()];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => undefined);
  };
  try {
    const runtime = createLocalRuntime({
      env: processEnvironment(options.env ?? process.env),
      logger,
    });
    cleanups.push(() => runtime.dispose());
    const store = await createFileTaskStore({ dir: options.dataDir, logger });
    // Recovery starts the services of the previous run again (restart policy `always`).
    const supervisor = await createSupervisor({
      runtime,
      store,
      logger,
      output: { memoryBytes: OUTPUT_MEMORY_BYTES, maxDiskBytes: options.outputMaxBytes },
    });
    cleanups.push(() => supervisor.close());
    const processes = createProcessManager({
      supervisor,
      store: await openProcessStore(options.dataDir),
      dataDir: options.dataDir,
      limits: options.limits,
      policy: options.policy,
      logger,
      ...(options.onLine ? { onLine: options.onLine } : {}),
    });
    cleanups.push(() => processes.close());
    await processes.restore();

    const http = createHttpServer({ bodyLimitBytes: options.bodyLimitBytes, logger });
    await smartmobRoutes(http, { processes, supervisor, token: options.token, logger });
    cleanups.push(() => http.close());
    const started = await startHttpServer(http, {
      host: options.host,
      port: options.port,
      authenticated: options.token !== undefined,
      allowUnauthenticated: options.insecure,
    });

    let closing: Promise<void> | undefined;
    return {
      url: started.url,
      supervisor,
      processes,
      close() {
        closing ??= (async () => {
          // Requests and consoles end first, then pipelines, then the processes.
          await http.close();
          await processes.close();
          await supervisor.close();
          await runtime.dispose();
          await lock.release();
        })();
        return closing;
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
