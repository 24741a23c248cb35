/**
 * `narc`: read the settings, start the agent, say where it listens, and stop
 * gracefully (sandboxes destroyed, NATS drained) on SIGINT or SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { lockDataDir, writeFileAtomic, type Logger } from '@overthere/core';
import type { NatsConnectOptions } from '@overthere/transport-nats';
import { parseCommandLine, usage, UsageError, type NarcSettings } from './cli.js';
import { createNarcAgent, type NarcAgent } from './narc-agent.js';
import { VERSION } from './version.js';

/** A shutdown stuck this long exits anyway. */
const SHUTDOWN_LIMIT_MS = 30_000;

function say(line: string): void {
  process.stderr.write(`narc: ${line}\n`);
}

/** The agent id kept in the data dir, generated on the first run. */
async function storedAgentId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'agent-id');
  const existing = await readFile(file, 'utf8').catch(() => undefined);
  const id = existing?.trim();
  if (id !== undefined && /^[A-Za-z0-9_-]{1,64}$/.test(id)) return id;
  const generated = randomBytes(8).toString('hex');
  await writeFileAtomic(file, `${generated}\n`);
  return generated;
}

async function natsOptions(settings: NarcSettings): Promise<NatsConnectOptions> {
  return {
    servers: settings.natsServers,
    ...(settings.natsUser === undefined ? {} : { user: settings.natsUser }),
    ...(settings.natsPassword === undefined ? {} : { pass: settings.natsPassword }),
    ...(settings.natsToken === undefined ? {} : { token: settings.natsToken }),
    ...(settings.natsCredentials === undefined
      ? {}
      : { credentials: await readFile(settings.natsCredentials) }),
    ...(settings.natsCa === undefined ? {} : { tls: { caFile: settings.natsCa } }),
  };
}

async function serve(settings: NarcSettings): Promise<void> {
  const logger = pino(
    { name: 'narc', level: settings.logLevel },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;
  await mkdir(settings.dataDir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(settings.dataDir, 'narc');
  let agent: NarcAgent | undefined;
  let stopping = false;
  const shutdown = (why: string): void => {
    if (stopping) {
      say(`${why} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    say(`${why}: destroying tasks and leaving NATS`);
    const force = setTimeout(() => {
      say('shutdown is taking too long: exiting now');
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    force.unref();
    void (agent?.close() ?? Promise.resolve())
      .then(() => lock.release())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  try {
    agent = await createNarcAgent({
      agentId: settings.agentId ?? (await storedAgentId(settings.dataDir)),
      nats: await natsOptions(settings),
      dataDir: settings.dataDir,
      sshHost: settings.sshHost,
      sshPort: settings.sshPort,
      image: settings.image,
      shell: settings.shell,
      advertiseIntervalMs: settings.advertiseIntervalMs,
      pool: settings.pool,
      ...(settings.network === undefined ? {} : { network: settings.network }),
      ...(settings.capacityTtlMs === undefined ? {} : { capacityTtlMs: settings.capacityTtlMs }),
      ...(settings.memoryMegabytes === undefined
        ? {}
        : { memoryMegabytes: settings.memoryMegabytes }),
      ...(settings.diskMegabytes === undefined ? {} : { diskMegabytes: settings.diskMegabytes }),
      logger,
    });
  } catch (error) {
    await lock.release();
    throw error;
  }
  const { host, port } = agent.ssh;
  say(
    `agent ${agent.id} listening for ssh on ${host}:${port} (host key ${agent.hostKeyFingerprint}), ` +
      `NATS ${settings.natsServers.join(',')}${agent.jetstream ? '' : ' (no JetStream)'}`,
  );
}

async function main(): Promise<void> {
  let command;
  try {
    command = parseCommandLine(process.argv.slice(2), process.env, (file) =>
      readFileSync(file, 'utf8'),
    );
  } catch (error) {
    if (error instanceof UsageError) {
      say(error.message);
      process.stderr.write(usage());
      process.exit(2);
    }
    throw error;
  }
  if (command.kind === 'help') {
    process.stdout.write(usage());
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`narc ${VERSION}\n`);
    return;
  }
  await serve(command.settings);
}

main().catch((error: unknown) => {
  say(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
