/**
 * `smartmob-agent`: parse the command line, start the agent, print where it
 * listens, print process output, and on SIGINT/SIGTERM stop every process and
 * exit 0.
 */
import { pino } from 'pino';
import type { Logger } from '@overthere/core';
import { startSmartmobAgent, type SmartmobAgent } from './agent.js';
import { parseCommandLine, usage, UsageError, type ServeSettings } from './cli.js';
import { VERSION } from './version.js';

/** After the kill grace, a shutdown that is stuck exits anyway after this long. */
const SHUTDOWN_SLACK_MS = 5_000;

function say(line: string): void {
  process.stderr.write(`smartmob-agent: ${line}\n`);
}

/** Console lines on stdout, `TIME SLUG: LINE`, written in batches per tick. */
function createOutputPrinter(): (slug: string, line: Buffer, time: number) => void {
  let batch: string[] = [];
  const flush = () => {
    const text = batch.join('');
    batch = [];
    process.stdout.write(text);
  };
  return (slug, line, time) => {
    if (batch.length === 0) setImmediate(flush);
    batch.push(`${new Date(time).toISOString()} ${slug}: ${line.toString('utf8')}\n`);
  };
}

async function serve(settings: ServeSettings): Promise<void> {
  const logger = pino(
    { name: 'smartmob-agent', level: settings.logLevel },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;

  // Set once listening; a signal before that just exits.
  const running: { agent?: SmartmobAgent } = {};
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      say(`${signal} again: exiting without waiting for processes`);
      process.exit(1);
    }
    stopping = true;
    say(`${signal}: stopping processes`);
    const force = setTimeout(() => {
      say('shutdown is taking too long: exiting now');
      process.exit(1);
    }, settings.policy.killGraceMs + SHUTDOWN_SLACK_MS);
    force.unref();
    void (running.agent?.close() ?? Promise.resolve()).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  // stdout closed by a reader that went away: keep serving.
  process.stdout.on('error', () => undefined);

  const { logLevel: _logLevel, logOutput, ...options } = settings;
  const agent = await startSmartmobAgent({
    ...options,
    logger,
    ...(logOutput ? { onLine: createOutputPrinter() } : {}),
  });
  running.agent = agent;
  const auth = settings.token === undefined ? '' : ' (bearer token required)';
  say(`${VERSION} listening on ${agent.url}${auth}, data in ${settings.dataDir}`);
}

async function main(args: readonly string[]): Promise<void> {
  let command;
  try {
    command = parseCommandLine(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`smartmob-agent: ${error.message}\n${usage()}`);
    process.exit(2);
  }
  if (command.kind === 'help') {
    process.stdout.write(usage());
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`smartmob-agent ${VERSION}\n`);
    return;
  }
  await serve(command.settings);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  say(`cannot start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
