// HTTPS and WSS with a self-signed certificate made here with openssl;
// curl --cacert and the ws client (through the package's attach) as clients.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { TaskInfo } from '@overthere/core';
import { createHttpClient } from '@overthere/transport-http';
import { curl, json, startAgent, type TestAgent } from './helpers.js';

const run = promisify(execFile);
let dir: string;
let certificate: Buffer;
let t: TestAgent;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'overthere-http-tls-'));
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  certificate = await readFile(join(dir, 'cert.pem'));
  t = await startAgent({ tls: { key: await readFile(join(dir, 'key.pem')), cert: certificate } });
});
afterAll(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

it('serves https: curl trusts it with --cacert and refuses it without', async () => {
  expect(t.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const cacert = ['--cacert', join(dir, 'cert.pem')];
  const created = await curl([
    ...cacert,
    ...t.auth,
    '-H',
    'Content-Type: application/json',
    '--data-binary',
    '{"command":["echo","over tls"]}',
    `${t.url}/v1/tasks`,
  ]);
  expect(created.status).toBe(201);
  const task = json<TaskInfo>(created);
  const output = await curl([...cacert, ...t.auth, `${t.url}/v1/tasks/${task.id}/output?follow=1`]);
  expect(output.status).toBe(200);
  expect(output.body.toString()).toBe('over tls\n');
  const untrusted = await curl([`${t.url}/healthz`]);
  expect(untrusted.exitCode).toBe(60); // peer certificate cannot be authenticated
  const unauthenticated = await curl([...cacert, `${t.url}/v1/tasks`]);
  expect(unauthenticated.status).toBe(401);
});

it('serves wss: attach with the certificate as CA', async () => {
  const task = await t.supervisor.create({ command: ['cat'], stdin: 'pipe' });
  const client = createHttpClient({
    baseUrl: t.url,
    token: 'test-token-0123456789',
    webSocketOptions: { ca: certificate },
  });
  const attachment = await client.attach(task.id);
  const chunks: Buffer[] = [];
  const reading = (async () => {
    for await (const event of attachment) if (event.type === 'frame') chunks.push(event.data);
  })();
  await attachment.writeStdin('secret\n');
  await attachment.closeStdin();
  await reading;
  expect(Buffer.concat(chunks).toString()).toBe('secret\n');
  const untrusted = createHttpClient({ baseUrl: t.url, token: 'test-token-0123456789' });
  await expect(untrusted.attach(task.id)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
});
