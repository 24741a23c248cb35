// The wire as other NATS clients see it: discovery and stats through $SRV.*,
// errors as {code, message} with the micro service error headers, bad input
// refused without disturbing anything; large output in slices under the
// batch size; live output on the per-task subject (watch) and attach.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Svcm, type ServiceInfo, type ServiceStats } from '@nats-io/services';
import { OverthereError, createSupervisor, type Supervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import {
  SERVICE_NAME,
  createNatsAgent,
  createNatsClient,
  type NatsAgent,
  type NatsClient,
  type NatsOutputEvent,
} from '@overthere/transport-nats';
import { SHARED_NATS } from './helpers.js';

const prefix = `protocol-${randomUUID().slice(0, 8)}`;
const runtime = createLocalRuntime();
let supervisor: Supervisor;
let agent: NatsAgent;
let client: NatsClient;
let raw: NatsConnection;

beforeAll(async () => {
  supervisor = await createSupervisor({ runtime });
  agent = await createNatsAgent({
    supervisor,
    runtime,
    servers: SHARED_NATS,
    subjectPrefix: prefix,
    capacityBucket: false,
  });
  client = createNatsClient({ servers: SHARED_NATS, subjectPrefix: prefix, agent: agent.agentId });
  raw = await connect({ servers: SHARED_NATS });
});

afterAll(async () => {
  await client.close();
  await raw.close();
  await agent.close();
  await supervisor.close();
  await runtime.dispose();
});

const subject = (operation: string) => `${prefix}.agent.${agent.agentId}.${operation}`;

async function rawRequest(operation: string, body: string | Uint8Array) {
  const reply = await raw.request(subject(operation), body, { timeout: 5000 });
  return {
    code: reply.headers?.get('Nats-Service-Error-Code'),
    description: reply.headers?.get('Nats-Service-Error'),
    body: reply.string() === '' ? undefined : (reply.json<Record<string, unknown>>() as unknown),
  };
}

async function collect(events: AsyncIterable<NatsOutputEvent>) {
  const frames: Extract<NatsOutputEvent, { type: 'frame' }>[] = [];
  let end: Extract<NatsOutputEvent, { type: 'end' }> | undefined;
  for await (const event of events) {
    if (event.type === 'frame') frames.push(event);
    if (event.type === 'end') end = event;
  }
  return { frames, end, data: Buffer.concat(frames.map((frame) => frame.data)) };
}

describe('the wire', () => {
  it('is discoverable through $SRV.INFO, and $SRV.STATS counts requests and errors', async () => {
    const services = new Svcm(raw as unknown as ConstructorParameters<typeof Svcm>[0]);
    const infos: ServiceInfo[] = [];
    for await (const info of await services.client().info(SERVICE_NAME)) infos.push(info);
    const mine = infos.find((info) => info.metadata?.agent === agent.agentId);
    expect(mine?.metadata?.prefix).toBe(prefix);
    const subjects = mine?.endpoints.map((endpoint) => endpoint.subject) ?? [];
    expect(subjects).toContain(subject('create'));
    expect(subjects).toContain(subject('output'));
    expect(subjects).toContain(`${prefix}.create`);
    expect(mine?.endpoints.find((each) => each.subject === `${prefix}.create`)?.queue_group).toBe(
      'q',
    );

    await rawRequest('get', JSON.stringify({ id: 'nothing-here' }));
    const stats: ServiceStats[] = [];
    for await (const each of await services.client().stats(SERVICE_NAME, mine?.id)) {
      stats.push(each);
    }
    const get = stats[0]?.endpoints?.find((endpoint) => endpoint.subject === subject('get'));
    expect(get?.num_requests).toBeGreaterThanOrEqual(1);
    // Errors answered asynchronously are counted by the agent, in the endpoint's data.
    expect((get?.data as { errors?: number } | undefined)?.errors).toBeGreaterThanOrEqual(1);
  });

  it('answers bad input with {code, message} and the service error headers, and changes nothing', async () => {
    const before = supervisor.list().length;
    const cases: [string, string, string][] = [
      ['create', '{not json', 'INVALID_ARGUMENT'],
      ['create', JSON.stringify({ command: ['true'], notAField: 1 }), 'INVALID_ARGUMENT'],
      ['create', JSON.stringify([1, 2]), 'INVALID_ARGUMENT'],
      ['create', JSON.stringify({ command: ['true'], id: 7 }), 'INVALID_ARGUMENT'],
      ['get', JSON.stringify({}), 'INVALID_ARGUMENT'],
      ['get', JSON.stringify({ id: 'no-such-task' }), 'NOT_FOUND'],
      ['list', JSON.stringify({ state: 'sleeping' }), 'INVALID_ARGUMENT'],
      ['list', JSON.stringify({ labels: { a: 1 } }), 'INVALID_ARGUMENT'],
      ['output', JSON.stringify({ id: 'x', cursor: -1 }), 'INVALID_ARGUMENT'],
      ['output', JSON.stringify({ id: 'x', offset: 3 }), 'INVALID_ARGUMENT'],
      ['stdin', 'data without a task header', 'INVALID_ARGUMENT'],
      ['resize', JSON.stringify({ id: 'x', cols: 0, rows: 1 }), 'NOT_FOUND'],
      ['runtime', '', 'NONE'],
    ];
    for (const [operation, body, code] of cases) {
      const reply = await rawRequest(operation, body);
      if (code === 'NONE') {
        expect(reply.code, `${operation} ${body}`).toBeUndefined();
        continue;
      }
      expect(reply.body, `${operation} ${body}`).toMatchObject({ code });
      expect(typeof (reply.body as { message?: unknown }).message).toBe('string');
      expect(reply.code).toBe(code === 'NOT_FOUND' ? '404' : '400');
      expect(reply.description).toBe((reply.body as { message: string }).message);
    }
    expect(supervisor.list().length).toBe(before);
    // The agent still serves.
    const task = await client.create({ command: ['true'] });
    expect((await client.wait(task.id)).exit?.code).toBe(0);
  });

  it('a pool client without an agent needs { agent } for capacity', async () => {
    const pool = createNatsClient({ servers: SHARED_NATS, subjectPrefix: prefix });
    try {
      const error = await pool.capacity().catch((caught: unknown) => caught);
      expect(OverthereError.hasCode(error, 'INVALID_ARGUMENT')).toBe(true);
      expect((await pool.capacity({ agent: agent.agentId })).liveTasks).toBeGreaterThanOrEqual(0);
    } finally {
      await pool.close();
    }
  });
});

describe('output', () => {
  it('carries frames larger than a batch in slices, reassembled exactly', async () => {
    const small = createNatsClient({
      servers: SHARED_NATS,
      subjectPrefix: prefix,
      agent: agent.agentId,
      batchBytes: 4096,
    });
    try {
      const task = await client.create({
        command: ['sh', '-c', 'head -c 1000000 /dev/urandom | od -An -tx1 | head -c 600000'],
      });
      await client.wait(task.id);
      const whole = await supervisor.output(task.id).text('stdout');
      expect(whole.length).toBe(600_000);
      const read = await collect(small.output(task.id));
      expect(read.data.equals(whole)).toBe(true);
      const seqs = read.frames.map((frame) => frame.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      // Some frame was bigger than the batch, so it came in slices.
      expect(Math.max(...read.frames.map((frame) => frame.data.length))).toBeGreaterThan(4096);
      // By offset, from the middle of a frame.
      const fromOffset = await collect(small.output(task.id, { stream: 'stdout', offset: 12_345 }));
      expect(fromOffset.data.equals(whole.subarray(12_345))).toBe(true);
      expect(fromOffset.end?.task.state).toBe('exited');
    } finally {
      await small.close();
    }
  });

  it('a reader that stops reading makes the agent send nothing more (pull)', async () => {
    const quietPrefix = `${prefix}-quiet`;
    const quiet = await createNatsAgent({
      supervisor,
      runtime,
      servers: SHARED_NATS,
      subjectPrefix: quietPrefix,
      capacityBucket: false,
      publishOutput: false,
    });
    const reader = createNatsClient({
      servers: SHARED_NATS,
      subjectPrefix: quietPrefix,
      agent: quiet.agentId,
      batchBytes: 64 * 1024,
    });
    try {
      const task = await supervisor.create({ command: ['head', '-c', '8000000', '/dev/zero'] });
      const iterator = reader.output(task.id, { follow: true })[Symbol.asyncIterator]();
      // A frame, or a gap if the log's memory tail already let the first bytes go.
      expect(['frame', 'gap']).toContain((await iterator.next()).value?.type);
      const before = quiet.connection.stats().outBytes;
      // The task writes its 8 MB while nobody reads.
      await supervisor.wait(task.id);
      const sentMeanwhile = quiet.connection.stats().outBytes - before;
      expect(sentMeanwhile).toBeLessThan(64 * 1024);
      let bytes = 0;
      let end = false;
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
        if (next.value.type === 'frame') bytes += next.value.data.length;
        if (next.value.type === 'end') end = true;
      }
      expect(end).toBe(true);
      expect(bytes).toBeGreaterThan(0);
    } finally {
      await reader.close();
      await quiet.close();
    }
  });

  it('an abort ends a follow waiting on its long-poll at once', async () => {
    const task = await client.create({ command: ['sleep', '30'] });
    const controller = new AbortController();
    const events: string[] = [];
    const reading = (async () => {
      for await (const event of client.output(task.id, {
        follow: true,
        signal: controller.signal,
      })) {
        events.push(event.type);
      }
    })();
    // The request is out and waiting once the agent has a reader on the log.
    while (supervisor.output(task.id).readers === 0) await new Promise((r) => setTimeout(r, 5));
    const abortedAt = Date.now();
    controller.abort();
    await reading;
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(events).toEqual([]);
    await client.stop(task.id, { signal: 'SIGKILL' });
  });

  it('watch delivers live frames from the task subject, then the end', async () => {
    const task = await client.create({ command: ['cat'], stdin: 'pipe' });
    await client.writeStdin(task.id, 'early\n');
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (supervisor.output(task.id).bytes('stdout') >= 6) resolve();
        else setTimeout(check, 10);
      };
      check();
    });
    const watched = collect(client.watch(task.id));
    // The live subscription is up once the catch-up is done; writes after it arrive live.
    for (let index = 0; index < 50; index += 1) await client.writeStdin(task.id, `line ${index}\n`);
    await client.closeStdin(task.id);
    const result = await watched;
    const expected = `early\n${Array.from({ length: 50 }, (_, index) => `line ${index}\n`).join('')}`;
    expect(result.data.toString()).toBe(expected);
    expect(result.end?.task.state).toBe('exited');
    const seqs = result.frames.map((frame) => frame.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('watch with a stream filter delivers that stream only', async () => {
    const task = await client.create({
      command: ['sh', '-c', 'read go; for i in 1 2 3; do echo out$i; echo err$i >&2; done'],
      stdin: 'pipe',
    });
    const watched = collect(client.watch(task.id, { stream: 'stderr' }));
    await client.writeStdin(task.id, 'go\n');
    const result = await watched;
    expect(result.data.toString()).toBe('err1\nerr2\nerr3\n');
    expect(result.frames.every((frame) => frame.stream === 'stderr')).toBe(true);
    expect(result.end?.task.exit?.code).toBe(0);
  });

  it('attach drives a TTY: input, resize, and the exit', async () => {
    const task = await client.create({
      command: ['sh', '-c', 'read line; stty size; echo "got $line"'],
      tty: { cols: 80, rows: 24 },
    });
    const attachment = await client.attach(task.id);
    await attachment.resize({ cols: 100, rows: 40 });
    await attachment.writeStdin('hello\n');
    const result = await collect(attachment);
    const text = result.data.toString();
    expect(text).toContain('40 100');
    expect(text).toContain('got hello');
    expect(result.end?.task.exit?.code).toBe(0);
    const missing = await client.attach('no-such-task').catch((error: unknown) => error);
    expect(OverthereError.hasCode(missing, 'NOT_FOUND')).toBe(true);
  });
});
