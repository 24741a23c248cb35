// NATS going away and coming back: an agent reconnects by itself and
// advertises again at once (within 2 s of the server being back), on the
// advert subject and on the capacity board; its clients go on working. And a
// cluster of three nats-servers: killing the one the agent is connected to
// does not lose the agent.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { createMemoryRuntime, createSupervisor, type OutputStream } from '@overthere/core';
import {
  createNatsAgent,
  createNatsClient,
  openCapacityBoard,
  parseAdvert,
} from '@overthere/transport-nats';
import { eventually, freePort, startNatsServer, type NatsServerProcess } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function servedAgent(servers: string | string[], extra: { agentId: string }) {
  const runtime = createMemoryRuntime();
  const supervisor = await createSupervisor({ runtime });
  const agent = await createNatsAgent({
    supervisor,
    runtime,
    servers,
    agentId: extra.agentId,
    // Periodic adverts far apart: what the test sees after a reconnect is the re-advert.
    advertiseIntervalMs: 60_000,
    // Connect to the servers in the order given.
    connectionOptions: { noRandomize: true },
  });
  cleanups.push(async () => {
    await agent.close();
    await supervisor.close();
    await runtime.dispose();
  });
  return { agent, supervisor };
}

describe('reconnects', () => {
  it('a restarted nats-server: the agent reconnects and advertises again within 2 s', async () => {
    const server = await startNatsServer({ jetstream: true });
    cleanups.push(() => server.stop());
    const { agent } = await servedAgent(server.url, { agentId: 'restarted' });
    const client = createNatsClient({ servers: server.url, agent: agent.agentId });
    cleanups.push(() => client.close());
    expect((await client.capacity()).liveTasks).toBe(0);

    const watcher = await connect({
      servers: server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 50,
    });
    cleanups.push(() => watcher.close());

    const board = await openCapacityBoard(watcher, {
      bucket: 'overthere-capacity',
      ttlMs: 0,
      create: false,
    });

    // The watcher's own reconnect, awaited so its reads are not what is being timed.
    const watcherBack = (async () => {
      for await (const status of watcher.status()) if (status.type === 'reconnect') return;
    })();
    await server.kill();
    await server.restart();
    const backAt = Date.now();
    await watcherBack;
    // The board: the store survived the restart, the advert is re-put after it.
    const entry = await eventually(
      async () => {
        const found = (await board.list().catch(() => [])).find(
          (each) => each.advert.agent === 'restarted' && each.advert.time >= backAt,
        );
        return found;
      },
      2000 - (Date.now() - backAt),
      'the advert after the restart',
      25,
    );
    expect(entry.advert.time - backAt).toBeLessThan(2000);
    // And the subject: an advert on demand arrives like the re-advert did.
    const subscription = watcher.subscribe('overthere.advertise', { max: 1 });
    await watcher.flush();
    await agent.advertise();
    for await (const message of subscription) {
      expect(parseAdvert(message.data)?.agent).toBe('restarted');
    }
    // The client's own connection came back too.
    const task = await client.create({ command: ['exit', '3'] });
    expect((await client.wait(task.id)).exit?.code).toBe(3);
  }, 20_000);

  it('a cluster of three: killing the server the agent is on does not lose the agent', async () => {
    const clusterPorts = [await freePort(), await freePort(), await freePort()];
    const name = `overthere-${randomUUID().slice(0, 8)}`;
    // Started together, so each finds the others on its first route attempt.
    const servers = await Promise.all(
      clusterPorts.map((port, index) =>
        startNatsServer({
          cluster: { port, routes: clusterPorts.filter((_, other) => other !== index), name },
        }),
      ),
    );
    for (const server of servers) cleanups.push(() => server.stop());
    const [first, second, third] = servers as [
      NatsServerProcess,
      NatsServerProcess,
      NatsServerProcess,
    ];
    const { agent, supervisor } = await servedAgent([first.url, second.url, third.url], {
      agentId: 'clustered',
    });
    expect(agent.connection.getServer()).toBe(`127.0.0.1:${first.port}`);
    const client = createNatsClient({
      servers: third.url,
      agent: 'clustered',
      capacityBucket: false,
    });
    cleanups.push(() => client.close());
    // Routes and interest take a moment to spread across the cluster.
    await eventually(
      () => client.capacity().catch(() => undefined),
      5000,
      'the agent to be reachable from the third server',
    );

    const task = await client.create({ command: ['cat'], stdin: 'pipe' });
    await client.writeStdin(task.id, 'before\n');
    const seen: string[] = [];
    const streams: OutputStream[] = [];
    const following = (async () => {
      for await (const event of client.output(task.id, { follow: true })) {
        if (event.type === 'frame') {
          seen.push(event.data.toString());
          streams.push(event.stream);
        }
        if (event.type === 'end') return event.task;
      }
      return undefined;
    })();
    await eventually(() => (seen.join('') === 'before\n' ? true : undefined), 5000, 'before');

    const agentBack = (async () => {
      for await (const status of agent.connection.status()) {
        if (status.type === 'reconnect') return status.server;
      }
      return undefined;
    })();
    await first.kill();
    const now = await agentBack;
    expect(now).not.toBe(`127.0.0.1:${first.port}`);
    expect([`127.0.0.1:${second.port}`, `127.0.0.1:${third.port}`]).toContain(
      agent.connection.getServer(),
    );
    await eventually(
      () => client.get(task.id).catch(() => undefined),
      5000,
      'the agent to answer again',
    );
    await client.writeStdin(task.id, 'after\n');
    await client.closeStdin(task.id);
    const final = await following;
    expect(final?.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
    expect(seen.join('')).toBe('before\nafter\n');
    expect(streams.every((stream) => stream === 'stdout')).toBe(true);
    expect(supervisor.get(task.id).state).toBe('exited');
    // New work after the failover.
    const next = await client.create({ command: ['exit', '0'] });
    expect((await client.wait(next.id)).state).toBe('exited');
  }, 30_000);
});
