/**
 * Wiring: runtimes → supervisor → job manager → HTTP dialect on the shared
 * overthere server.
 */
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';
import {
  createMemoryTaskStore,
  createSupervisor,
  isValidTaskId,
  OverthereError,
  type Logger,
  type Runtime,
  type TaskStore,
} from '@overthere/core';
import { createDockerRuntime } from '@overthere/runtime-docker';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createHttpServer, startHttpServer } from '@overthere/transport-http';
import type { JobrunnerConfig } from './config.js';
import { createJobManager } from './jobs.js';
import { installJobrunnerApi } from './routes.js';

/** Options for {@link startJobrunner}. */
export interface JobrunnerOptions extends JobrunnerConfig {
  logger: Logger;
  /** The agent's environment: jobs start from it, and bash is looked up on its PATH. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A listening jobrunner. */
export interface Jobrunner {
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  /** Kill running jobs (SIGTERM, grace, SIGKILL), close the server, release everything. */
  close(): Promise<void>;
}

/** Recent output each command keeps in memory (the rest is on disk). */
const OUTPUT_MEMORY_BYTES = 256 * 1024;

/** Variables of the agent that its jobs do not inherit. */
const PRIVATE_VARIABLES = ['JOBRUNNER_TOKEN'];

/** The agent's environment minus its secrets: the base environment of every job. */
export function jobEnvironment(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !PRIVATE_VARIABLES.includes(name)) result[name] = value;
  }
  return result;
}

/** The first executable `name` on `path`, or undefined. */
export async function findExecutable(
  name: string,
  path: string | undefined,
): Promise<string | undefined> {
  for (const dir of (path ?? '').split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here; keep looking.
    }
  }
  return undefined;
}

/**
 * Records stay in memory (jobs do not outlive the agent), but each command's
 * output goes to disk under `dir`, so a long output can be replayed in full
 * to an attacher that comes late (up to the output log's disk cap).
 */
function createSpoolStore(dir: string): TaskStore {
  const records = createMemoryTaskStore();
  const outputDir = (id: string) => {
    if (!isValidTaskId(id)) throw new OverthereError('INVALID_ARGUMENT', `invalid task id: ${id}`);
    return join(dir, id);
  };
  return {
    load: () => records.load(),
    save: (task) => records.save(task),
    flush: () => records.flush(),
    outputDir,
    async delete(id) {
      await records.delete(id);
      await rm(outputDir(id), { recursive: true, force: true });
    },
  };
}

/** Start jobrunner: build the pieces and listen. */
export async function startJobrunner(options: JobrunnerOptions): Promise<Jobrunner> {
  const { logger } = options;
  const env = options.env ?? process.env;
  const bashPath = await findExecutable('bash', env.PATH);
  if (bashPath === undefined) {
    throw new OverthereError(
      'FAILED_PRECONDITION',
      'bash was not found on PATH: jobrunner runs every command with bash -c',
    );
  }
  const spoolDir = await mkdtemp(join(tmpdir(), 'jobrunner-'));

  // Every runtime jobs can use. `Container` commands need the one with id 'docker',
  // registered when dockerd answers; without it they are refused with 501.
  const runtimes: Runtime[] = [createLocalRuntime({ env: jobEnvironment(env), logger })];
  const docker = await createDockerRuntime({
    // One jobrunner per port: a jobrunner restarted on the port of one that
    // crashed finds that one's containers (on a random port, only its own).
    agentId: options.port === 0 ? `jobrunner-pid-${process.pid}` : `jobrunner-${options.port}`,
    logger,
  }).catch((error: unknown) => {
    if (!OverthereError.hasCode(error, 'UNAVAILABLE')) throw error;
    logger.info({ reason: error.message }, 'no Docker: Container commands are refused');
    return undefined;
  });
  if (docker !== undefined) {
    runtimes.push(docker);
    // Jobs never outlive a jobrunner, so there is nothing to adopt: reap at once.
    const removed = await docker.removeUnadopted();
    if (removed.length > 0) logger.info({ removed }, 'removed containers of an earlier jobrunner');
  }

  const supervisor = await createSupervisor({
    runtime: runtimes,
    store: createSpoolStore(spoolDir),
    // Finished jobs are kept (JOBRUNNER_JOB_TTL_MS) with their output on disk: keep
    // little of it in memory. Live attachers that fall behind read from disk.
    output: { memoryBytes: OUTPUT_MEMORY_BYTES },
    logger,
  });
  const jobs = createJobManager({
    supervisor,
    runtimeIds: new Set(runtimes.map((runtime) => runtime.id)),
    bashPath,
    killGraceMs: options.killGraceMs,
    jobTtlMs: options.jobTtlMs,
    logger,
  });
  const server = createHttpServer({ logger });
  installJobrunnerApi(server, { jobs, token: options.token, logger });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // Jobs first, so attachers receive every byte and end cleanly.
      await jobs.close();
      await server.close();
      await supervisor.close();
      await Promise.all(runtimes.map((runtime) => runtime.dispose()));
      await rm(spoolDir, { recursive: true, force: true });
    })();
    return closing;
  };

  try {
    const started = await startHttpServer(server, {
      host: options.host,
      port: options.port,
      authenticated: options.token !== undefined,
    });
    return { url: started.url, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}
