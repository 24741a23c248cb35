/**
 * The `jobrunner` command: read the environment, listen, stop jobs on
 * SIGINT/SIGTERM and exit 0.
 */
import { createRequire } from 'node:module';
import { pino } from 'pino';
import type { Logger } from '@overthere/core';
import { startJobrunner } from './app.js';
import { configFromEnv, ENVIRONMENT_HELP } from './config.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const USAGE = `Usage: jobrunner [--help | --version]

Runs bash commands on this machine for HTTP+JSON clients and streams their
output back. Configured by environment variables only.

Routes:
  GET    /            {"IDs":[…]}: the running jobs
  POST   /            {"CommandLine":"…","Environment":{…}} → {"ID":"<uuid>"}
                      also WorkingDirectory, and Commands:[{CommandLine,…},…]
                      for a sequence that stops at the first failure
  GET    /:ID         the job: State, ExitCode, per-command status, times
  GET    /:ID/attach  stdout and stderr, chunked, live, until the job ends
  DELETE /:ID         kill a running job (forget a finished one); always 200

${ENVIRONMENT_HELP}
`;

async function main(argv: readonly string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`jobrunner ${version}\n`);
    return;
  }
  if (first !== undefined || rest.length > 0) {
    process.stderr.write(
      `jobrunner: unknown argument ${JSON.stringify(first)}; see jobrunner --help\n`,
    );
    process.exitCode = 2;
    return;
  }

  let config;
  try {
    config = configFromEnv(process.env);
  } catch (error) {
    process.stderr.write(`jobrunner: ${(error as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  const logger = pino(
    { name: 'jobrunner', level: config.logLevel },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;

  let app;
  try {
    app = await startJobrunner({ ...config, logger });
  } catch (error) {
    process.stderr.write(`jobrunner: cannot start: ${(error as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  const running = app;
  process.stderr.write(
    `jobrunner ${version} listening on ${running.url}${config.token === undefined ? '' : ' (bearer token required)'}\n`,
  );

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`jobrunner: ${signal} again: exiting without waiting for jobs\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`jobrunner: ${signal}: stopping jobs\n`);
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

await main(process.argv.slice(2));
