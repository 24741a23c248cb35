/**
 * `narc` as a process: help, version, bad settings, an unreachable NATS, and
 * a graceful stop that destroys the task containers.
 */
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSource, testEnv } from '../../../test-support/app-process.js';
import {
  freePort,
  natsClient,
  publish,
  startNarc,
  startNatsServer,
  taskContainers,
  type NatsServerProcess,
} from './helpers.js';

const MAIN = path.join('apps', 'narc', 'src', 'main.ts');

const runCli = (args: string[], env: Record<string, string> = {}) =>
  runSource(MAIN, args, testEnv('NARC_', env));

let nats: NatsServerProcess;
beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
});
afterAll(async () => {
  await nats?.stop();
});

describe('narc command line', () => {
  it('--help and --version print and exit 0; a bad flag or config exits 2', async () => {
    const [help, version, bad, config] = await Promise.all([
      runCli(['--help']),
      runCli(['--version']),
      runCli(['--ssh-port', 'many']),
      runCli([], { NARC_CONFIG: '/nonexistent/narc.json' }),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: narc/);
    expect(help.stdout).toContain('--ssh-port PORT, NARC_SSH_PORT');
    expect(version).toMatchObject({ code: 0, stdout: 'narc 0.1.0\n' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('narc: --ssh-port: must be a whole number');
    expect(config.code).toBe(2);
    expect(config.stderr).toContain('config file /nonexistent/narc.json');
  });

  it('an unreachable NATS is a clear error, exit 1', async () => {
    const port = await freePort();
    const result = await runCli([
      '--nats',
      `nats://127.0.0.1:${port}`,
      '--data-dir',
      path.join(os.tmpdir(), `narc-unreachable-${process.pid}`),
      '--ssh-port',
      '0',
    ]);
    await rm(path.join(os.tmpdir(), `narc-unreachable-${process.pid}`), {
      recursive: true,
      force: true,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/narc: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+/);
  });

  it('reads a JSON config file; SIGTERM destroys the containers and exits 0', async () => {
    const agentId = `cli-${process.pid}`;
    const configFile = path.join(os.tmpdir(), `narc-${process.pid}.json`);
    await writeFile(configFile, JSON.stringify({ memoryMegabytes: 300, diskMegabytes: 40 }));
    const narc = await startNarc({ nats: nats.url, agentId, args: ['--config', configFile] });
    try {
      expect(narc.log()).toMatch(/"availableMemory":300,"availableDisk":40/);
      const client = await natsClient(nats.url);
      const task = `cli-task-${process.pid}`;
      await publish(client, 'task.start', {
        task,
        secure_token: randomBytes(8).toString('hex'),
      });
      await client.close();
      await narc.waitForLog(new RegExp(`"task":"${task}".*"msg":"task started"`));
      expect(await taskContainers(task)).toHaveLength(1);
      const exit = await narc.stop('SIGTERM');
      expect(exit).toEqual({ code: 0, signal: null });
      expect(await taskContainers(task)).toEqual([]);
      expect(narc.log()).toContain('narc: SIGTERM: destroying tasks and leaving NATS');
    } finally {
      await narc.dispose();
      await rm(configFile, { force: true });
    }
  }, 30_000);
});
