// The published contract: the HTTP transport must pass describeTransport, and
// the local runtime reached through it (createRemoteRuntime) describeRuntime.
import { describeTransport } from '@overthere/conformance';
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
