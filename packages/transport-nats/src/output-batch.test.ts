import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryRuntime, createSupervisor, type Supervisor } from '@overthere/core';
import { serveOutputBatch } from './output-batch.js';
import { decodeBatch, type BatchHeader } from './wire.js';

const closing = new AbortController().signal;
let supervisor: Supervisor | undefined;
afterEach(async () => {
  await supervisor?.close();
  supervisor = undefined;
});

async function catTask(bytes: Buffer): Promise<{ supervisor: Supervisor; id: string }> {
  supervisor = await createSupervisor({ runtime: createMemoryRuntime() });
  const task = await supervisor.create({ command: ['cat'], stdin: 'pipe' });
  await supervisor.writeStdin(task.id, bytes);
  await supervisor.closeStdin(task.id);
  await supervisor.wait(task.id);
  return { supervisor, id: task.id };
}

/** Pull batches as a client does until the end; the data and how many batches it took. */
async function pullAll(
  served: Supervisor,
  request: Record<string, unknown>,
  maxBytes: number,
): Promise<{ data: Buffer; batches: number; seqs: number[] }> {
  const chunks: Buffer[] = [];
  const seqs: number[] = [];
  let next: BatchHeader['next'] = {};
  for (let batches = 1; batches < 1000; batches += 1) {
    const reply = decodeBatch(
      await serveOutputBatch(
        served,
        { ...request, ...next },
        { maxBytes, maxWaitMs: 1000, closing },
      ),
    );
    for (const [index, event] of reply.header.events.entries()) {
      if (event.type !== 'frame') continue;
      chunks.push(Buffer.from(reply.data[index]!));
      if (event.partial !== true) seqs.push(event.seq);
    }
    next = reply.header.next;
    if (reply.header.end !== undefined) return { data: Buffer.concat(chunks), batches, seqs };
  }
  throw new Error('no end');
}

describe('serveOutputBatch', () => {
  it('slices a frame larger than the batch and resumes it by skipBytes', async () => {
    const bytes = Buffer.alloc(10_000, 'x');
    bytes.write('start', 0);
    bytes.write('end', 9_997);
    const { supervisor: served, id } = await catTask(bytes);
    const whole = await served.output(id).text('stdout');
    const result = await pullAll(served, { id }, 1024);
    expect(result.data.equals(whole)).toBe(true);
    expect(result.batches).toBeGreaterThan(whole.length / 1024);
    expect(new Set(result.seqs).size).toBe(result.seqs.length);
  });

  it('slices from a byte offset and goes on by offset', async () => {
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, index) => index % 251));
    const { supervisor: served, id } = await catTask(bytes);
    const whole = await served.output(id).text('stdout');
    const result = await pullAll(served, { id, stream: 'stdout', offset: 777 }, 1024);
    expect(result.data.equals(whole.subarray(777))).toBe(true);
  });

  it('a follow with nothing new waits, then answers empty without an end', async () => {
    supervisor = await createSupervisor({ runtime: createMemoryRuntime() });
    const task = await supervisor.create({ command: ['sleep', '30'] });
    const started = Date.now();
    const reply = decodeBatch(
      await serveOutputBatch(
        supervisor,
        { id: task.id, follow: true, waitMs: 200 },
        { maxBytes: 65536, maxWaitMs: 1000, closing },
      ),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(reply.header.events).toEqual([]);
    expect(reply.header.end).toBeUndefined();
    await supervisor.stop(task.id, { signal: 'SIGKILL' });
  });

  it('refuses bad requests before reading', async () => {
    supervisor = await createSupervisor({ runtime: createMemoryRuntime() });
    const limits = { maxBytes: 65536, maxWaitMs: 1000, closing };
    await expect(serveOutputBatch(supervisor, { id: 'x', follow: 'yes' }, limits)).rejects.toThrow(
      /follow/,
    );
    await expect(serveOutputBatch(supervisor, { id: 'x', stream: 'all' }, limits)).rejects.toThrow(
      /stream/,
    );
    await expect(serveOutputBatch(supervisor, { id: 'x' }, limits)).rejects.toThrow(/x/);
  });
});
