/**
 * Jobs across restarts of rtot-server on one data dir, garbage collection of
 * completed jobs, and the data dir lock.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  client,
  runCli,
  startServer,
  tempDir,
  waitFor,
  type Job,
  type RunningServer,
} from './helpers.js';

const SECRET = 'persist';
const LOST = 'lost: rtot-server stopped while the job was running';

let temp: { dir: string; remove(): Promise<void> };
const running = new Set<RunningServer>();

beforeAll(async () => {
  temp = await tempDir('rtot-persist-');
});

afterAll(async () => {
  for (const server of running) await server.stop('SIGKILL');
  await temp?.remove();
});

async function serve(dataDir: string, extra: string[] = []): Promise<RunningServer> {
  const server = await startServer([
    '-a',
    '127.0.0.1:0',
    '-s',
    SECRET,
    '--data-dir',
    dataDir,
    '--kill-grace',
    '3s',
    ...extra,
  ]);
  running.add(server);
  void server.exited.then(() => running.delete(server));
  return server;
}

function readLines(file: string): Promise<string[]> {
  return readFile(file, 'utf8').then(
    (text) => text.split('\n').filter((line) => line !== ''),
    () => [],
  );
}

describe('restarts', () => {
  it('keeps jobs, ids and output across restarts; a job that was running is lost, never re-run', async () => {
    const dataDir = path.join(temp.dir, 'data');
    const runs = path.join(temp.dir, 'runs');

    // First server: a finished job and a running one; then it is killed outright.
    const first = await serve(dataDir);
    let api = client(first, SECRET);
    const finished = await api.post('echo to out\necho to err >&2\nexit 2\n');
    const before = await api.complete(finished.id);
    const longRunning = await api.post(`echo run >> '${runs}'\necho started\nsleep 60\n`);
    expect([finished.id, longRunning.id]).toEqual([0, 1]);
    await waitFor('the long job to print', async () => {
      const job = (await api.call(`/jobs/${longRunning.id}`)).json().jobs[0];
      return job?.out === 'started\n' ? job : undefined;
    });
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    // Second server, same data dir: everything is still there.
    const second = await serve(dataDir);
    api = client(second, SECRET);
    const after = await api.call(`/jobs/${finished.id}`);
    expect(after.status).toBe(200);
    expect(after.json().jobs[0]).toEqual(before);
    expect(before).toMatchObject({ out: 'to out\n', err: 'to err\n', exit: 'exit status 2' });

    const lost = await api.call(`/jobs/${longRunning.id}`);
    expect(lost.status).toBe(200);
    expect(lost.json().jobs[0]).toMatchObject({
      state: 'complete',
      out: 'started\n',
      exit: LOST,
    });
    expect(await readLines(runs)).toEqual(['run']);
    expect((await api.call('/jobs?state=running')).json().jobs).toEqual([]);

    // New jobs continue the ids. One is running when the server is stopped with SIGTERM.
    const third = await api.post(`echo run >> '${runs}'\necho third\nsleep 60\n`);
    expect(third.id).toBe(2);
    await waitFor('the third job to print', async () => {
      const job = (await api.call(`/jobs/${third.id}`)).json().jobs[0];
      return job?.out === 'third\n' ? job : undefined;
    });
    const started = Date.now();
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    // It went with the SIGTERM, not after the 3 s grace.
    expect(Date.now() - started).toBeLessThan(3_000);

    // Third server: the stopped job ended by SIGTERM; deleting the newest ids does not make them come back.
    const third2 = await serve(dataDir);
    api = client(third2, SECRET);
    const stopped = (await api.call(`/jobs/${third.id}`)).json().jobs[0];
    expect(stopped).toMatchObject({
      state: 'complete',
      out: 'third\n',
      exit: 'signal: terminated',
    });
    expect(await readLines(runs)).toEqual(['run', 'run']);
    for (const id of [1, 2]) {
      expect((await api.call(`/jobs/${id}`, { method: 'DELETE' })).status).toBe(204);
    }
    const ids = (await api.call('/jobs')).json().jobs.map((job: Job) => job.id);
    expect(ids).toEqual([0]);
    expect((await api.post('true')).id).toBe(3);
    expect(await third2.stop()).toEqual({ code: 0, signal: null });
  });

  it('refuses a second server on a data dir in use', async () => {
    const dataDir = path.join(temp.dir, 'locked');
    const holder = await serve(dataDir);
    const result = await runCli(['-a', '127.0.0.1:0', '-s', 'x', '--data-dir', dataDir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`is in use by rtot-server pid ${holder.process.pid}`);
    // The holder is unharmed.
    expect((await client(holder, SECRET).call('/jobs')).status).toBe(200);
  });
});

describe('garbage collection', () => {
  it('forgets completed jobs after --job-ttl, never running ones', async () => {
    const server = await serve(path.join(temp.dir, 'gc'), ['--job-ttl', '400ms']);
    const api = client(server, SECRET);
    const flag = path.join(temp.dir, 'gc.flag');
    const waiting = await api.post(`while [ ! -e '${flag}' ]; do sleep 0.02; done\necho done\n`);
    const quick = await api.post('echo quick');
    expect((await api.complete(quick.id)).out).toBe('quick\n');
    expect(existsSync(quick.filename!)).toBe(true);

    await waitFor('the quick job to be collected', async () =>
      (await api.call(`/jobs/${quick.id}`)).status === 404 ? true : undefined,
    );
    await waitFor('its script file to go', () => (existsSync(quick.filename!) ? undefined : true));
    // Running for longer than the TTL by now, and still there.
    expect((await api.call(`/jobs/${waiting.id}`)).status).toBe(202);

    await writeFile(flag, '');
    expect((await api.complete(waiting.id)).out).toBe('done\n');
    await waitFor('the waiting job to be collected', async () =>
      (await api.call(`/jobs/${waiting.id}`)).status === 404 ? true : undefined,
    );
    expect((await api.call('/jobs')).json()).toEqual({ jobs: [] });
  });
});
