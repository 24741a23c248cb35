// The published contract: the HTTP transport must pass describeTransport, and
// the local runtime reached through it (createRemoteRuntime) describeRuntime.
import { createMemoryRuntime } from '@overthere/core';
import { describeTransport, memoryFixtures } from '@overthere/conformance';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createHttpAgent, createHttpClient, createRemoteRuntime } from '@overthere/transport-http';

describeTransport({
  name: 'http',
  createRuntime: () => createLocalRuntime(),
  start: async ({ supervisor, runtime }) => {
    const token = 'conformance-token';
    const agent = await createHttpAgent({ supervisor, runtime, token });
    const client = createHttpClient({ baseUrl: agent.url, token });
    return {
      client,
      unauthenticatedClient: createHttpClient({ baseUrl: agent.url, token: 'wrong-token' }),
      dropConnections: () => agent.server.server.closeAllConnections(),
      remoteRuntime: () => createRemoteRuntime({ client }),
      close: () => agent.close(),
    };
  },
});

// The same suite on core's in-memory runtime, with its fixtures: the suite
// and the transport depend on nothing the local runtime happens to do.
describeTransport({
  name: 'http (memory runtime)',
  createRuntime: () => createMemoryRuntime(),
  fixtures: memoryFixtures,
  // Its programs write a frame per line at once: keep them all for late readers.
  supervisorOptions: { output: { memoryBytes: 32 * 1024 * 1024 } },
  start: async ({ supervisor, runtime }) => {
    const agent = await createHttpAgent({ supervisor, runtime });
    const client = createHttpClient({ baseUrl: agent.url });
    return {
      client,
      remoteRuntime: () => createRemoteRuntime({ client }),
      close: () => agent.close(),
    };
  },
});
