/**
 * overthere over NATS beside bare NATS, on the shared nats-server
 * (127.0.0.1:4222), agent and client in this process on connections of their own:
 *
 * - create + exit round trip of `/bin/true` at concurrency 1 (create, then
 *   `wait` until final) beside a bare NATS request-reply on the same server —
 *   the floor any NATS protocol pays;
 * - reading 64 MiB of a finished task's output by cursor (pulled batches)
 *   beside bare NATS pulls (a small request, a reply of the batch size)
 *   moving the same bytes.
 */
import { randomUUID } from 'node:crypto';
import { createSupervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createNatsAgent, createNatsClient, openNatsConnection } from '@overthere/transport-nats';
import { compare, quantile, rawSpawnTrue, runConcurrently, type BenchResult } from './report.js';

const NATS_URL = process.env.OVERTHERE_NATS_URL ?? 'nats://127.0.0.1:4222';
const OUTPUT_BYTES = 64 * 1024 * 1024;

export async function natsBenchmarks(): Promise<BenchResult[]> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const runtime = createLocalRuntime();
  // Memory-only output: keep all of the big output for the replay.
  const supervisor = await createSupervisor({ runtime, output: { memoryBytes: 80 * 1024 * 1024 } });
  const agent = await createNatsAgent({
    supervisor,
    runtime,
    servers: NATS_URL,
    subjectPrefix: prefix,
    capacityBucket: false,
  });
  const client = createNatsClient({
    servers: NATS_URL,
    subjectPrefix: prefix,
    agent: agent.agentId,
  });
  // The bare baseline: an echo responder and a requester, each on its own connection.
  const responder = await openNatsConnection({ servers: NATS_URL });
  const requester = await openNatsConnection({ servers: NATS_URL });
  const echo = `${prefix}.echo`;
  responder.subscribe(echo, {
    callback: (_error, message) => {
      message.respond(message.data);
    },
  });
  // Bare pulls: a tiny request answered with a batch-sized reply, like the output endpoint's.
  const pull = `${prefix}.pull`;
  const batch = new Uint8Array(1024 * 1024 - 32 * 1024);
  responder.subscribe(pull, {
    callback: (_error, message) => {
      message.respond(batch);
    },
  });
  await responder.flush();
  const results: BenchResult[] = [];
  try {
    const payload = JSON.stringify({ command: ['/bin/true'] });
    const bare = async (): Promise<void> => {
      await requester.request(echo, payload, { timeout: 5000 });
    };
    const finished: string[] = [];
    const roundTrip = async (): Promise<void> => {
      const task = await client.create({ command: ['/bin/true'] });
      await client.wait(task.id);
      finished.push(task.id);
    };
    const tidy = async (): Promise<void> => {
      for (const id of finished.splice(0)) await supervisor.remove(id);
    };
    await runConcurrently(50, 1, bare);
    await runConcurrently(20, 1, roundTrip);
    await tidy();
    const bareLatencies: number[] = [];
    const ours: number[] = [];
    // For scale: what the process itself costs, spawned here without any protocol.
    const spawns: number[] = [];
    // Alternate rounds so machine noise hits both alike.
    for (let round = 0; round < 4; round += 1) {
      bareLatencies.push(...(await runConcurrently(100, 1, bare)).latenciesMs);
      ours.push(...(await runConcurrently(50, 1, roundTrip)).latenciesMs);
      spawns.push(...(await runConcurrently(50, 1, rawSpawnTrue)).latenciesMs);
      await tidy();
    }
    results.push(
      compare(
        'nats create + wait→exited /bin/true c=1 p50',
        'ms',
        'lower',
        quantile(ours, 0.5),
        { name: 'bare NATS request-reply', value: quantile(bareLatencies, 0.5) },
        undefined,
        {
          'p99 ms': quantile(ours, 0.99),
          'bare p99 ms': quantile(bareLatencies, 0.99),
          'raw spawn p50 ms': quantile(spawns, 0.5),
        },
      ),
    );

    // Output by cursor: a finished task's 64 MiB, pulled in batches.
    const big = await supervisor.create({
      command: ['head', '-c', String(OUTPUT_BYTES), '/dev/zero'],
    });
    await supervisor.wait(big.id);
    const readBare = async (): Promise<number> => {
      let bytes = 0;
      while (bytes < OUTPUT_BYTES) {
        const reply = await requester.request(pull, '{}', { timeout: 5000 });
        bytes += Math.min(reply.data.length, OUTPUT_BYTES - bytes);
      }
      return bytes;
    };
    const readNats = async (): Promise<number> => {
      let bytes = 0;
      for await (const event of client.output(big.id)) {
        if (event.type === 'frame') bytes += event.data.length;
      }
      return bytes;
    };
    const timed = async (read: () => Promise<number>): Promise<number> => {
      const t0 = performance.now();
      const bytes = await read();
      if (bytes !== OUTPUT_BYTES) throw new Error(`read ${bytes} bytes, not ${OUTPUT_BYTES}`);
      return OUTPUT_BYTES / 1024 / 1024 / ((performance.now() - t0) / 1000);
    };
    await timed(readBare);
    await timed(readNats);
    const bareRates: number[] = [];
    const overNats: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      bareRates.push(await timed(readBare));
      overNats.push(await timed(readNats));
    }
    results.push(
      compare('nats output replay 64 MiB by cursor', 'MiB/s', 'higher', quantile(overNats, 0.5), {
        name: 'bare NATS pulls, same sizes',
        value: quantile(bareRates, 0.5),
      }),
    );
  } finally {
    await client.close();
    await requester.close();
    await responder.close();
    await agent.close();
    await supervisor.close();
    await runtime.dispose();
  }
  return results;
}
