/**
 * `rtot-server`: parse the command line, start the server, print where it
 * listens, and shut down cleanly on SIGINT, SIGTERM or `DELETE /`.
 */
import { readFile } from 'node:fs/promises';
import { parseCommandLine, usage, UsageError, type ServerSettings } from './cli.js';
import { pino } from 'pino';
import type { Logger } from '@overthere/core';
import { createRtotServer, generateSecret, type RtotServer } from './rtot-server.js';
import { VERSION } from './version.js';

/** After this long past the kill grace, a shutdown that is stuck exits anyway. */
const SHUTDOWN_SLACK_MS = 5_000;

function say(line: string): void {
  process.stderr.write(`rtot-server: ${line}\n`);
}

async function serve(settings: ServerSettings): Promise<void> {
  const logger = pino(
    { name: 'rtot', level: settings.logLevel },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;
  let secret = settings.secret;
  if (secret === undefined) {
    secret = generateSecret();
    say(`no secret given, so generated ${JSON.stringify(secret)}`);
  }
  const tls =
    settings.tlsCert !== undefined && settings.tlsKey !== undefined
      ? { cert: await readFile(settings.tlsCert), key: await readFile(settings.tlsKey) }
      : undefined;

  let server: RtotServer | undefined = undefined;
  let stopping = false;
  const shutdown = (why: string, exitCode: number): void => {
    if (stopping) {
      say(`${why} again: exiting now`);
      process.exit(exitCode === 0 ? 1 : exitCode);
    }
    stopping = true;
    say(`${why}: stopping jobs and exiting`);
    const force = setTimeout(() => {
      say('shutdown is taking too long: exiting now');
      process.exit(1);
    }, settings.killGraceMs + SHUTDOWN_SLACK_MS);
    force.unref();
    void (server?.close() ?? Promise.resolve()).then(
      () => process.exit(exitCode),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT', 0));
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));

  server = await createRtotServer({
    secret,
    dataDir: settings.dataDir,
    jobTtlMs: settings.jobTtlMs,
    killGraceMs: settings.killGraceMs,
    bodyLimitBytes: settings.bodyLimitBytes,
    logger,
    ...(tls ? { tls } : {}),
    // As the original, which exited with status 1 here: a supervisor set to
    // restart on failure brings it back.
    onDie: () => shutdown('DELETE /', 1),
  });
  let started;
  try {
    started = await server.listen(settings.host, settings.port);
  } catch (error) {
    // Port in use, say: give the data dir back before exiting.
    await server.close().catch(() => undefined);
    throw error;
  }
  const scope = settings.host === undefined ? ' (every interface)' : '';
  say(`listening on ${started.url}${scope} for ${settings.address}, data in ${settings.dataDir}`);
}

async function main(args: readonly string[]): Promise<void> {
  let command;
  try {
    command = parseCommandLine(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`rtot-server: ${error.message}\n${usage()}`);
    process.exit(2);
  }
  if (command.kind === 'help') {
    process.stdout.write(usage());
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`rtot-server ${VERSION}\n`);
    return;
  }
  await serve(command.settings);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  say(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
