// The published contract: the NATS transport must pass describeTransport, and
// the local runtime reached through it (createRemoteRuntime over the NATS
// client) describeRuntime. The server requires a user and password, so the
// auth checks run too; the client goes through a proxy the suite can cut.
import { randomUUID } from 'node:crypto';
import { afterAll } from 'vitest';
import { createMemoryRuntime } from '@overthere/core';
import { describeTransport, memoryFixtures } from '@overthere/conformance';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createRemoteRuntime } from '@overthere/transport-http';
import { createNatsAgent, createNatsClient } from '@overthere/transport-nats';
import type { TransportStartContext, TransportHarness } from '@overthere/conformance';
import { startNatsServer, startProxy } from './helpers.js';

const credentials = { user: 'overthere', pass: `pass-${randomUUID()}` };
const server = await startNatsServer({ jetstream: true, ...credentials });
afterAll(() => server.stop());

async function serve(
  { supervisor, runtime }: TransportStartContext,
  prefix: string,
): Promise<TransportHarness> {
  const agent = await createNatsAgent({
    supervisor,
    runtime,
    servers: server.url,
    ...credentials,
    subjectPrefix: prefix,
  });
  const proxy = await startProxy(server.port);
  const client = createNatsClient({
    servers: proxy.url,
    ...credentials,
    subjectPrefix: prefix,
    agent: agent.agentId,
  });
  const unauthenticated = createNatsClient({
    servers: server.url,
    user: credentials.user,
    pass: 'wrong-password',
    subjectPrefix: prefix,
    agent: agent.agentId,
  });
  return {
    client,
    unauthenticatedClient: unauthenticated,
    dropConnections: () => proxy.drop(),
    remoteRuntime: () => createRemoteRuntime({ client }),
    async close() {
      await client.close();
      await unauthenticated.close();
      await agent.close();
      await proxy.close();
    },
  };
}

describeTransport({
  name: 'nats',
  createRuntime: () => createLocalRuntime(),
  start: (context) => serve(context, 'conformance'),
});

// The same suite on core's in-memory runtime, with its fixtures.
describeTransport({
  name: 'nats (memory runtime)',
  createRuntime: () => createMemoryRuntime(),
  fixtures: memoryFixtures,
  supervisorOptions: { output: { memoryBytes: 32 * 1024 * 1024 } },
  start: (context) => serve(context, 'conformance-memory'),
});
