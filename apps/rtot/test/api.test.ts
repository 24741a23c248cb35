/**
 * The rtot API route by route against a real rtot-server, with curl.
 */
import { existsSync, realpathSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GO_TIME,
  GO_ZERO_TIME,
  client,
  curl,
  processExists,
  startServer,
  tempDir,
  waitFor,
  type Job,
  type RunningServer,
} from './helpers.js';

const SECRET = 'supersecret';
const BODY_LIMIT = 64 * 1024;

let server: RunningServer;
let data: { dir: string; remove(): Promise<void> };
let work: { dir: string; remove(): Promise<void> };
let api: ReturnType<typeof client>;

beforeAll(async () => {
  data = await tempDir('rtot-api-data-');
  work = await tempDir('rtot-api-work-');
  server = await startServer([
    '-a=127.0.0.1:0',
    '-s',
    SECRET,
    '--data-dir',
    data.dir,
    '--body-limit',
    String(BODY_LIMIT),
    '--kill-grace',
    '2s',
  ]);
  api = client(server, SECRET);
});

afterAll(async () => {
  const exit = await server?.stop();
  await data?.remove();
  await work?.remove();
  expect(exit).toEqual({ code: 0, signal: null });
});

/** A script that prints `ready`, waits for a flag file, then prints `done`. */
function gated(name: string): { script: string; release(): Promise<void> } {
  const flag = path.join(work.dir, `${name}.flag`);
  return {
    script: `echo ready\nwhile [ ! -e '${flag}' ]; do sleep 0.02; done\necho done\n`,
    release: () => writeFile(flag, ''),
  };
}

/** Wait until GET /jobs/:id shows `out` (output reaches the log asynchronously). */
function waitForOutput(
  id: number,
  out: string,
): Promise<{ response: Awaited<ReturnType<typeof api.call>>; job: Job }> {
  return waitFor(`job ${id} to print ${JSON.stringify(out)}`, async () => {
    const response = await api.call(`/jobs/${id}`);
    const job = response.json().jobs[0];
    return job?.out === out ? { response, job } : undefined;
  });
}

describe('authentication', () => {
  it('answers GET /ping without the secret: {"message":"still here","uptime"}', async () => {
    const response = await curl(`${server.url}/ping`);
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['rtot-version']).toMatch(/^\d+\.\d+\.\d+/);
    const body = response.json<{ message: string; uptime: string }>();
    expect(Object.keys(body)).toEqual(['message', 'uptime']);
    expect(body.message).toBe('still here');
    expect(body.uptime).toMatch(/^(\d+h)?(\d+m)?\d+(\.\d+)?(ns|µs|ms|s)$/);
  });

  it.each([
    ['GET', '/'],
    ['DELETE', '/'],
    ['GET', '/jobs'],
    ['POST', '/jobs'],
    ['DELETE', '/jobs'],
    ['GET', '/jobs/0'],
    ['DELETE', '/jobs/0'],
    ['POST', '/ping'],
    ['GET', '/no/such/route'],
  ])('refuses %s %s without the right Rtot-Secret: 401 "Not Authorized"', async (method, route) => {
    for (const secret of [undefined, 'wrong', `${SECRET}x`, SECRET.slice(0, -1)]) {
      const response = await curl(`${server.url}${route}`, {
        method,
        ...(secret === undefined ? {} : { secret }),
        ...(method === 'POST' ? { data: 'touch /should-not-exist' } : {}),
      });
      expect(response.status).toBe(401);
      expect(response.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(response.body).toBe('Not Authorized\n');
    }
    // Nothing happened: the server is up and (checked by the next test) no job was made.
    expect((await curl(`${server.url}/ping`)).status).toBe(200);
  });

  it('GET / lists the links', async () => {
    const response = await api.call('/');
    expect(response.status).toBe(200);
    expect(response.json<object>()).toEqual({
      links: { jobs: '/jobs{?state}', 'jobs.byID': '/jobs/{jobs.id}', ping: '/ping' },
    });
  });
});

