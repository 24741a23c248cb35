/**
 * The seed's walk-through end to end with curl and a WebSocket client, then
 * the refusals: 409, 400 for every kind of bad body, 404 for unknown slugs,
 * auth, and the command line.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildArchive } from './archives.js';
import {
  createProcess,
  curl,
  openConsole,
  runCli,
  startAgent,
  startFileServer,
  statusOf,
  tempDir,
  waitForStatus,
  type FileServer,
  type RunningAgent,
  type StatusDocument,
} from './helpers.js';

let files: FileServer;
let agent: RunningAgent;
let data: { dir: string; remove(): Promise<void> };
let sourceUrl: string | undefined;

beforeAll(async () => {
  files = await startFileServer();
  sourceUrl = files.serve('app.tar.gz', {
    body: await buildArchive('tar.gz', [
      {
        name: 'Procfile',
        data: 'web: echo "web up on $PORT"; while true; do echo beat; sleep 0.2; done\nworker: sleep 60\n',
      },
    ]),
    contentType: 'application/x-gtar',
  });
  data = await tempDir('smartmob-api-');
  agent = await startAgent(data.dir);
});

afterAll(async () => {
  await agent?.stop();
  await files?.close();
  await data?.remove();
});

describe('the walk-through', () => {
  it('index, listing, create, listing, attach, delete — with curl and a WebSocket', async () => {
    const root = await curl(`${agent.url}`);
    expect(root.status).toBe(200);
    expect(root.headers['content-type']).toMatch(/^application\/json/);
    const index = root.json<{ create: string; list: string }>();
    expect(index).toEqual({
      create: `${agent.url}/create-process`,
      list: `${agent.url}/list-processes`,
    });

    const empty = await curl(index.list);
    expect(empty.status).toBe(200);
    expect(empty.json()).toEqual({ processes: [] });

    const created = await curl(index.create, {
      data: JSON.stringify({
        app: 'myapp',
        source_url: sourceUrl,
        process_type: 'web',
        node: 'web.0',
      }),
    });
    expect(created.status).toBe(201);
    const process = created.json<StatusDocument>();
    const host = agent.url.replace('http://', '');
    expect(process).toMatchObject({
      app: 'myapp',
      attach: `ws://${host}/attach-console/myapp.web.0`,
      delete: `http://${host}/delete-process/myapp.web.0`,
      details: `http://${host}/process-status/myapp.web.0`,
      slug: 'myapp.web.0',
      state: 'pending',
      status: `http://${host}/process-status/myapp.web.0`,
      node: 'web.0',
      process_type: 'web',
    });
    expect(created.headers.location).toBe(process.details);

    const listing = (await curl(index.list)).json<{ processes: StatusDocument[] }>();
    expect(listing.processes.map((entry) => entry.slug)).toEqual(['myapp.web.0']);
    expect(listing.processes[0]).toMatchObject({ app: 'myapp', attach: process.attach });

    const stream = await openConsole(process.attach);
    const lines = await stream.waitForLines(3);
    expect(lines[0]).toMatch(/^web up on \d+$/);
    expect(lines.slice(1, 3)).toEqual(['beat', 'beat']);
    const running = await waitForStatus(agent, 'myapp.web.0', (status) => status.pid !== undefined);
    expect(running).toMatchObject({ state: 'processing', restarts: 0 });

    const deleted = await curl(process.delete, { data: JSON.stringify({}) });
    expect(deleted.status).toBe(200);
    expect(deleted.json()).toEqual({});
    // The console ends when the process goes.
    expect((await stream.closed).code).toBe(1000);
    expect((await curl(index.list)).json()).toEqual({ processes: [] });
  });

  it('follows the Host the client used in every URL', async () => {
    const response = await curl(agent.url, { headers: { Host: 'agent.example:9999' } });
    expect(response.json()).toEqual({
      create: 'http://agent.example:9999/create-process',
      list: 'http://agent.example:9999/list-processes',
    });
  });
});

describe('the start pipeline as clients see it', () => {
  it('shows pending, then downloading while the archive is on its way, then processing', async () => {
    const url = files.serve('slow-app.tar.gz', {
      body: await buildArchive('tar.gz', [{ name: 'Procfile', data: 'web: echo slow; sleep 60' }]),
      delayMs: 800,
    });
    const created = await createProcess(agent, {
      app: 'states',
      node: 'web.0',
      process_type: 'web',
      source_url: url,
    });
    expect(created.json()).toMatchObject({ state: 'pending' });
    await waitForStatus(agent, 'states.web.0', (status) => status.state === 'downloading');
    const running = await waitForStatus(
      agent,
      'states.web.0',
      (status) => status.pid !== undefined,
    );
    expect(running.state).toBe('processing');
    expect((await curl(`${agent.url}/delete-process/states.web.0`, { data: '{}' })).status).toBe(
      200,
    );
  });

  it('a delete during the download cancels it at once', async () => {
    const url = files.serve('stuck-app.tar.gz', { body: Buffer.alloc(10), delayMs: 30_000 });
    await createProcess(agent, {
      app: 'states',
      node: 'stuck',
      process_type: 'web',
      source_url: url,
    });
    await waitForStatus(agent, 'states.stuck', (status) => status.state === 'downloading');
    const started = Date.now();
    const response = await curl(`${agent.url}/delete-process/states.stuck`, { data: '{}' });
    expect(response.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await statusOf(agent, 'states.stuck')).toBeUndefined();
    // The slug is free again.
    const again = await createProcess(agent, {
      app: 'states',
      node: 'stuck',
      process_type: 'web',
      source_url: sourceUrl,
    });
    expect(again.status).toBe(201);
    expect((await curl(`${agent.url}/delete-process/states.stuck`, { data: '{}' })).status).toBe(
      200,
    );
  });
});

describe('refusals', () => {
  // Also built for the tables, before the file server exists: those never download.
  const valid = (): Record<string, unknown> => ({
    app: 'refuse',
    node: 'web.0',
    process_type: 'web',
    source_url: sourceUrl ?? 'http://127.0.0.1:9/app.tar.gz',
  });

  it('409 on a duplicate slug, the first process untouched', async () => {
    expect((await createProcess(agent, valid())).status).toBe(201);
    const again = await createProcess(agent, { ...valid(), process_type: 'worker' });
    expect(again.status).toBe(409);
    expect(again.json()).toMatchObject({ code: 'CONFLICT' });
    expect((await statusOf(agent, 'refuse.web.0'))?.process_type).toBe('web');
    expect(
      (await curl(`${agent.url}/delete-process/refuse.web.0`, { method: 'POST' })).status,
    ).toBe(200);
  });

  it.each([
    ['a missing field', { app: 'x', node: 'y', process_type: 'web' }, /source_url is required/],
    ['an extra field', { ...valid(), extra: true }, /unknown field "extra"/],
    ['a number for a string', { ...valid(), node: 7 }, /node must be a string/],
    ['env as a list', { ...valid(), env: ['A=1'] }, /env must be an object/],
    ['an env value that is not a string', { ...valid(), env: { A: 1 } }, /env.A must be a string/],
    [
      'a source_url that is not http',
      { ...valid(), source_url: 'file:///etc/passwd' },
      /http or https/,
    ],
    ['a slug with a slash', { ...valid(), node: '../x' }, /node must be/],
    ['a JSON array', [valid()], /JSON object/],
    ['null', null, /JSON object/],
  ])('400 on %s', async (_what, body, message) => {
    const response = await createProcess(agent, body);
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(message),
    });
  });

  it('400 on a body that is not JSON, and on no body (the original crashed with 500)', async () => {
    for (const data of ['app=x&node=y', '{"app": ', '']) {
      const response = await curl(`${agent.url}/create-process`, { data });
      expect(response.status).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect((await curl(`${agent.url}/list-processes`)).json()).toEqual({ processes: [] });
  });

  it('413 on a body past the limit', async () => {
    const response = await createProcess(agent, { ...valid(), env: { BIG: 'x'.repeat(100_000) } });
    expect(response.status).toBe(413);
  });

  it('404 on an unknown slug for status, delete and attach', async () => {
    const status = await curl(`${agent.url}/process-status/nope.web.0`);
    expect(status.status).toBe(404);
    expect(status.json()).toMatchObject({ code: 'NOT_FOUND' });
    const removal = await curl(`${agent.url}/delete-process/nope.web.0`, { data: '{}' });
    expect(removal.status).toBe(404);
    await expect(
      openConsole(`${agent.url.replace('http', 'ws')}/attach-console/nope.web.0`),
    ).rejects.toThrow(/upgrade refused: 404/);
  });

  it('400 on a bad cursor before the upgrade, 426 without an upgrade', async () => {
    expect((await createProcess(agent, { ...valid(), node: 'cursor' })).status).toBe(201);
    const ws = agent.url.replace('http', 'ws');
    await expect(openConsole(`${ws}/attach-console/refuse.cursor?cursor=-1`)).rejects.toThrow(
      /400/,
    );
    expect((await curl(`${agent.url}/attach-console/refuse.cursor`)).status).toBe(426);
    expect((await curl(`${agent.url}/delete-process/refuse.cursor`, { data: '{}' })).status).toBe(
      200,
    );
  });
});

describe('auth and command line', () => {
  it('with --token, every route needs the bearer token (header, or access_token for browsers)', async () => {
    const secured = await tempDir('smartmob-auth-');
    const withToken = await startAgent(secured.dir, ['--token', 's3cret']);
    try {
      expect((await curl(withToken.url)).status).toBe(401);
      expect(
        (await curl(withToken.url, { headers: { Authorization: 'Bearer wrong' } })).status,
      ).toBe(401);
      expect(
        (await curl(withToken.url, { headers: { Authorization: 'Bearer s3cret' } })).status,
      ).toBe(200);
      expect((await curl(`${withToken.url}/list-processes?access_token=s3cret`)).status).toBe(200);
      await expect(
        openConsole(`${withToken.url.replace('http', 'ws')}/attach-console/x.y`),
      ).rejects.toThrow(/401/);
    } finally {
      await withToken.stop();
      await secured.remove();
    }
  });

  it('refuses to listen beyond loopback without a token', async () => {
    const unused = `${data.dir}-unused`;
    const result = await runCli(['--host', '0.0.0.0', '--port', '0', '--data-dir', unused]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without auth/);
    // Refused before the data dir was created.
    expect(existsSync(unused)).toBe(false);
  });

  it('--version, --help, and exit 2 on a bad flag', async () => {
    const version = await runCli(['--version']);
    expect(version).toMatchObject({ code: 0 });
    expect(version.stdout).toMatch(/^smartmob-agent \d+\.\d+\.\d+\n$/);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--host HOST/);
    expect(help.stdout).toMatch(/default 127\.0\.0\.1/);
    expect(help.stdout).toMatch(/--port PORT[\s\S]*default 8080/);
    const bad = await runCli(['--restart-initial-delay', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--restart-initial-delay: want a duration/);
  });
});
