// Every /v1 route with curl as the client: status codes, headers and shapes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '@overthere/core';
import { curl, json, metricValue, sh, startAgent, type TestAgent } from './helpers.js';

let t: TestAgent;
beforeAll(async () => {
  t = await startAgent();
});
afterAll(async () => {
  await t.close();
});

const post = (path: string, body: unknown, extra: string[] = []) =>
  curl([
    ...t.auth,
    '-X',
    'POST',
    '-H',
    'Content-Type: application/json',
    '--data-binary',
    JSON.stringify(body),
    ...extra,
    `${t.url}${path}`,
  ]);
const get = (path: string, extra: string[] = []) => curl([...t.auth, ...extra, `${t.url}${path}`]);

describe('tasks', () => {
  it('POST /v1/tasks starts a task: 201, Location, the task JSON', async () => {
    const result = await post('/v1/tasks', {
      command: ['echo', 'hi'],
      labels: { suite: 'routes' },
    });
    expect(result.status).toBe(201);
    expect(result.headers['content-type']).toMatch(/^application\/json/);
    const task = json<TaskInfo>(result);
    expect(result.headers.location).toBe(`/v1/tasks/${task.id}`);
    expect(task).toMatchObject({
      spec: { command: ['echo', 'hi'], labels: { suite: 'routes' } },
      runtime: 'local',
      restarts: 0,
      stopRequested: false,
    });
    expect(['running', 'exited']).toContain(task.state);
    expect(Date.parse(task.createdAt)).not.toBeNaN();
  });

  it('POST /v1/tasks takes a script, an id and labels', async () => {
    const id = `script-${Date.now()}`;
    const result = await post('/v1/tasks', { script: 'echo from a script', id });
    expect(result.status).toBe(201);
    expect(json<TaskInfo>(result).id).toBe(id);
    const final = await t.client.wait(id);
    expect(final.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
    expect((await t.supervisor.output(id).text('stdout')).toString()).toBe('from a script\n');
  });

  it('POST /v1/tasks?wait=1 answers once the task is final, or at timeoutMs with it running', async () => {
    const done = await post('/v1/tasks?wait=1', { command: ['sh', '-c', 'exit 3'] });
    expect(done.status).toBe(201);
    expect(json<TaskInfo>(done)).toMatchObject({
      state: 'exited',
      exit: { code: 3, signal: null, reason: 'exited' },
    });
    expect(done.headers.location).toBe(`/v1/tasks/${json<TaskInfo>(done).id}`);
    const started = Date.now();
    const live = await post('/v1/tasks?wait=true&timeoutMs=200', { command: ['sleep', '30'] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(live.status).toBe(201);
    expect(json<TaskInfo>(live).state).toBe('running');
    await t.client.stop(json<TaskInfo>(live).id);
    const bad = await post('/v1/tasks?timeoutMs=5', { command: ['true'] });
    expect(bad.status).toBe(400);
    expect(json<{ code: string }>(bad).code).toBe('INVALID_ARGUMENT');
  });

  it('GET /v1/tasks/:id and GET /v1/tasks (state and label filters, oldest first)', async () => {
    const label = `list-${Date.now()}`;
    const first = json<TaskInfo>(
      await post('/v1/tasks', { command: ['true'], labels: { l: label } }),
    );
    await t.client.wait(first.id);
    const second = json<TaskInfo>(
      await post('/v1/tasks', { command: ['sleep', '30'], labels: { l: label } }),
    );
    const one = await get(`/v1/tasks/${second.id}`);
    expect(one.status).toBe(200);
    expect(json<TaskInfo>(one)).toMatchObject({ id: second.id, state: 'running' });

    const all = await get(`/v1/tasks?label=l=${label}`);
    expect(all.status).toBe(200);
    expect(json<{ tasks: TaskInfo[] }>(all).tasks.map((task) => task.id)).toEqual([
      first.id,
      second.id,
    ]);
    const running = json<{ tasks: TaskInfo[] }>(
      await get(`/v1/tasks?state=running,backoff&label=l=${label}`),
    );
    expect(running.tasks.map((task) => task.id)).toEqual([second.id]);
    const repeated = json<{ tasks: TaskInfo[] }>(
      await get(`/v1/tasks?state=exited&state=running&label=l=${label}&label=nope=1`),
    );
    expect(repeated.tasks).toEqual([]);
    await t.client.stop(second.id, { signal: 'SIGKILL' });
  });

  it('GET /v1/tasks/:id/wait: 200 once final, 202 with the live task at the timeout', async () => {
    const task = await t.client.create({ command: ['sleep', '30'] });
    const early = await get(`/v1/tasks/${task.id}/wait?timeoutMs=50`);
    expect(early.status).toBe(202);
    expect(json<TaskInfo>(early).state).toBe('running');
    const waiting = get(`/v1/tasks/${task.id}/wait?timeoutMs=20000`);
    await t.client.signal(task.id, 'SIGTERM');
    const final = await waiting;
    expect(final.status).toBe(200);
    expect(json<TaskInfo>(final)).toMatchObject({
      state: 'exited',
      exit: { code: null, signal: 'SIGTERM', reason: 'signalled' },
    });
    const again = await get(`/v1/tasks/${task.id}/wait`);
    expect(again.status).toBe(200);
  });

  it('POST /v1/tasks/:id/signal → 204; on a finished task → 412', async () => {
    const task = await t.client.create({ command: ['sleep', '30'] });
    const result = await post(`/v1/tasks/${task.id}/signal`, { signal: 'TERM' });
    expect(result.status).toBe(204);
    expect(result.body.length).toBe(0);
    expect((await t.client.wait(task.id)).exit?.signal).toBe('SIGTERM');
    const late = await post(`/v1/tasks/${task.id}/signal`, { signal: 'SIGTERM' });
    expect(late.status).toBe(412);
    expect(json(late).code).toBe('FAILED_PRECONDITION');
  });

  it('POST /v1/tasks/:id/stop: 202 while stopping, 200 with wait:true, body optional', async () => {
    const trap = sh('trap "" TERM; echo ready; while :; do sleep 1; done');
    const a = await t.client.create({ command: trap, kill: { graceMs: 200 } });
    for await (const event of t.client.output(a.id, { follow: true })) {
      if (event.type === 'frame' && event.data.toString().includes('ready')) break;
    }
    const begun = await post(`/v1/tasks/${a.id}/stop`, {});
    expect(begun.status).toBe(202);
    expect(json<TaskInfo>(begun)).toMatchObject({ state: 'stopping', stopRequested: true });
    expect((await t.client.wait(a.id)).exit).toEqual({
      code: null,
      signal: 'SIGKILL',
      reason: 'killed',
    });

    const b = await t.client.create({ command: ['sleep', '30'] });
    const waited = await post(`/v1/tasks/${b.id}/stop`, {
      signal: 'SIGINT',
      graceMs: 5000,
      wait: true,
    });
    expect(waited.status).toBe(200);
    expect(json<TaskInfo>(waited)).toMatchObject({
      state: 'exited',
      exit: { signal: 'SIGINT', reason: 'signalled' },
    });

    const c = await t.client.create({ command: ['sleep', '30'] });
    const noBody = await curl([...t.auth, '-X', 'POST', `${t.url}/v1/tasks/${c.id}/stop`]);
    expect(noBody.status).toBe(202);
    await t.client.wait(c.id);
    const already = await curl([...t.auth, '-X', 'POST', `${t.url}/v1/tasks/${c.id}/stop`]);
    expect(already.status).toBe(200);
  });

  it('DELETE /v1/tasks/:id → 204 (stopping a live task first), then 404', async () => {
    const task = await t.client.create({ command: ['sleep', '30'], kill: { graceMs: 200 } });
    const removed = await curl([...t.auth, '-X', 'DELETE', `${t.url}/v1/tasks/${task.id}`]);
    expect(removed.status).toBe(204);
    const gone = await get(`/v1/tasks/${task.id}`);
    expect(gone.status).toBe(404);
    expect(json(gone)).toEqual({ code: 'NOT_FOUND', message: expect.any(String) });
  });

  it('POST /v1/tasks/:id/stdin writes raw bytes (any content type); ?eof=1 closes', async () => {
    const task = await t.client.create({ command: ['cat'], stdin: 'pipe' });
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 0x80]);
    const first = await curl(
      [...t.auth, '--data-binary', '@-', `${t.url}/v1/tasks/${task.id}/stdin`],
      bytes,
    );
    expect(first.status).toBe(204);
    const second = await curl([
      ...t.auth,
      '-H',
      'Content-Type: application/json',
      '--data-binary',
      '{"not":"parsed"}',
      `${t.url}/v1/tasks/${task.id}/stdin?eof=1`,
    ]);
    expect(second.status).toBe(204);
    expect((await t.client.wait(task.id)).exit?.code).toBe(0);
    const out = await t.supervisor.output(task.id).text('stdout');
    expect(out.equals(Buffer.concat([bytes, Buffer.from('{"not":"parsed"}')]))).toBe(true);
    const closed = await curl([
      ...t.auth,
      '--data-binary',
      'late',
      `${t.url}/v1/tasks/${task.id}/stdin`,
    ]);
    expect(closed.status).toBe(412);
  });

  it('POST /v1/tasks/:id/resize → 204 with a TTY, 501 without', async () => {
    const tty = await t.client.create({
      command: sh('stty size; read line; stty size'),
      tty: { cols: 80, rows: 24 },
    });
    for await (const event of t.client.output(tty.id, { follow: true })) {
      if (event.type === 'frame' && event.data.toString().includes('24 80')) break;
    }
    const resized = await post(`/v1/tasks/${tty.id}/resize`, { cols: 120, rows: 40 });
    expect(resized.status).toBe(204);
    await t.client.writeStdin(tty.id, 'go\r');
    await t.client.wait(tty.id);
    expect((await t.supervisor.output(tty.id).text('stdout')).toString()).toContain('40 120');

    const plain = await t.client.create({ command: ['sleep', '30'] });
    const unsupported = await post(`/v1/tasks/${plain.id}/resize`, { cols: 100, rows: 30 });
    expect(unsupported.status).toBe(501);
    expect(json(unsupported).code).toBe('UNSUPPORTED');
    await t.client.stop(plain.id, { signal: 'SIGKILL' });
  });
});

describe('agent routes', () => {
  it('GET /v1/capacity counts live tasks', async () => {
    const result = await get('/v1/capacity');
    expect(result.status).toBe(200);
    const body = json(result);
    expect(body.liveTasks).toBe((await t.supervisor.capacity()).liveTasks);
    expect(typeof body.memoryBytes).toBe('number');
  });

  it("GET /v1/runtime describes the default runtime's capabilities", async () => {
    const result = await get('/v1/runtime');
    expect(result.status).toBe(200);
    const body = json(result);
    expect(body).toEqual({
      id: 'local',
      capabilities: t.runtime.capabilities,
      runtimes: [{ id: 'local', capabilities: t.runtime.capabilities }],
    });
  });

  it('GET /v1/openapi.json is an OpenAPI 3.1 document of every route', async () => {
    const result = await get('/v1/openapi.json');
    expect(result.status).toBe(200);
    const document = json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      result,
    );
    expect(document.openapi).toBe('3.1.0');
    const routes = t.agent.server.printRoutes({ commonPrefix: false });
    for (const path of [
      '/v1/tasks',
      '/v1/tasks/{id}',
      '/v1/tasks/{id}/wait',
      '/v1/tasks/{id}/signal',
      '/v1/tasks/{id}/stop',
      '/v1/tasks/{id}/stdin',
      '/v1/tasks/{id}/resize',
      '/v1/tasks/{id}/output',
      '/v1/tasks/{id}/attach',
      '/v1/capacity',
      '/v1/runtime',
      '/v1/openapi.json',
      '/healthz',
      '/metrics',
    ]) {
      expect(document.paths[path], path).toBeDefined();
      expect(routes).toContain(path.replace('{id}', ':id').split('/').at(-1));
    }
    expect(Object.keys(document.paths['/v1/tasks']!).sort()).toEqual(['get', 'post']);
  });

  it('GET /healthz needs no token', async () => {
    const result = await curl([`${t.url}/healthz`]);
    expect(result.status).toBe(200);
    expect(json(result)).toEqual({ status: 'ok' });
  });

  it('GET /metrics: Prometheus text with task, request and output counters', async () => {
    const task = await t.client.create({ command: ['echo', 'metrics'] });
    await t.client.wait(task.id);
    await get(`/v1/tasks/${task.id}/output`);
    await get('/v1/tasks/no-such-task');
    const result = await get('/metrics');
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = result.body.toString();
    expect(text).toContain('# TYPE overthere_tasks_created_total counter');
    expect(metricValue(text, 'overthere_tasks_created_total')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'overthere_tasks_ended_total{state="exited"}')).toBeGreaterThanOrEqual(
      1,
    );
    expect(metricValue(text, 'overthere_tasks_live')).toBe(
      (await t.supervisor.capacity()).liveTasks,
    );
    expect(
      metricValue(
        text,
        'overthere_http_requests_total{method="GET",route="/v1/tasks/:id",status="404"}',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(text, 'overthere_output_bytes_sent_total{format="raw"}'),
    ).toBeGreaterThanOrEqual('metrics\n'.length);
    for (const line of text.trim().split('\n')) {
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?\d+(\.\d+)?(e[+-]?\d+)?)$/);
    }
  });

  it('a wrong method on a known route is 405 with Allow', async () => {
    const result = await curl([...t.auth, '-X', 'PUT', `${t.url}/v1/tasks`]);
    expect(result.status).toBe(405);
    expect(result.headers.allow).toBe('GET, POST, HEAD');
    expect(json(result).code).toBe('INVALID_ARGUMENT');
    const patch = await curl([...t.auth, '-X', 'PATCH', `${t.url}/v1/tasks/x/signal`]);
    expect(patch.status).toBe(405);
  });

  it('HEAD works where GET does, except on streams and long polls (405)', async () => {
    const list = await curl([...t.auth, '-I', `${t.url}/v1/tasks`]);
    expect(list.status).toBe(200);
    const task = await t.client.create({ command: ['true'] });
    for (const path of ['output', 'wait', 'attach']) {
      const head = await curl([...t.auth, '-I', `${t.url}/v1/tasks/${task.id}/${path}`]);
      expect(head.status, path).toBe(405);
      expect(head.headers.allow, path).toBe('GET');
    }
  });

  it('an unknown route is 404 NOT_FOUND', async () => {
    const result = await get('/v2/tasks');
    expect(result.status).toBe(404);
    expect(json(result).code).toBe('NOT_FOUND');
  });
});
