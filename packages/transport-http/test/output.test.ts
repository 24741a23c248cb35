// GET /v1/tasks/:id/output with real clients: curl for raw, NDJSON and SSE,
// node:http for a reader that stops reading.
import { get as httpGet, type IncomingMessage } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileTaskStore, type TaskInfo } from '@overthere/core';
import {
  TOKEN,
  curl,
  curlStream,
  eventually,
  json,
  metricValue,
  sh,
  startAgent,
  type TestAgent,
} from './helpers.js';

let t: TestAgent;
beforeAll(async () => {
  t = await startAgent();
});
afterAll(async () => {
  await t.close();
});

const outputUrl = (id: string, query: string) => `${t.url}/v1/tasks/${id}/output?${query}`;

interface Line {
  type: string;
  seq?: number;
  stream?: string;
  data?: string;
  task?: TaskInfo;
}
const ndjsonLines = (body: Buffer): Line[] =>
  body
    .toString()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Line);
const frameBytes = (lines: Line[], stream?: string) =>
  Buffer.concat(
    lines
      .filter((line) => line.type === 'frame' && (stream === undefined || line.stream === stream))
      .map((line) => Buffer.from(line.data ?? '', 'base64')),
  );

/** Parse an SSE body into events. */
function sseEvents(body: Buffer): { event?: string; id?: string; data?: string }[] {
  return body
    .toString()
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const event: { event?: string; id?: string; data?: string } = {};
      for (const line of block.split('\n')) {
        const colon = line.indexOf(': ');
        if (colon === -1) continue;
        const key = line.slice(0, colon) as 'event' | 'id' | 'data';
        event[key] = line.slice(colon + 2);
      }
      return event;
    });
}

async function openStreams(): Promise<number> {
  const metrics = await curl([...t.auth, `${t.url}/metrics`]);
  return metricValue(metrics.body.toString(), 'overthere_open_streams{kind="output"}') ?? -1;
}

