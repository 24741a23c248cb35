// The loopback rule, token handling and graceful close of createHttpAgent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, OverthereError, type Supervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createHttpAgent, createHttpClient } from '@overthere/transport-http';
import type { Runtime } from '@overthere/core';
import { curl, sh } from './helpers.js';

let runtime: Runtime;
let supervisor: Supervisor;
beforeAll(async () => {
  runtime = createLocalRuntime();
  supervisor = await createSupervisor({ runtime });
});
afterAll(async () => {
  await supervisor.close();
  await runtime.dispose();
});

describe('listening', () => {
  it('refuses to listen on 0.0.0.0 (or ::) without a token', async () => {
    for (const host of ['0.0.0.0', '::']) {
      const error = await createHttpAgent({ supervisor, host }).catch(
        (failure: unknown) => failure,
      );
      expect(OverthereError.hasCode(error, 'FAILED_PRECONDITION'), String(error)).toBe(true);
      expect((error as Error).message).toContain('without auth');
    }
  });

  it('listens on 0.0.0.0 with a token, and every route but /healthz needs it', async () => {
    const agent = await createHttpAgent({ supervisor, host: '0.0.0.0', token: 'secret' });
    try {
      const port = new URL(agent.url).port;
      const local = `http://127.0.0.1:${port}`;
      expect((await curl([`${local}/healthz`])).status).toBe(200);
      expect((await curl([`${local}/v1/tasks`])).status).toBe(401);
      expect((await curl(['-H', 'Authorization: bearer secret', `${local}/v1/tasks`])).status).toBe(
        200,
      );
    } finally {
      await agent.close();
    }
  });

  it('listens on 0.0.0.0 without a token only when told allowUnauthenticated', async () => {
    const agent = await createHttpAgent({
      supervisor,
      host: '0.0.0.0',
      allowUnauthenticated: true,
    });
    try {
      const port = new URL(agent.url).port;
      expect((await curl([`http://127.0.0.1:${port}/v1/tasks`])).status).toBe(200);
    } finally {
      await agent.close();
    }
  });

  it('rejects an empty token', async () => {
    const error = await createHttpAgent({ supervisor, token: '' }).catch(
      (failure: unknown) => failure,
    );
    expect(OverthereError.hasCode(error, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('without a token on loopback, routes are open', async () => {
    const agent = await createHttpAgent({ supervisor });
    try {
      const client = createHttpClient({ baseUrl: agent.url });
      expect(Array.isArray(await client.list())).toBe(true);
    } finally {
      await agent.close();
    }
  });
});

describe('close', () => {
  it('waits for an in-flight request, ends streams, then refuses connections', async () => {
    const agent = await createHttpAgent({ supervisor, token: 't' });
    const client = createHttpClient({ baseUrl: agent.url, token: 't' });
    const task = await client.create({
      command: sh('trap "" TERM; echo ready; while :; do sleep 1; done'),
      kill: { graceMs: 300 },
    });
    for await (const event of client.output(task.id, { follow: true })) {
      if (event.type === 'frame') break;
    }
    // A stop with wait: true is in flight for graceMs when close() starts.
    const stopping = client.stop(task.id, { signal: 'SIGTERM' });
    await new Promise<void>((resolve) => {
      const check = () =>
        supervisor.get(task.id).state === 'stopping' ? resolve() : setImmediate(check);
      check();
    });
    await agent.close();
    const stopped = await stopping;
    expect(stopped.exit?.reason).toBe('killed');
    const refused = await client.get(task.id).catch((error: unknown) => error);
    expect(OverthereError.hasCode(refused, 'UNAVAILABLE')).toBe(true);
  });

  it('a client reading output resumes across an agent restart on the same port', async () => {
    const first = await createHttpAgent({ supervisor, token: 't' });
    const port = Number(new URL(first.url).port);
    const client = createHttpClient({
      baseUrl: first.url,
      token: 't',
      reconnectDelayMs: 50,
      maxReconnects: 10,
    });
    const task = await client.create({ command: ['cat'], stdin: 'pipe' });
    const chunks: Buffer[] = [];
    let sawFirst: () => void = () => undefined;
    const firstSeen = new Promise<void>((resolve) => (sawFirst = resolve));
    const reading = (async () => {
      for await (const event of client.output(task.id, { follow: true })) {
        if (event.type === 'frame') {
          chunks.push(event.data);
          sawFirst();
        }
      }
    })();
    await supervisor.writeStdin(task.id, 'before restart\n');
    await firstSeen;
    await first.close();
    await supervisor.writeStdin(task.id, 'while down\n');
    const second = await createHttpAgent({ supervisor, token: 't', port });
    try {
      await supervisor.writeStdin(task.id, 'after restart\n');
      await supervisor.closeStdin(task.id);
      await reading;
      expect(Buffer.concat(chunks).toString()).toBe('before restart\nwhile down\nafter restart\n');
    } finally {
      await second.close();
    }
  });

  it('an output stream gives up with UNAVAILABLE when the agent stays away', async () => {
    const agent = await createHttpAgent({ supervisor, token: 't' });
    const client = createHttpClient({
      baseUrl: agent.url,
      token: 't',
      reconnectDelayMs: 10,
      maxReconnects: 3,
    });
    const task = await client.create({ command: ['sleep', '30'] });
    const reading = (async () => {
      for await (const _event of client.output(task.id, { follow: true })) {
        // nothing comes
      }
    })();
    const waitingForStream = new Promise<void>((resolve) => {
      const check = () => {
        agent.server.server.getConnections((_error, count) =>
          count > 0 ? resolve() : setTimeout(check, 5),
        );
      };
      check();
    });
    await waitingForStream;
    await agent.close();
    const error = await reading.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(OverthereError.hasCode(error, 'UNAVAILABLE'), String(error)).toBe(true);
    await supervisor.stop(task.id, { signal: 'SIGKILL' });
  });

  it('uses the fetch it is given', async () => {
    const agent = await createHttpAgent({ supervisor, token: 't' });
    try {
      const seen: string[] = [];
      const client = createHttpClient({
        baseUrl: `${agent.url}/`,
        token: 't',
        fetch: (input, init) => {
          seen.push(
            `${init?.method ?? 'GET'} ${input instanceof Request ? input.url : input.toString()}`,
          );
          return fetch(input, init);
        },
      });
      await client.capacity();
      expect(seen).toEqual([`GET ${agent.url}/v1/capacity`]);
    } finally {
      await agent.close();
    }
  });
});