describe('POST /jobs', () => {
  it('creates jobs with integer ids from 0: 201 {"jobs":[job]}, then the output', async () => {
    const response = await api.call('/jobs', { data: 'echo wat is happening' });
    expect(response.status).toBe(201);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const body = response.json();
    expect(body.jobs).toHaveLength(1);
    const job = body.jobs[0]!;
    expect(job).toMatchObject({
      id: 0,
      href: '/jobs/0',
      filename: path.join(data.dir, 'scripts', 'rtot-job-0'),
    });
    expect(['running', 'complete']).toContain(job.state);
    expect(job.create).toMatch(GO_TIME);
    expect(job.start).toMatch(GO_TIME);
    expect(job.complete).toMatch(GO_TIME);

    const done = await api.complete(0);
    expect(Object.keys(done)).toEqual([
      'id',
      'out',
      'state',
      'start',
      'complete',
      'create',
      'filename',
      'href',
    ]);
    expect(done).toMatchObject({ id: 0, out: 'wat is happening\n', state: 'complete' });
    expect(done.complete).not.toBe(GO_ZERO_TIME);
    expect(done.complete).toMatch(GO_TIME);
    expect(done.create).toBe(job.create);

    const second = await api.post('true');
    expect(second.id).toBe(1);
    expect(second.href).toBe('/jobs/1');
  });

  it('prepends #!/bin/bash to a script without a shebang and runs the file itself', async () => {
    const job = await api.post('echo "$0"\nreadlink /proc/$$/exe\n');
    const script = await readFile(job.filename!, 'utf8');
    expect(script).toBe('#!/bin/bash\necho "$0"\nreadlink /proc/$$/exe\n');
    expect((await stat(job.filename!)).mode & 0o777).toBe(0o700);
    const done = await api.complete(job.id);
    expect(done.out).toBe(`${job.filename!}\n${realpathSync('/bin/bash')}\n`);
    expect(done.exit).toBeUndefined();
  });

  it('runs a script with its own #!/bin/sh line with /bin/sh, unchanged', async () => {
    const text = '#!/bin/sh\nreadlink /proc/$$/exe\n';
    const job = await api.post(text);
    expect(await readFile(job.filename!, 'utf8')).toBe(text);
    const done = await api.complete(job.id);
    expect(done.out).toBe(`${realpathSync('/bin/sh')}\n`);
  });

  it('runs a python3 script through its shebang: out, err and exit status 3', async () => {
    const job = await api.post(
      '#!/usr/bin/env python3\nimport sys\nprint("py", sys.version_info[0])\n' +
        'sys.stderr.write("to stderr\\n")\nsys.exit(3)\n',
    );
    const done = await api.complete(job.id);
    expect(done).toMatchObject({
      out: 'py 3\n',
      err: 'to stderr\n',
      state: 'complete',
      exit: 'exit status 3',
    });
  });

  it('takes the body as the script whatever the content type says', async () => {
    const asJson = await api.call('/jobs', {
      data: "printf '%s\\n' json-ok",
      headers: { 'Content-Type': 'application/json' },
    });
    const asForm = await api.call('/jobs', {
      data: 'echo a+b=c%20d',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect([asJson.status, asForm.status]).toEqual([201, 201]);
    expect((await api.complete(asJson.json().jobs[0]!.id)).out).toBe('json-ok\n');
    expect((await api.complete(asForm.json().jobs[0]!.id)).out).toBe('a+b=c%20d\n');
  });

  it('makes an empty body a job that does nothing and succeeds', async () => {
    const response = await api.call('/jobs', { method: 'POST' });
    expect(response.status).toBe(201);
    const done = await api.complete(response.json().jobs[0]!.id);
    expect(done.out).toBeUndefined();
    expect(done.err).toBeUndefined();
    expect(done.exit).toBeUndefined();
  });

  it('reports a missing interpreter as a failed job, not a refused request', async () => {
    const job = await api.post('#!/no/such/interpreter\necho hi\n');
    const done = await api.complete(job.id);
    expect(done.exit).toBe('exit status 127');
    expect(done.err).toMatch(/not found|No such file/);
    expect(done.out).toBeUndefined();
  });
});

describe('GET /jobs/:id', () => {
  it('is 202 with the output so far while running, then 200 once complete', async () => {
    const gate = gated('transition');
    const job = await api.post(gate.script);
    const { response, job: running } = await waitForOutput(job.id, 'ready\n');
    expect(response.status).toBe(202);
    expect(response.headers.location).toBe(`/jobs/${job.id}`);
    expect(running.state).toBe('running');
    expect(running.start).not.toBe(GO_ZERO_TIME);
    expect(running.complete).toBe(GO_ZERO_TIME);
    expect(running.exit).toBeUndefined();

    await gate.release();
    const done = await api.complete(job.id);
    expect(done).toMatchObject({ state: 'complete', out: 'ready\ndone\n' });
    expect(done.complete).not.toBe(GO_ZERO_TIME);
    const final = await api.call(`/jobs/${job.id}`);
    expect(final.status).toBe(200);
    expect(final.headers.location).toBe(`/jobs/${job.id}`);
  });

  it("reports how a job ended as Go's exec error text", async () => {
    const scripts = {
      status: 'exit 3',
      killed: 'kill -KILL $$',
      terminated: 'kill -TERM $$',
      stderrOnly: 'echo oops >&2',
    };
    const jobs = await Promise.all(Object.values(scripts).map((script) => api.post(script)));
    const [status, killed, terminated, stderrOnly] = (await Promise.all(
      jobs.map((job) => api.complete(job.id)),
    )) as [Job, Job, Job, Job];
    expect(status.exit).toBe('exit status 3');
    expect(killed.exit).toBe('signal: killed');
    expect(terminated.exit).toBe('signal: terminated');
    expect(stderrOnly.exit).toBeUndefined();
    expect(stderrOnly.err).toBe('oops\n');
    expect(stderrOnly.out).toBeUndefined();
  });

  it('selects fields with ?fields=; id, state, href and exit are always there', async () => {
    const job = await api.post('echo out; echo err >&2; exit 1', '?fields=filename');
    // `exit` too if it already failed by the time the answer was made.
    expect(Object.keys(job).filter((key) => key !== 'exit')).toEqual([
      'id',
      'state',
      'filename',
      'href',
    ]);
    await api.complete(job.id);
    const keys = async (query: string) =>
      Object.keys((await api.call(`/jobs/${job.id}${query}`)).json().jobs[0]!);
    expect(await keys('')).toEqual([
      'id',
      'out',
      'err',
      'state',
      'exit',
      'start',
      'complete',
      'create',
      'filename',
      'href',
    ]);
    expect(await keys('?fields=out')).toEqual(['id', 'out', 'state', 'exit', 'href']);
    expect(await keys('?fields=create,filename')).toEqual([
      'id',
      'state',
      'exit',
      'create',
      'filename',
      'href',
    ]);
    expect(await keys('?fields=')).toEqual(['id', 'state', 'exit', 'href']);
    expect(await keys('?fields=bogus')).toEqual(['id', 'state', 'exit', 'href']);
    // The first fields= wins, as in the original.
    expect(await keys('?fields=err&fields=out')).toEqual(['id', 'err', 'state', 'exit', 'href']);
    const listed = (await api.call('/jobs?fields=out')).json().jobs;
    expect(listed.every((item: object) => !('create' in item) && !('filename' in item))).toBe(true);
  });

  it.each(['abc', '1.5', '0x1', '1e3', '99999999999999999999', '%20'])(
    'is 400 for the job number %j',
    async (text) => {
      const response = await api.call(`/jobs/${text}`);
      expect(response.status).toBe(400);
      const shown = decodeURIComponent(text);
      expect(response.json<object>()).toEqual({
        error: 'invalid job number',
        message: `what is ${JSON.stringify(shown)}?`,
      });
      expect((await api.call(`/jobs/${text}`, { method: 'DELETE' })).status).toBe(400);
    },
  );

  it('is 404 {"jobs":[]} for an unknown job; DELETE of one is 404 too', async () => {
    for (const id of ['999999', '-1', '9223372036854775807']) {
      const response = await api.call(`/jobs/${id}`);
      expect(response.status).toBe(404);
      expect(response.json()).toEqual({ jobs: [] });
      const deleted = await api.call(`/jobs/${id}`, { method: 'DELETE' });
      expect(deleted.status).toBe(404);
      expect(deleted.json<object>()).toEqual({ error: 'no such job' });
    }
  });

  it('reads a job number as Go\'s Atoi does: "+N" and "00N" are job N', async () => {
    const job = await api.post('true');
    expect((await api.call(`/jobs/+${job.id}?fields=`)).json().jobs[0]!.id).toBe(job.id);
    expect((await api.call(`/jobs/00${job.id}?fields=`)).json().jobs[0]!.id).toBe(job.id);
  });
});

describe('GET /jobs, DELETE /jobs, DELETE /jobs/:id', () => {
  it('filters by ?state= and deletes by state', async () => {
    const gate = gated('filter');
    const running = await api.post(gate.script);
    const finished = await api.post('echo finished');
    await api.complete(finished.id);
    await waitForOutput(running.id, 'ready\n');

    const ids = async (query: string) =>
      (await api.call(`/jobs${query}`)).json().jobs.map((job: { id: number }) => job.id);
    const all = await ids('');
    expect(all).toEqual([...all].sort((a, b) => a - b));
    expect(all).toEqual(expect.arrayContaining([running.id, finished.id]));
    expect(await ids('?state=running')).toEqual([running.id]);
    const complete = await ids('?state=complete');
    expect(complete).toContain(finished.id);
    expect(complete).not.toContain(running.id);
    expect(await ids('?state=bogus')).toEqual([]);
    expect(await ids('?state=new')).toEqual([]);

    const deleted = await api.call('/jobs?state=complete', { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    expect(deleted.body).toBe('');
    expect(await ids('?state=complete')).toEqual([]);
    expect(await ids('')).toEqual([running.id]);
    expect(existsSync(finished.filename!)).toBe(false);

    await gate.release();
    expect((await api.complete(running.id)).out).toBe('ready\ndone\n');
  });

  it('DELETE /jobs/:id kills a running job and forgets it: 204, then 404', async () => {
    const pidFile = path.join(work.dir, 'victim.pid');
    const job = await api.post(`echo $$ > '${pidFile}'\nsleep 30\n`);
    const pid = await waitFor('the pid file', async () => {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      return text.endsWith('\n') ? Number(text) : undefined;
    });
    expect(processExists(pid)).toBe(true);
    const started = Date.now();
    const response = await api.call(`/jobs/${job.id}`, { method: 'DELETE' });
    expect(response.status).toBe(204);
    expect(response.body).toBe('');
    // SIGTERM did it: well within the 2 s grace before SIGKILL.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(processExists(pid)).toBe(false);
    expect((await api.call(`/jobs/${job.id}`)).status).toBe(404);
    expect(existsSync(job.filename!)).toBe(false);
    expect((await api.call(`/jobs/${job.id}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('DELETE /jobs kills and removes every job', async () => {
    const gate = gated('everything');
    const running = await api.post(gate.script);
    await waitForOutput(running.id, 'ready\n');
    const response = await api.call('/jobs', { method: 'DELETE' });
    expect(response.status).toBe(204);
    expect((await api.call('/jobs')).json()).toEqual({ jobs: [] });
    expect((await api.call(`/jobs/${running.id}`)).status).toBe(404);
    // Ids are never reused.
    const next = await api.post('true');
    expect(next.id).toBe(running.id + 1);
  });
});

describe('bad input', () => {
  it('gets 404, 405 and 413 answers and leaves a running job alone', async () => {
    const gate = gated('bystander');
    const bystander = await api.post(gate.script);
    await waitForOutput(bystander.id, 'ready\n');
    const count = (await api.call('/jobs')).json().jobs.length;

    const put = await api.call('/jobs', { method: 'PUT', data: 'echo x' });
    expect(put.status).toBe(405);
    expect(put.headers.allow).toBe('DELETE, GET, HEAD, POST');
    expect(put.json<{ error: string }>().error).toBe('method not allowed');
    const patch = await api.call('/', { method: 'PATCH' });
    expect(patch.status).toBe(405);
    expect(patch.headers.allow).toBe('DELETE, GET, HEAD');
    const postOne = await api.call(`/jobs/${bystander.id}`, { method: 'POST', data: 'x' });
    expect(postOne.status).toBe(405);
    expect(postOne.headers.allow).toBe('DELETE, GET, HEAD');

    for (const route of ['/nope', `/jobs/${bystander.id}/out`, '/jobs/']) {
      const response = await api.call(route);
      expect([404, 400]).toContain(response.status);
    }
    const missing = await api.call('/nope');
    expect(missing.status).toBe(404);
    expect(missing.json<{ error: string }>().error).toBe('not found');

    const tooBig = await api.call('/jobs', { data: `echo ${'x'.repeat(BODY_LIMIT)}` });
    expect(tooBig.status).toBe(413);
    expect(tooBig.json<{ error: string }>().error).toBe('request body too large');
    const justRight = await api.post(`: ${'x'.repeat(BODY_LIMIT - 100)}\necho fits`);
    expect((await api.complete(justRight.id)).out).toBe('fits\n');

    expect((await api.call('/jobs')).json().jobs).toHaveLength(count + 1);
    expect((await api.call(`/jobs/${bystander.id}`)).status).toBe(202);
    await gate.release();
    expect((await api.complete(bystander.id)).out).toBe('ready\ndone\n');
  });
});