describe('raw', () => {
  it('streams the bytes as they come with follow, and ends when the task is final', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const stream = curlStream([...t.auth, outputUrl(task.id, 'follow=1')]);
    await t.client.writeStdin(task.id, 'first ');
    await stream.until((body) => body.toString() === 'first ');
    await t.client.writeStdin(task.id, Buffer.from([0, 255, 10]));
    await stream.until((body) => body.length === 9);
    await t.client.closeStdin(task.id);
    const result = await stream.done;
    expect(result.exitCode).toBe(0);
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('application/octet-stream');
    expect(result.headers['transfer-encoding']).toBe('chunked');
    expect(result.headers['x-overthere-cursor']).toBe('0');
    expect(
      result.body.equals(Buffer.concat([Buffer.from('first '), Buffer.from([0, 255, 10])])),
    ).toBe(true);
    expect(t.supervisor.get(task.id).state).toBe('exited');
  });

  it('merges both streams in seq order, or sends one, and resumes at a byte offset', async () => {
    const task = await t.client.create({
      command: sh('echo out1; echo err1 >&2; echo out2; echo err2 >&2'),
    });
    await t.client.wait(task.id);
    const stdout = await curl([...t.auth, outputUrl(task.id, 'stream=stdout')]);
    expect(stdout.body.toString()).toBe('out1\nout2\n');
    const stderr = await curl([...t.auth, outputUrl(task.id, 'stream=stderr&offset=3')]);
    expect(stderr.body.toString()).toBe('1\nerr2\n');
    expect(stderr.headers['x-overthere-cursor']).toBeUndefined();
    const both = await curl([...t.auth, outputUrl(task.id, '')]);
    expect(both.body.toString().split('\n').sort()).toEqual(
      ['', 'err1', 'err2', 'out1', 'out2'].sort(),
    );
  });

  it('a client that disconnects mid-stream leaves the task alone; resuming at its offset gets exactly the rest', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const stream = curlStream([...t.auth, outputUrl(task.id, 'follow=1&stream=stdout')]);
    await t.client.writeStdin(task.id, 'before the cut\n');
    const seen = await stream.until((body) => body.toString().endsWith('\n'));
    stream.child.kill('SIGKILL');
    await stream.done;
    // The server noticed and stopped reading the log for it.
    await eventually(async () => (await openStreams()) === 0, 'the server ending the stream');
    expect(t.supervisor.get(task.id).state).toBe('running');
    await t.client.writeStdin(task.id, 'after the cut\n');
    const resumed = curlStream([
      ...t.auth,
      outputUrl(task.id, `follow=1&stream=stdout&offset=${seen.length}`),
    ]);
    await resumed.until((body) => body.toString().includes('after the cut\n'));
    await t.client.writeStdin(task.id, 'last\n');
    await t.client.closeStdin(task.id);
    const result = await resumed.done;
    expect(result.body.toString()).toBe('after the cut\nlast\n');
    expect((await t.client.wait(task.id)).exit?.code).toBe(0);
  });

  it('a reader that stops reading is flow-controlled: the server does not buffer the log for it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'overthere-http-backpressure-'));
    const store = await createFileTaskStore({ dir });
    // A reader that reads nothing holds the task back for followerStallMs, then is let go.
    const durable = await startAgent({ supervisor: { store, output: { followerStallMs: 200 } } });
    try {
      const size = 32 * 1024 * 1024;
      const task = await durable.client.create({
        command: ['head', '-c', String(size), '/dev/zero'],
      });
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        httpGet(
          `${durable.url}/v1/tasks/${task.id}/output?follow=1`,
          { headers: { authorization: `Bearer ${TOKEN}` } },
          resolve,
        ).once('error', reject);
      });
      response.pause();
      await durable.client.wait(task.id);
      const sent = async () => {
        const metrics = await curl([...durable.auth, `${durable.url}/metrics`]);
        return (
          metricValue(metrics.body.toString(), 'overthere_output_bytes_sent_total{format="raw"}') ??
          0
        );
      };
      // The task wrote it all; the server sent only what the socket buffers hold.
      const whilePaused = await sent();
      expect(whilePaused).toBeGreaterThan(0);
      expect(whilePaused).toBeLessThan(size / 2);
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        response.on('data', (chunk: Buffer) => (received += chunk.length));
        response.once('end', resolve);
        response.once('error', reject);
      });
      response.resume();
      await done;
      expect(received).toBe(size);
      expect(await sent()).toBe(size);
    } finally {
      await durable.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('followers and retention', () => {
  // Memory-only logs keeping ~20 KiB: a task writing megabytes outruns retention at once.
  const size = 4 * 1024 * 1024;
  // It starts writing once told to on stdin, so a follower is there from the first byte.
  const fastTask = {
    command: ['sh', '-c', `read go; head -c ${size} /dev/urandom | od -An -v -tx1`],
    stdin: 'pipe' as const,
  };

  it('a live follower holds a fast task back instead of losing output past retention', async () => {
    const small = await startAgent({ supervisor: { output: { memoryBytes: 4096 } } });
    try {
      const task = await small.client.create(fastTask);
      const stream = curlStream([
        ...small.auth,
        `${small.url}/v1/tasks/${task.id}/output?follow=1`,
      ]);
      const log = small.supervisor.output(task.id);
      await eventually(() => log.readers > 0, 'the follower reading');
      await small.client.writeStdin(task.id, 'go\n');
      const followed = await stream.done;
      expect(followed.exitCode).toBe(0);
      // Every line of od's dump arrives, in order: offsets say so.
      const lines = followed.body.toString().trimEnd().split('\n');
      expect(lines).toHaveLength(size / 16);
      expect(lines.every((line) => /^( [0-9a-f]{2}){16}$/.test(line))).toBe(true);
      expect((await small.client.wait(task.id)).exit).toMatchObject({ code: 0 });
    } finally {
      await small.close();
    }
  });

  it('a raw follower that fell behind retention is cut, not silently missing bytes', async () => {
    const small = await startAgent({
      supervisor: { output: { memoryBytes: 4096, followerStallMs: 100 } },
    });
    try {
      const task = await small.client.create(fastTask);
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        httpGet(
          `${small.url}/v1/tasks/${task.id}/output?follow=1`,
          { headers: { authorization: `Bearer ${TOKEN}` } },
          resolve,
        ).once('error', reject);
      });
      // Stalled: the task is let go after 100 ms and runs to its end.
      response.pause();
      await small.client.writeStdin(task.id, 'go\n');
      await small.client.wait(task.id);
      let received = 0;
      const ending = new Promise<string>((resolve) => {
        response.on('data', (chunk: Buffer) => (received += chunk.length));
        response.once('end', () => resolve(response.complete ? 'complete' : 'cut'));
        response.once('aborted', () => resolve('cut'));
        response.once('error', () => resolve('cut'));
      });
      response.resume();
      expect(await ending).toBe('cut');
      expect(received).toBeLessThan(size * 3);
      // The task itself was never disturbed; ndjson says what was dropped.
      const replay = await curl([
        ...small.auth,
        `${small.url}/v1/tasks/${task.id}/output?format=ndjson&cursor=0`,
      ]);
      expect(ndjsonLines(replay.body)[0]).toMatchObject({ type: 'gap' });
    } finally {
      await small.close();
    }
  });
});

