/**
 * rtot-server as a process: command line, secrets, addresses, TLS, and the
 * ways it ends (DELETE /, SIGINT).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  client,
  curl,
  processExists,
  runCli,
  startServer,
  tempDir,
  waitFor,
  type RunningServer,
} from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dataDir(): Promise<string> {
  const temp = await tempDir('rtot-life-');
  cleanups.push(() => temp.remove());
  return temp.dir;
}

async function serve(args: string[], env: Record<string, string> = {}): Promise<RunningServer> {
  const server = await startServer(args, env);
  cleanups.push(() => server.stop('SIGKILL'));
  return server;
}

describe('command line', () => {
  it('--help prints the flags and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: rtot-server \[flags\]/);
    expect(result.stdout).toContain('-a, --addr ADDR');
    expect(result.stdout).toContain('[RTOT_SECRET]');
  });

  it('-v prints the version and exits 0', async () => {
    const result = await runCli(['-v']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^rtot-server \d+\.\d+\.\d+\n$/);
  });

  it('exits 2 with the usage for a flag it does not know', async () => {
    const result = await runCli(['-x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('flag provided but not defined: -x');
    expect(result.stderr).toContain('Usage: rtot-server');
  });
});

describe('secrets and addresses', () => {
  it('generates a secret when none is given, prints it on stderr and requires it', async () => {
    const server = await serve(['-a', ':0', '--data-dir', await dataDir()]);
    const secret = /no secret given, so generated "([0-9a-f]{32})"/.exec(server.stderr())?.[1];
    expect(secret).toBeDefined();
    // ":0" is every interface, as in Go, and the server says so.
    expect(server.printedUrl).toMatch(/^http:\/\/(\[::\]|0\.0\.0\.0):\d+$/);
    expect(server.stderr()).toContain('(every interface)');
    expect((await curl(`${server.url}/jobs`)).status).toBe(401);
    expect((await curl(`${server.url}/jobs`, { secret: 'guess' })).status).toBe(401);
    const response = await curl(`${server.url}/jobs`, { secret: secret! });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ jobs: [] });
  });

  it('takes RTOT_ADDR and RTOT_SECRET; jobs do not see RTOT_SECRET', async () => {
    const server = await serve(['--data-dir', await dataDir()], {
      RTOT_ADDR: '127.0.0.1:0',
      RTOT_SECRET: 'from-the-env',
    });
    expect(server.stderr()).not.toContain('generated');
    expect(server.printedUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const api = client(server, 'from-the-env');
    const job = await api.post('echo "secret=[${RTOT_SECRET-unset}]"');
    expect((await api.complete(job.id)).out).toBe('secret=[unset]\n');
  });

  it('serves HTTPS with --tls-cert and --tls-key', async () => {
    const dir = await dataDir();
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ]);
    const server = await serve([
      '-a=127.0.0.1:0',
      '-s=tls',
      '--data-dir',
      path.join(dir, 'data'),
      '--tls-cert',
      cert,
      '--tls-key',
      key,
    ]);
    expect(server.url).toMatch(/^https:\/\//);
    expect((await curl(`${server.url}/ping`, { insecure: true })).status).toBe(200);
    const api = client({ url: server.url }, 'tls');
    const response = await api.call('/jobs', { data: 'echo over tls', insecure: true });
    expect(response.status).toBe(201);
    await expect(curl(server.url.replace('https:', 'http:') + '/ping')).rejects.toThrow();
  });
});

describe('ending', () => {
  it('DELETE / answers 204, stops running jobs and exits with status 1 as the original', async () => {
    const dir = await dataDir();
    const server = await serve(['-a', '127.0.0.1:0', '-s', 'die', '--data-dir', dir]);
    const api = client(server, 'die');
    const pidFile = path.join(dir, 'job.pid');
    await api.post(`echo $$ > '${pidFile}'\nsleep 30\n`);
    const pid = await waitFor('the job pid', async () => {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      return text.endsWith('\n') ? Number(text) : undefined;
    });

    const response = await api.call('/', { method: 'DELETE' });
    expect(response.status).toBe(204);
    expect(response.body).toBe('');
    expect(await server.exited).toEqual({ code: 1, signal: null });
    expect(processExists(pid)).toBe(false);
    expect(server.stderr()).toContain('DELETE /: stopping jobs and exiting');
  });

  it('SIGINT stops the server with status 0', async () => {
    const server = await serve(['-a', '127.0.0.1:0', '-s', 'x', '--data-dir', await dataDir()]);
    expect(await server.stop('SIGINT')).toEqual({ code: 0, signal: null });
  });
});
