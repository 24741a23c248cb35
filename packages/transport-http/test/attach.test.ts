// GET /v1/tasks/:id/attach with a real WebSocket client (`ws`) speaking the
// wire format by hand, and with the package's own client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { OverthereError, type TaskInfo } from '@overthere/core';
import {
  createHttpClient,
  type HttpAttachEvent,
  type HttpAttachment,
} from '@overthere/transport-http';
import { TOKEN, curl, eventually, metricValue, sh, startAgent, type TestAgent } from './helpers.js';

let t: TestAgent;
beforeAll(async () => {
  t = await startAgent();
});
afterAll(async () => {
  await t.close();
});

interface Session {
  socket: WebSocket;
  /** Binary messages decoded by hand: stream byte, u64 seq, data. */
  frames: { stream: number; seq: number; data: Buffer }[];
  texts: Record<string, unknown>[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves once a text message satisfies `predicate`. */
  text(predicate: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  output(): string;
}

function attachUrl(id: string, query = ''): string {
  return `${t.url.replace(/^http/, 'ws')}/v1/tasks/${id}/attach${query}`;
}

async function open(
  id: string,
  query = '',
  headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` },
): Promise<Session> {
  const socket = new WebSocket(attachUrl(id, query), { headers });
  const frames: Session['frames'] = [];
  const texts: Session['texts'] = [];
  const waiters = new Set<() => void>();
  socket.on('message', (data: Buffer, isBinary) => {
    if (isBinary) {
      frames.push({
        stream: data[0]!,
        seq: Number(data.readBigUInt64BE(1)),
        data: data.subarray(9),
      });
    } else {
      texts.push(JSON.parse(data.toString()) as Record<string, unknown>);
    }
    for (const waiter of waiters) waiter();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    frames,
    texts,
    closed,
    output: () => Buffer.concat(frames.map((frame) => frame.data)).toString(),
    text: (predicate) =>
      new Promise((resolve) => {
        const check = () => {
          const found = texts.find(predicate);
          if (found) {
            waiters.delete(check);
            resolve(found);
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

/** The HTTP status with which an upgrade was refused. */
function refusal(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once('unexpected-response', (request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.once('end', () => {
        resolve({ status: response.statusCode ?? 0, body });
        request.destroy();
      });
    });
    socket.once('open', () => reject(new Error('the upgrade was accepted')));
    socket.on('error', () => undefined);
  });
}

describe('wire format (ws client)', () => {
  it('sends output as binary messages with a 9-byte header, then exit, then closes 1000', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const session = await open(task.id);
    session.socket.send(Buffer.from('to stdout\n'));
    await eventually(() => session.output() === 'to stdout\n', 'the echo');
    await t.client.closeStdin(task.id);
    const { code } = await session.closed;
    expect(code).toBe(1000);
    expect(session.frames.map((frame) => [frame.stream, frame.seq])).toEqual([[1, 0]]);
    const exit = session.texts.at(-1)!;
    expect(exit.type).toBe('exit');
    expect(exit.task).toMatchObject({ id: task.id, state: 'exited', exit: { code: 0 } });
  });

  it('replays from the cursor, stderr as stream 2', async () => {
    const task = await t.client.create({ command: sh('echo a; echo b >&2; echo c; echo d >&2') });
    await t.client.wait(task.id);
    const expected: [number, number, string][] = [];
    for await (const event of t.supervisor.output(task.id).read({ fromSeq: 1 })) {
      if (event.type === 'frame') {
        expected.push([event.stream === 'stdout' ? 1 : 2, event.seq, event.data.toString()]);
      }
    }
    const session = await open(task.id, '?cursor=1');
    await session.closed;
    expect(session.frames.map((frame) => [frame.stream, frame.seq, frame.data.toString()])).toEqual(
      expected,
    );
    const full = await open(task.id);
    await full.closed;
    const stderr = full.frames.filter((frame) => frame.stream === 2);
    expect(Buffer.concat(stderr.map((frame) => frame.data)).toString()).toBe('b\nd\n');
    const stdoutOnly = await open(task.id, '?stream=stdout');
    await stdoutOnly.closed;
    expect(stdoutOnly.output()).toBe('a\nc\n');
  });

  it('carries stdin (binary and base64 JSON), EOF, resize and signal from the client', async () => {
    const task = await t.client.create({
      command: sh('stty size; read line; echo "got $line"; stty size; exec sleep 30'),
      tty: { cols: 80, rows: 24 },
    });
    const session = await open(task.id);
    await eventually(() => session.output().includes('24 80'), 'the first size');
    session.socket.send(JSON.stringify({ type: 'resize', cols: 100, rows: 30 }));
    session.socket.send(Buffer.from('hel'));
    session.socket.send(
      JSON.stringify({ type: 'stdin', data: Buffer.from('lo\r').toString('base64') }),
    );
    await eventually(() => session.output().includes('30 100'), 'the new size');
    expect(session.output()).toContain('got hello');
    session.socket.send(JSON.stringify({ type: 'signal', signal: 'SIGTERM' }));
    const { code } = await session.closed;
    expect(code).toBe(1000);
    expect(session.texts.at(-1)).toMatchObject({
      type: 'exit',
      task: { exit: { signal: 'SIGTERM', reason: 'signalled' } },
    });

    const cat = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const second = await open(cat.id);
    second.socket.send(Buffer.from('data then '));
    second.socket.send(
      JSON.stringify({ type: 'stdin', data: Buffer.from('eof').toString('base64') }),
    );
    second.socket.send(JSON.stringify({ type: 'eof' }));
    await second.closed;
    expect(second.output()).toBe('data then eof');
    expect((await t.client.get(cat.id)).exit?.code).toBe(0);
  });

  it('sends state changes', async () => {
    const task = await t.client.create({ command: ['sleep', '30'], kill: { graceMs: 5000 } });
    const session = await open(task.id);
    await t.client.stop(task.id, {}, { wait: false });
    expect(await session.text((message) => message.type === 'state')).toEqual({
      type: 'state',
      state: 'stopping',
    });
    await session.closed;
  });

  it('answers malformed messages with an error message and stays open', async () => {
    const task = await t.client.create({ command: ['sleep', '30'] });
    const session = await open(task.id);
    const bad: [string | Buffer, string][] = [
      ['not json', 'INVALID_ARGUMENT'],
      ['[1,2]', 'INVALID_ARGUMENT'],
      ['{"type":"dance"}', 'INVALID_ARGUMENT'],
      ['{"type":"resize","cols":"80","rows":24}', 'INVALID_ARGUMENT'],
      ['{"type":"resize","cols":80,"rows":24,"extra":1}', 'INVALID_ARGUMENT'],
      ['{"type":"stdin","data":"%%%"}', 'INVALID_ARGUMENT'],
      ['{"type":"stdin"}', 'INVALID_ARGUMENT'],
      ['{"type":"signal","signal":"SIGNOPE"}', 'INVALID_ARGUMENT'],
      ['{"type":"resize","cols":80,"rows":24}', 'UNSUPPORTED'],
      ['{"type":"stdin","data":"eA=="}', 'FAILED_PRECONDITION'],
      [Buffer.from('binary stdin without a pipe'), 'FAILED_PRECONDITION'],
    ];
    for (const [index, [message, code]] of bad.entries()) {
      session.socket.send(message, { binary: Buffer.isBuffer(message) });
      await eventually(() => session.texts.length === index + 1, `error ${index}`);
      expect(session.texts[index], String(message)).toMatchObject({
        type: 'error',
        code,
        message: expect.any(String),
      });
    }
    expect(session.socket.readyState).toBe(WebSocket.OPEN);
    expect(t.supervisor.get(task.id).state).toBe('running');
    session.socket.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
    expect((await session.closed).code).toBe(1000);
  });

  it('a client that goes away does not disturb the task', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const session = await open(task.id);
    session.socket.send(Buffer.from('one\n'));
    await eventually(() => session.output() === 'one\n', 'the echo');
    session.socket.terminate();
    await session.closed;
    const attachStreams = async () =>
      metricValue(
        (await curl([...t.auth, `${t.url}/metrics`])).body.toString(),
        'overthere_open_streams{kind="attach"}',
      );
    await eventually(async () => (await attachStreams()) === 0, 'the server ending the session');
    expect(t.supervisor.get(task.id).state).toBe('running');
    const again = await open(task.id, `?cursor=${session.frames.at(-1)!.seq + 1}`);
    again.socket.send(Buffer.from('two\n'));
    again.socket.send(JSON.stringify({ type: 'eof' }));
    await again.closed;
    expect(again.output()).toBe('two\n');
  });

  it('refuses the upgrade: 404 unknown task, 401 without or with a wrong token, 400 bad query', async () => {
    const task = await t.client.create({ command: ['sleep', '30'] });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const unknown = await refusal(attachUrl('no-such-task'), auth);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toMatchObject({ code: 'NOT_FOUND' });
    expect((await refusal(attachUrl(task.id))).status).toBe(401);
    expect((await refusal(attachUrl(task.id), { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await refusal(attachUrl(task.id, '?access_token=nope'))).status).toBe(401);
    expect((await refusal(attachUrl(task.id, '?cursor=-1'), auth)).status).toBe(400);
    // Browsers cannot set headers: the token may come as a query parameter.
    const viaQuery = await open(task.id, `?access_token=${TOKEN}`, {});
    viaQuery.socket.send(JSON.stringify({ type: 'signal', signal: 'SIGKILL' }));
    expect((await viaQuery.closed).code).toBe(1000);
  });
});

describe('createHttpClient().attach', () => {
  async function drain(attachment: HttpAttachment): Promise<HttpAttachEvent[]> {
    const events: HttpAttachEvent[] = [];
    for await (const event of attachment) events.push(event);
    return events;
  }

  it('delivers frames and exit, and sends stdin and EOF', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const attachment = await t.client.attach(task.id);
    const events = drain(attachment);
    await attachment.writeStdin('hello ');
    await attachment.writeStdin(Buffer.from([0, 1, 2]));
    await attachment.closeStdin();
    const all = await events;
    const frames = all.filter((event) => event.type === 'frame');
    expect(
      Buffer.concat(frames.map((frame) => frame.data)).equals(
        Buffer.concat([Buffer.from('hello '), Buffer.from([0, 1, 2])]),
      ),
    ).toBe(true);
    const exit = all.at(-1) as { type: 'exit'; task: TaskInfo };
    expect(exit.type).toBe('exit');
    expect(exit.task.exit?.code).toBe(0);
    expect((await attachment.closed).code).toBe(1000);
  });

  it('reports refused messages as error events and goes on', async () => {
    const task = await t.client.create({ command: ['sleep', '30'] });
    const attachment = await t.client.attach(task.id);
    const events = drain(attachment);
    await attachment.resize({ cols: 80, rows: 24 });
    await attachment.signal('SIGKILL');
    const all = await events;
    expect(all[0]).toMatchObject({ type: 'error', code: 'UNSUPPORTED' });
    expect(all.at(-1)).toMatchObject({ type: 'exit', task: { exit: { signal: 'SIGKILL' } } });
  });

  it('rejects with NOT_FOUND and UNAUTHENTICATED', async () => {
    const missing = await t.client.attach('no-such-task').catch((error: unknown) => error);
    expect(OverthereError.hasCode(missing, 'NOT_FOUND')).toBe(true);
    const task = await t.client.create({ command: ['sleep', '30'] });
    const stranger = createHttpClient({ baseUrl: t.url, token: 'wrong' });
    const refused = await stranger.attach(task.id).catch((error: unknown) => error);
    expect(OverthereError.hasCode(refused, 'UNAUTHENTICATED')).toBe(true);
    await t.client.stop(task.id, { signal: 'SIGKILL' });
  });

  it('ends with UNAVAILABLE (close 1001) when the server shuts down; the task runs on', async () => {
    const agent = await startAgent();
    try {
      const task = await agent.client.create({ command: sh('echo up; exec sleep 30') });
      const attachment = await agent.client.attach(task.id);
      const seen: HttpAttachEvent[] = [];
      const reading = (async () => {
        for await (const event of attachment) seen.push(event);
      })();
      await eventually(() => seen.length > 0, 'the first frame');
      await agent.agent.close();
      const error = await reading.then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(OverthereError.hasCode(error, 'UNAVAILABLE')).toBe(true);
      expect((await attachment.closed).code).toBe(1001);
      expect(agent.supervisor.get(task.id).state).toBe('running');
    } finally {
      await agent.close();
    }
  });
});