describe('ndjson', () => {
  it('sends frames with seq, offset, stream, time and base64 data, then end with the task', async () => {
    const task = await t.client.create({
      command: sh('echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3'),
    });
    const result = await curl([
      ...t.auth,
      '-H',
      'Accept: application/x-ndjson',
      outputUrl(task.id, 'follow=true'),
    ]);
    expect(result.headers['content-type']).toBe('application/x-ndjson');
    const lines = ndjsonLines(result.body);
    const end = lines.at(-1)!;
    expect(end.type).toBe('end');
    expect(end.task).toMatchObject({ id: task.id, state: 'exited', exit: { code: 3 } });
    const frames = lines.slice(0, -1);
    expect(frames.every((line) => line.type === 'frame')).toBe(true);
    expect(frames.map((line) => line.seq)).toEqual(frames.map((_, index) => index));
    expect(frames[0]).toMatchObject({ offset: 0, time: expect.any(Number) });
    expect(frameBytes(lines, 'stdout').toString()).toBe('out1\nout2\n');
    expect(frameBytes(lines, 'stderr').toString()).toBe('err1\nerr2\n');
  });

  it('without follow, ends after the retained output of a live task', async () => {
    const task = await t.client.create({ command: sh('echo started; exec sleep 30') });
    for await (const event of t.client.output(task.id, { follow: true })) {
      if (event.type === 'frame') break;
    }
    const result = await curl([...t.auth, outputUrl(task.id, 'format=ndjson')]);
    const lines = ndjsonLines(result.body);
    expect(frameBytes(lines).toString()).toBe('started\n');
    expect(lines.at(-1)).toMatchObject({ type: 'end', task: { state: 'running' } });
    await t.client.stop(task.id, { signal: 'SIGKILL' });
  });

  it('a client cut off mid-stream resumes with cursor = last seq + 1: no gap, no repeat', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const stream = curlStream([...t.auth, outputUrl(task.id, 'format=ndjson&follow=1')]);
    await t.client.writeStdin(task.id, 'one\n');
    await t.client.writeStdin(task.id, 'two\n');
    const seen = await stream.until(
      (body) => frameBytes(ndjsonLines(body)).toString() === 'one\ntwo\n',
    );
    stream.child.kill('SIGKILL');
    await stream.done;
    await t.client.writeStdin(task.id, 'three\n');
    await t.client.closeStdin(task.id);
    const last = ndjsonLines(seen).at(-1)!.seq!;
    const rest = await curl([
      ...t.auth,
      outputUrl(task.id, `format=ndjson&follow=1&cursor=${last + 1}`),
    ]);
    const restLines = ndjsonLines(rest.body);
    expect(frameBytes(restLines).toString()).toBe('three\n');
    expect(restLines[0]!.seq).toBe(last + 1);
    expect(restLines.at(-1)!.type).toBe('end');
  });

  it('a cursor behind retention gets a gap marker, then what is left', async () => {
    const small = await startAgent({ supervisor: { output: { memoryBytes: 4096 } } });
    try {
      const task = await small.client.create({
        // About 1.1 MB: more than one read of the pipe takes (up to 256 KiB), so
        // it arrives in several frames however fast it runs.
        command: ['seq', '-f', 'line-%g', '0', '99999'],
      });
      await small.client.wait(task.id);
      const result = await curl([
        ...small.auth,
        `${small.url}/v1/tasks/${task.id}/output?format=ndjson&cursor=0`,
      ]);
      const lines = ndjsonLines(result.body) as (Line & { fromSeq?: number; toSeq?: number })[];
      expect(lines[0]).toMatchObject({ type: 'gap', fromSeq: 0 });
      expect(lines[1]).toMatchObject({ type: 'frame', seq: lines[0]!.toSeq });
      expect(frameBytes(lines).toString()).toMatch(/line-99999\n$/);
    } finally {
      await small.close();
    }
  });
});

