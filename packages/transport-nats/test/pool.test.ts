// Several agents on one NATS form a pool: a create is taken by exactly one
// agent, placement follows advertised capacity (claimed with compare-and-set),
// tasks are found on their owner, and a killed agent drops off the board when
// its entry's max age passes. Runs on the shared nats-server (JetStream on).
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import {
  OverthereError,
  createMemoryRuntime,
  createSupervisor,
  type Supervisor,
  type TaskInfo,
} from '@overthere/core';
import {
  createNatsAgent,
  createNatsClient,
  openCapacityBoard,
  type NatsAgent,
  type NatsClient,
} from '@overthere/transport-nats';
import { exitOf, spawnSource, testEnv } from '../../../test-support/app-process.js';
import { SHARED_NATS, eventually } from './helpers.js';

const GiB = 1024 ** 3;

interface Pool {
  prefix: string;
  bucket: string;
  agents: { agent: NatsAgent; supervisor: Supervisor }[];
  client: NatsClient;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function deleteBucket(bucket: string): Promise<void> {
  const nc = await connect({ servers: SHARED_NATS });
  try {
    await (await new Kvm(nc).open(bucket)).destroy();
  } catch {
    // never created
  } finally {
    await nc.close();
  }
}

async function startPool(
  memories: number[],
  settings: { intervalMs?: number; ttlMs?: number } = {},
): Promise<Pool> {
  const prefix = `pool-${randomUUID().slice(0, 8)}`;
  const bucket = `${prefix}-capacity`;
  cleanups.push(() => deleteBucket(bucket));
  const agents = [];
  for (const [index, memoryBytes] of memories.entries()) {
    const runtime = createMemoryRuntime({ capacity: { memoryBytes } });
    const supervisor = await createSupervisor({ runtime });
    const agent = await createNatsAgent({
      supervisor,
      runtime,
      servers: SHARED_NATS,
      agentId: `agent-${index}`,
      subjectPrefix: prefix,
      advertiseIntervalMs: settings.intervalMs ?? 500,
      capacityTtlMs: settings.ttlMs ?? 5000,
    });
    cleanups.push(async () => {
      await agent.close();
      await supervisor.close();
      await runtime.dispose();
    });
    agents.push({ agent, supervisor });
  }
  const client = createNatsClient({ servers: SHARED_NATS, subjectPrefix: prefix });
  cleanups.push(() => client.close());
  return { prefix, bucket, agents, client };
}

function owners(pool: Pool, tasks: readonly TaskInfo[]): string[] {
  return tasks.map((task) => {
    const holding = pool.agents.filter(({ supervisor }) =>
      supervisor.list().some((each) => each.id === task.id),
    );
    expect(holding, `task ${task.id} is on ${holding.length} agents`).toHaveLength(1);
    return holding[0]!.agent.agentId;
  });
}

describe('a pool of agents on one NATS', () => {
  it('a create on the queue group is taken by exactly one agent', async () => {
    const pool = await startPool([GiB, GiB, GiB]);
    const nc = await connect({ servers: SHARED_NATS });
    cleanups.push(() => nc.close());
    const tasks: TaskInfo[] = [];
    for (let index = 0; index < 24; index += 1) {
      const reply = await nc.request(
        `${pool.prefix}.create`,
        JSON.stringify({ command: ['sleep', '30'] }),
        { timeout: 5000 },
      );
      tasks.push(reply.json<TaskInfo>());
    }
    expect(new Set(tasks.map((task) => task.id)).size).toBe(24);
    const taken = owners(pool, tasks);
    const total = pool.agents.reduce((sum, { supervisor }) => sum + supervisor.list().length, 0);
    expect(total).toBe(24);
    // The queue group spreads them: more than one agent took some.
    expect(new Set(taken).size).toBeGreaterThan(1);
  });

  it('places each task on the agent with the most room, claiming it with compare-and-set', async () => {
    const pool = await startPool([1 * GiB, 3 * GiB]);
    const spec = { command: ['sleep', '30'], limits: { memoryBytes: GiB } };
    // Four at once: exactly the pool's room. Claims keep two clients from counting on the same room.
    const tasks = await Promise.all([1, 2, 3, 4].map(() => pool.client.create(spec)));
    const placed = owners(pool, tasks);
    expect(placed.filter((agent) => agent === 'agent-1')).toHaveLength(3);
    expect(placed.filter((agent) => agent === 'agent-0')).toHaveLength(1);
    const full = await pool.client.create(spec).catch((error: unknown) => error);
    expect(OverthereError.hasCode(full, 'RESOURCE_EXHAUSTED'), String(full)).toBe(true);
    // Every task is found on its owner by a client that did not create it.
    const other = createNatsClient({ servers: SHARED_NATS, subjectPrefix: pool.prefix });
    cleanups.push(() => other.close());
    for (const [index, task] of tasks.entries()) {
      expect(await other.agentOf(task.id)).toBe(placed[index]);
      expect((await other.get(task.id)).state).toBe('running');
    }
    expect((await other.list({ state: 'running' })).map((task) => task.id).sort()).toEqual(
      tasks.map((task) => task.id).sort(),
    );
    const unknown = await other.get(`no-such-${randomUUID()}`).catch((error: unknown) => error);
    expect(OverthereError.hasCode(unknown, 'NOT_FOUND'), String(unknown)).toBe(true);
  });

  it('lists the agents with their adverts, from the board and by asking them', async () => {
    const pool = await startPool([GiB, 2 * GiB]);
    const fromBoard = await pool.client.agents();
    expect(fromBoard.map((advert) => advert.agent).sort()).toEqual(['agent-0', 'agent-1']);
    expect(fromBoard.find((advert) => advert.agent === 'agent-1')?.capacity.memoryBytes).toBe(
      2 * GiB,
    );
    const asking = createNatsClient({
      servers: SHARED_NATS,
      subjectPrefix: pool.prefix,
      capacityBucket: false,
    });
    cleanups.push(() => asking.close());
    expect((await asking.agents()).map((advert) => advert.agent).sort()).toEqual([
      'agent-0',
      'agent-1',
    ]);
    // A name is claimed by exactly one agent.
    const key = `task-${randomUUID()}`;
    const claims = await Promise.all(pool.agents.map(({ agent }) => agent.claim(key)));
    expect(claims.filter(Boolean)).toHaveLength(1);
  });

  it("a killed agent's capacity entry expires; the pool goes on without it", async () => {
    const prefix = `pool-${randomUUID().slice(0, 8)}`;
    const bucket = `${prefix}-capacity`;
    cleanups.push(() => deleteBucket(bucket));
    const ttlMs = 1500;
    const start = async (agentId: string) => {
      const child = spawnSource(
        'packages/transport-nats/test/fixtures/agent-process.ts',
        [],
        testEnv('AGENT_', {
          NATS_URL: SHARED_NATS,
          AGENT_ID: agentId,
          SUBJECT_PREFIX: prefix,
          CAPACITY_BUCKET: bucket,
          ADVERTISE_INTERVAL_MS: '250',
          CAPACITY_TTL_MS: String(ttlMs),
          AGENT_MEMORY_BYTES: String(GiB),
        }),
      );
      cleanups.push(async () => {
        child.kill('SIGKILL');
        await exitOf(child);
      });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const line = await Promise.race([
        once(child.stdout!, 'data').then(([chunk]) => String(chunk)),
        exitOf(child).then((exit) => `exited ${JSON.stringify(exit)}: ${stderr}`),
      ]);
      expect(line).toBe(`ready ${agentId}\n`);
      return child;
    };
    const doomed = await start('doomed');
    await start('survivor');
    const nc: NatsConnection = await connect({ servers: SHARED_NATS });
    cleanups.push(() => nc.close());
    const board = await openCapacityBoard(nc, { bucket, ttlMs, create: false });
    const listed = async () => (await board.list()).map((entry) => entry.advert.agent).sort();
    expect(await listed()).toEqual(['doomed', 'survivor']);

    doomed.kill('SIGKILL');
    await exitOf(doomed);
    const killedAt = Date.now();
    await eventually(
      async () => ((await listed()).includes('doomed') ? undefined : true),
      ttlMs + 3000,
      'the killed agent to drop off the board',
    );
    expect(Date.now() - killedAt).toBeLessThan(ttlMs + 3000);
    expect(await listed()).toEqual(['survivor']);

    const client = createNatsClient({ servers: SHARED_NATS, subjectPrefix: prefix });
    cleanups.push(() => client.close());
    const task = await client.create({ command: ['exit', '0'] });
    expect(await client.agentOf(task.id)).toBe('survivor');
    expect((await client.wait(task.id)).exit).toEqual({ code: 0, signal: null, reason: 'exited' });
  }, 30_000);
});
