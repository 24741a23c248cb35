/**
 * NATS going away under running narc agents: a restarted nats-server (the
 * agents reconnect and advertise again at once, not at their next period)
 * and a 3-server cluster losing the server an agent is connected to.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { openCapacityBoard } from '@overthere/transport-nats';
import { afterAll, describe, expect, it } from 'vitest';
import {
  freePort,
  natsClient,
  publish,
  runSsh,
  startNarc,
  startNatsServer,
  waitFor,
  type NarcProcess,
  type NatsServerProcess,
} from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** Adverts seen on `task.advertise`, with when they arrived. */
function collectAdverts(client: NatsConnection): { id: string; at: number }[] {
  const seen: { id: string; at: number }[] = [];
  client.subscribe('task.advertise', {
    callback: (_error, message) => {
      seen.push({ id: message.json<{ id: string }>().id, at: Date.now() });
    },
  });
  return seen;
}

/** Start a task through `client` and run a command in it over SSH on whichever agent took it. */
async function startAndRun(client: NatsConnection, agents: NarcProcess[], name: string) {
  const task = { task: `${name}-${process.pid}`, token: randomBytes(8).toString('hex') };
  await publish(client, 'task.start', { task: task.task, secure_token: task.token });
  const started = new RegExp(`"task":"${task.task}".*"msg":"task started"`);
  const owner = await waitFor('the task to start', () =>
    agents.find((agent) => started.test(agent.log())),
  );
  return runSsh({ port: owner.sshPort, ...task, command: 'echo served' });
}

describe('narc agents when NATS fails', () => {
  it('nats-server restarted: both agents reconnect and advertise again within 2 s', async () => {
    const nats = await startNatsServer({ jetstream: true });
    cleanups.push(() => nats.stop());
    // Adverts every 60 s: the ones after the restart can only come from the reconnect.
    const args = ['--pool', `restart${process.pid}`, '--advertise-interval-ms', '60000'];
    const agents = await Promise.all(
      ['one', 'two'].map((name) =>
        startNarc({ nats: nats.url, agentId: `restart-${name}-${process.pid}`, args }),
      ),
    );
    for (const agent of agents) cleanups.push(() => agent.dispose());

    await nats.kill();
    await nats.restart();
    const restartedAt = Date.now();
    // The board (JetStream kept its store) shows fresh adverts from both.
    const client = await natsClient(nats.url);
    cleanups.push(() => client.close());
    const board = await openCapacityBoard(client, {
      bucket: `restart${process.pid}-capacity`,
      ttlMs: 180_000,
      create: false,
    });
    const fresh = await waitFor(
      'fresh adverts from both agents on the board',
      async () => {
        const entries = (await board.list()).filter((entry) => entry.advert.time >= restartedAt);
        const ids = new Set(entries.map((entry) => entry.advert.agent));
        return agents.every((agent) => ids.has(agent.agentId)) ? Date.now() : undefined;
      },
      5_000,
    );
    expect(fresh - restartedAt).toBeLessThan(2_000);
    for (const agent of agents) expect(agent.log()).toMatch(/reconnected to NATS; advertising/);

    // And they take work again.
    const result = await startAndRun(client, agents, 'after-restart');
    expect(result.stdout).toBe('served\n');
  }, 60_000);

  it('a 3-server cluster: killing the server an agent is connected to does not lose the agent', async () => {
    const clusterPorts = await Promise.all([freePort(), freePort(), freePort()]);
    const servers: NatsServerProcess[] = [];
    for (const [index, port] of clusterPorts.entries()) {
      const server = await startNatsServer({
        cluster: {
          port,
          routes: clusterPorts.filter((_, other) => other !== index),
          name: 'narc-test',
        },
      });
      servers.push(server);
      cleanups.push(() => server.stop());
    }
    const [first, , third] = servers;
    // Told about the first server only: the rest it learns from the cluster.
    const agent = await startNarc({
      nats: first!.url,
      agentId: `cluster-${process.pid}`,
      args: ['--advertise-interval-ms', '60000'],
    });
    cleanups.push(() => agent.dispose());
    expect(agent.log()).toMatch(/no JetStream/);
    const client = await natsClient(third!.url);
    cleanups.push(() => client.close());
    const adverts = collectAdverts(client);
    await first!.kill();
    const killedAt = Date.now();
    await agent.waitForLog(/reconnected to NATS; advertising/, 0, 10_000);
    await waitFor('an advert through the third server', () =>
      adverts.some((advert) => advert.id === agent.agentId && advert.at >= killedAt)
        ? true
        : undefined,
    );
    const result = await startAndRun(client, [agent], 'after-failover');
    expect(result.stdout).toBe('served\n');
  }, 60_000);
});
