/**
 * `levityd ADDRESS`: serve the levity protocol. Writes `Listening on
 * HOST:PORT` to stderr (the original's line, which its tests wait for) once it
 * listens; SIGINT or SIGTERM stops the running tasks (SIGTERM, SIGKILL after
 * the grace period) and exits 0.
 */
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { isLoopbackHost } from '@overthere/core';
import { splitHostPort } from './address.js';
import { UsageError } from './flags.js';
import { goLogPrefix } from './go-format.js';
import { levitydHelp, parseLevitydCommandLine, type LevitydSettings } from './levityd-cli.js';
import { createLevityServer, type LevityServer } from './levity-server.js';
import { createStderrLogger } from './logger.js';

/** The app's version (kept with package.json). */
export const VERSION = '0.1.0';

/** After this long past the grace period, a stuck shutdown exits anyway. */
const SHUTDOWN_SLACK_MS = 5_000;

/** A line as Go's `log.Printf` wrote it. */
function say(line: string): void {
  process.stderr.write(`${goLogPrefix()}${line}\n`);
}

async function serve(settings: LevitydSettings): Promise<void> {
  const logger = createStderrLogger(settings.logLevel, { app: 'levityd' });
  // grpc-js prints its own errors to stderr (a failed bind, say); ours say it
  // once, so its lines go to the log at debug level.
  const grpcLogger = logger.child({ component: 'grpc-js' });
  const grpcLine = (...parts: unknown[]) => grpcLogger.debug(parts.map(String).join(' '));
  grpc.setLogger({ error: grpcLine, info: grpcLine, debug: grpcLine });
  const tls =
    settings.tls === undefined
      ? undefined
      : {
          cert: await readFile(settings.tls.cert),
          key: await readFile(settings.tls.key),
          clientCa:
            settings.tls.clientCa === undefined ? undefined : await readFile(settings.tls.clientCa),
        };
  const { host } = splitHostPort(settings.address);
  if (settings.token !== undefined && tls === undefined && !isLoopbackHost(host)) {
    say(
      'warning: the token travels in plaintext: serve TLS (--tls-cert, --tls-key) beyond loopback',
    );
  }

  const server: LevityServer = await createLevityServer({
    graceMs: settings.graceMs,
    token: settings.token,
    dataDir: settings.dataDir,
    taskTtlMs: settings.taskTtlMs,
    tls,
    logger,
  });

  let stopping = false;
  const shutdown = (why: string): void => {
    if (stopping) {
      say(`${why} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    say(`${why}: stopping tasks and exiting`);
    const force = setTimeout(() => {
      say('shutdown is taking too long: exiting now');
      process.exit(1);
    }, settings.graceMs + SHUTDOWN_SLACK_MS);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        say(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  let bound: string;
  try {
    bound = await server.listen(settings.address);
  } catch (error) {
    await server.close().catch(() => undefined);
    throw new Error(
      `Failed to listen on "${settings.address}": ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const extras = [
    tls === undefined ? 'plaintext' : tls.clientCa === undefined ? 'TLS' : 'mutual TLS',
    settings.token === undefined ? 'no token' : 'token required',
    settings.dataDir === undefined ? 'tasks in memory' : `data in ${settings.dataDir}`,
  ];
  // Exactly the original's line: its system tests (and maybe yours) look for it.
  say(`Listening on ${bound}`);
  say(`Serving requests (${extras.join(', ')})`);
}

async function main(args: readonly string[]): Promise<void> {
  let command;
  try {
    command = parseLevitydCommandLine(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`levityd: ${error.message} (see 'levityd --help')\n`);
    process.exit(1);
  }
  if (command.kind === 'help') {
    process.stdout.write(levitydHelp());
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`levityd ${VERSION}\n`);
    return;
  }
  await serve(command.settings);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  say(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
