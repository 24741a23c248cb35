/**
 * `overthere-agent`: a supervisor on the local runtime with a durable store,
 * served with the /v1 HTTP API. SIGINT/SIGTERM stop the tasks and exit 0;
 * always-restart tasks come back on the next start.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { pino } from 'pino';
import { createFileTaskStore, createSupervisor, lockDataDir, type Logger } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createHttpAgent } from '@overthere/transport-http';
import { USAGE, parseAgentCommand, type AgentOptions } from './options.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

async function run(options: AgentOptions): Promise<void> {
  const logger = pino(
    { name: 'overthere-agent', level: options.logLevel },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;
  // Two agents on one data dir would overwrite each other's records.
  const lock = await lockDataDir(options.dataDir, 'overthere-agent');
  const runtime = createLocalRuntime({ logger });
  const supervisor = await createSupervisor({
    runtime,
    store: await createFileTaskStore({ dir: options.dataDir, logger }),
    logger,
    ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
    ...(options.outputMaxBytes === undefined
      ? {}
      : { output: { maxDiskBytes: options.outputMaxBytes } }),
  });
  const tls =
    options.tlsCert !== undefined && options.tlsKey !== undefined
      ? { cert: await readFile(options.tlsCert), key: await readFile(options.tlsKey) }
      : undefined;
  let agent;
  try {
    agent = await createHttpAgent({
      supervisor,
      runtime,
      host: options.host,
      port: options.port,
      allowUnauthenticated: options.allowUnauthenticated,
      logger,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(tls === undefined ? {} : { tls }),
    });
  } catch (error) {
    await supervisor.close();
    await runtime.dispose();
    await lock.release();
    throw error;
  }
  process.stderr.write(
    `overthere-agent ${version} listening on ${agent.url}${options.token === undefined ? '' : ' (bearer token required)'}, data in ${options.dataDir}\n`,
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    void (async () => {
      await agent.close();
      await supervisor.close();
      await runtime.dispose();
      await lock.release();
    })().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

try {
  const command = parseAgentCommand(process.argv.slice(2), process.env);
  if (command.kind === 'help') process.stdout.write(USAGE);
  else if (command.kind === 'version') process.stdout.write(`overthere-agent ${version}\n`);
  else await run(command.options);
} catch (error) {
  process.stderr.write(
    `overthere-agent: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
}