describe('sse', () => {
  it('sends frame events with ids and an end event; Last-Event-ID resumes after that seq', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const stream = curlStream([
      ...t.auth,
      '-H',
      'Accept: text/event-stream',
      outputUrl(task.id, 'follow=1'),
    ]);
    await t.client.writeStdin(task.id, 'a\n');
    await stream.until((body) => sseEvents(body).length >= 1);
    await t.client.writeStdin(task.id, 'b\n');
    await stream.until((body) => sseEvents(body).length >= 2);
    await t.client.closeStdin(task.id);
    const result = await stream.done;
    expect(result.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const events = sseEvents(result.body);
    expect(events.map((event) => event.event)).toEqual(['frame', 'frame', 'end']);
    expect(events.map((event) => event.id)).toEqual(['0', '1', undefined]);
    const data = events.map((event) => JSON.parse(event.data ?? '{}') as Line);
    expect(frameBytes(data).toString()).toBe('a\nb\n');
    expect(data[2]).toMatchObject({ type: 'end', task: { state: 'exited' } });

    const resumed = await curl([
      ...t.auth,
      '-H',
      'Last-Event-ID: 0',
      outputUrl(task.id, 'format=sse&follow=1&cursor=0'),
    ]);
    const again = sseEvents(resumed.body);
    expect(again.map((event) => event.id)).toEqual(['1', undefined]);
  });

  it('sends keepalive comments on an idle stream', async () => {
    const quick = await startAgent({ keepaliveMs: 50 });
    try {
      const task = await quick.client.create({ command: ['sleep', '30'] });
      const stream = curlStream([
        ...quick.auth,
        `${quick.url}/v1/tasks/${task.id}/output?format=sse&follow=1`,
      ]);
      await stream.until((body) => body.toString().includes(': ping\n\n'));
      await quick.client.stop(task.id, { signal: 'SIGKILL' });
      const result = await stream.done;
      expect(sseEvents(result.body).at(-1)?.event).toBe('end');
    } finally {
      await quick.close();
    }
  });
});

describe('shutdown', () => {
  it('close() ends following streams and long polls, then stops listening; tasks keep running', async () => {
    const agent = await startAgent();
    try {
      const task = await agent.client.create({ command: sh('echo hi; exec sleep 30') });
      const following = curlStream([
        ...agent.auth,
        `${agent.url}/v1/tasks/${task.id}/output?format=ndjson&follow=1`,
      ]);
      await following.until((body) => body.toString().includes('"frame"'));
      const arrived = new Promise<void>((resolve) => {
        agent.agent.server.server.on('request', (request: IncomingMessage) => {
          if (request.url?.includes('/wait')) resolve();
        });
      });
      const polling = curl([
        ...agent.auth,
        `${agent.url}/v1/tasks/${task.id}/wait?timeoutMs=60000`,
      ]);
      await arrived;
      await agent.agent.close();
      const [followed, polled] = await Promise.all([following.done, polling]);
      expect(followed.exitCode).toBe(0); // a clean end of the chunked response
      expect(ndjsonLines(followed.body).map((line) => line.type)).toEqual(['frame']);
      expect(polled.status).toBe(202);
      expect(json<TaskInfo>(polled).state).toBe('running');
      expect(agent.supervisor.get(task.id).state).toBe('running');
      const refused = await curl([`${agent.url}/healthz`]);
      expect(refused.exitCode).not.toBe(0);
    } finally {
      await agent.close();
    }
  });
});
