/**
 * Two narc agents on one nats-server with JetStream form one pool: each
 * start is taken by exactly one agent, the one with the most room, and an
 * agent that dies drops off the capacity board.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { openCapacityBoard } from '@overthere/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  natsClient,
  publish,
  runSsh,
  startNarc,
  startNatsServer,
  taskContainers,
  waitFor,
  type NarcProcess,
  type NatsServerProcess,
} from './helpers.js';

const POOL = `pool${process.pid}`;
const INTERVAL_MS = 500;
const TTL_MS = 1_500;

let nats: NatsServerProcess;
let client: NatsConnection;
let small: NarcProcess;
let big: NarcProcess;

const started = (agent: NarcProcess, task: string): boolean =>
  new RegExp(`"task":"${task}".*"msg":"task started"`).test(agent.log());

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
  client = await natsClient(nats.url);
  const common = [
    '--pool',
    POOL,
    '--advertise-interval-ms',
    String(INTERVAL_MS),
    '--capacity-ttl-ms',
    String(TTL_MS),
    '--disk-mb',
    '256',
  ];
  [small, big] = await Promise.all([
    startNarc({
      nats: nats.url,
      agentId: `small-${process.pid}`,
      args: [...common, '--memory-mb', '512'],
    }),
    startNarc({
      nats: nats.url,
      agentId: `big-${process.pid}`,
      args: [...common, '--memory-mb', '2048'],
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([small?.dispose(), big?.dispose()]);
  await client?.close();
  await nats?.stop();
});

describe('a pool of narc agents', () => {
  it('each start (sent twice) is taken by exactly one agent, the one with the most room', async () => {
    // Both agents have heard each other once the next round of adverts is out.
    const heard = new Set<string>();
    const adverts = client.subscribe('task.advertise', {
      callback: (_error, message) => {
        heard.add(message.json<{ id: string }>().id);
      },
    });
    await waitFor('adverts from both agents', () => (heard.size >= 2 ? true : undefined));
    adverts.unsubscribe();
    // The queue group hands starts out at random: go on until the small agent
    // got at least one (and forwarded it), 3 starts at least, 16 at most.
    const tasks: { task: string; token: string }[] = [];
    const forwarded = () => /"msg":"task\.start forwarded"/.test(small.log());
    while (tasks.length < 16 && (tasks.length < 3 || !forwarded())) {
      const task = {
        task: `pooled-${process.pid}-${tasks.length}`,
        token: randomBytes(8).toString('hex'),
      };
      tasks.push(task);
      const payload = { task: task.task, secure_token: task.token, memory_limit: 64 };
      await publish(client, 'task.start', payload);
      await publish(client, 'task.start', payload);
      await waitFor('the start to be taken', () =>
        started(big, task.task) || started(small, task.task) ? true : undefined,
      );
    }
    expect(forwarded()).toBe(true);
    await waitFor('every task started', () =>
      tasks.every(({ task }) => started(small, task) || started(big, task)) ? true : undefined,
    );
    for (const { task } of tasks) {
      // Exactly once: on the big agent (2048 MB beats 512 MB), never on the small one.
      expect(started(big, task), `${task}:\n${small.log()}`).toBe(true);
      expect(started(small, task)).toBe(false);
      expect(
        big.log().match(new RegExp(`"task":"${task}".*"msg":"task started"`, 'g')),
      ).toHaveLength(1);
      expect(await taskContainers(task)).toHaveLength(1);
    }
    const duplicates = () =>
      `${small.log()}${big.log()}`.match(/duplicate task\.start ignored/g)?.length ?? 0;
    await waitFor('every second start ignored', () =>
      duplicates() >= tasks.length ? true : undefined,
    );

    // The owner serves the console; the other agent does not know the task.
    const [first] = tasks;
    const other = await runSsh({ port: small.sshPort, ...first!, command: 'true' });
    expect(other.code).toBe(255);
    const owner = await runSsh({ port: big.sshPort, ...first!, command: 'echo owned' });
    expect(owner.stdout).toBe('owned\n');

    // task.stop reaches every agent; the owner destroys the rest.
    for (const { task } of tasks.slice(1)) await publish(client, 'task.stop', { task });
    await waitFor('every container removed', async () => {
      for (const { task } of tasks) if ((await taskContainers(task)).length > 0) return undefined;
      return true;
    });
  }, 60_000);

  it('a start that fits nowhere is refused with a log line', async () => {
    const task = `too-big-${process.pid}`;
    await publish(client, 'task.start', { task, secure_token: 'x', memory_limit: 4096 });
    await waitFor('the refusal', () =>
      /task\.start refused: it does not fit/.test(`${small.log()}${big.log()}`) ? true : undefined,
    );
    expect(started(small, task) || started(big, task)).toBe(false);
  });

  it('a killed agent drops off the capacity board', async () => {
    const board = await openCapacityBoard(client, {
      bucket: `${POOL}-capacity`,
      ttlMs: TTL_MS,
      create: false,
    });
    // A key put while the listing runs may come twice.
    const agents = async () =>
      [...new Set((await board.list()).map((entry) => entry.advert.agent))].sort();
    expect(await agents()).toEqual([big.agentId, small.agentId].sort());
    await small.stop('SIGKILL');
    const killedAt = Date.now();
    await waitFor(
      'the entry to expire',
      async () => ((await agents()).includes(small.agentId) ? undefined : true),
      TTL_MS + 5_000,
      100,
    );
    expect(Date.now() - killedAt).toBeLessThan(TTL_MS + 5_000);
    expect(await agents()).toEqual([big.agentId]);
  });
});
