/**
 * jobrunner as its clients see it: a real `jobrunner` process on 127.0.0.1
 * driven by `curl`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attach,
  client,
  curl,
  runJobrunner,
  sha256File,
  startServer,
  UUID,
  waitFor,
  type Server,
} from './helpers.js';

interface CommandJson {
  CommandLine: string;
  WorkingDirectory: string | null;
  Container: { Image: string } | null;
  State: string;
  ExitCode: number | null;
  Signal: string | null;
  Error: string | null;
  StartedAt: string | null;
  EndedAt: string | null;
}

interface JobJson {
  ID: string;
  State: string;
  ExitCode: number | null;
  CreatedAt: string;
  EndedAt: string | null;
  Commands: CommandJson[];
}

let server: Server;
let api: ReturnType<typeof client>;
let dir: string;

async function submit(body: unknown): Promise<string> {
  const response = await api.post(body);
  expect(response.status, response.text).toBe(200);
  return (response.json() as { ID: string }).ID;
}

async function job(id: string): Promise<JobJson> {
  const response = await api.get(`/${id}`);
  expect(response.status, response.text).toBe(200);
  return response.json() as JobJson;
}

function ended(id: string): Promise<JobJson> {
  return waitFor(`job ${id} to end`, async () => {
    const current = await job(id);
    return current.State !== 'running' && current;
  });
}

async function runningIds(): Promise<string[]> {
  const response = await api.get('/');
  expect(response.status).toBe(200);
  return (response.json() as { IDs: string[] }).IDs;
}

/** A shell loop that waits (without a fixed sleep in the test) until the test creates `file`. */
const waitForFile = (file: string) => `until [ -e ${file} ]; do sleep 0.02; done`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobrunner-test-'));
  // No Docker here (an unreachable socket): Container commands are refused (containers.test.ts has Docker).
  server = await startServer({
    JOBRUNNER_KILL_GRACE_MS: '400',
    DOCKER_HOST: 'unix:///nonexistent/overthere-no-docker.sock',
  });
  api = client(server.url);
});

afterAll(async () => {
  const exit = await server?.stop('SIGTERM');
  expect(exit).toEqual({ code: 0, signal: null });
  await rm(dir, { recursive: true, force: true });
});

describe('GET / and POST /', () => {
  it('POST returns 200 {"ID":<uuid>} and GET / lists the job only while it runs', async () => {
    const gate = join(dir, 'list-gate');
    const response = await api.post({ CommandLine: waitForFile(gate) });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ ID: expect.stringMatching(UUID) });
    const { ID } = response.json() as { ID: string };

    const listing = await api.get('/');
    expect(Object.keys(listing.json() as object)).toEqual(['IDs']);
    expect(await runningIds()).toContain(ID);

    await writeFile(gate, '');
    expect((await ended(ID)).State).toBe('succeeded');
    expect(await runningIds()).not.toContain(ID);
  });

  it('runs CommandLine with bash -c: bash syntax works and $0 is bash', async () => {
    const id = await submit({ CommandLine: 'declare -a xs=(a b c); echo "${xs[1]} ${#xs[@]} $0"' });
    const output = await attach(`${server.url}/${id}/attach`).done;
    expect(output.body.toString()).toBe('b 3 bash\n');
  });

  it('adds Environment to the agent environment', async () => {
    const id = await submit({
      CommandLine: 'echo "$FOO|$EMPTY|$SPACED"; command -v ls >/dev/null && echo "agent PATH kept"',
      Environment: { FOO: 'foo', EMPTY: '', SPACED: 'a  b' },
    });
    const output = await attach(`${server.url}/${id}/attach`).done;
    expect(output.body.toString()).toBe('foo||a  b\nagent PATH kept\n');
  });

  it('accepts application/json, Go-style case-insensitive names and null fields', async () => {
    const response = await api.post(
      { commandline: 'echo "ci $X"', environment: null, Environment: undefined },
      ['-H', 'Content-Type: application/json'],
    );
    expect(response.status, response.text).toBe(200);
    const { ID } = response.json() as { ID: string };
    expect((await attach(`${server.url}/${ID}/attach`).done).body.toString()).toBe('ci \n');
  });

  it('runs the command in WorkingDirectory', async () => {
    const id = await submit({ CommandLine: 'pwd', WorkingDirectory: dir });
    expect((await attach(`${server.url}/${id}/attach`).done).body.toString()).toBe(`${dir}\n`);
  });

  it('answers 422 SPAWN_FAILED naming a WorkingDirectory that does not exist, and keeps no job', async () => {
    const before = await runningIds();
    const response = await api.post({ CommandLine: 'pwd', WorkingDirectory: join(dir, 'missing') });
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({
      code: 'SPAWN_FAILED',
      message: expect.stringContaining(join(dir, 'missing')),
    });
    expect(await runningIds()).toEqual(before);
  });

  it('refuses Container with 501 UNSUPPORTED saying no Docker runtime is configured', async () => {
    const before = await runningIds();
    const single = await api.post({ CommandLine: 'echo hi', Container: { Image: 'debian' } });
    expect(single.status).toBe(501);
    expect(single.json()).toEqual({
      code: 'UNSUPPORTED',
      message: expect.stringMatching(/^Container: .*containers.*no Docker runtime is configured/),
    });
    const mixed = await api.post({
      Commands: [
        { CommandLine: 'echo host' },
        { CommandLine: 'echo box', Container: { Image: 'debian' } },
      ],
    });
    expect(mixed.status).toBe(501);
    expect((mixed.json() as { message: string }).message).toMatch(/^Commands\[1\]\.Container: /);
    // Nothing of a refused job ran, not even its host command.
    expect(await runningIds()).toEqual(before);
  });
});

describe('GET /:ID', () => {
  it('returns the job: ID, State, ExitCode, times and per-command status', async () => {
    const id = await submit({ CommandLine: 'exit 7', WorkingDirectory: dir });
    const done = await ended(id);
    expect(done).toEqual({
      ID: id,
      State: 'failed',
      ExitCode: 7,
      CreatedAt: expect.any(String),
      EndedAt: expect.any(String),
      Commands: [
        {
          CommandLine: 'exit 7',
          WorkingDirectory: dir,
          Container: null,
          State: 'failed',
          ExitCode: 7,
          Signal: null,
          Error: null,
          StartedAt: expect.any(String),
          EndedAt: expect.any(String),
        },
      ],
    });
    expect(Date.parse(done.EndedAt!)).toBeGreaterThanOrEqual(Date.parse(done.CreatedAt));
  });

  it('does not echo Environment values (they may be secrets)', async () => {
    const id = await submit({ CommandLine: 'true', Environment: { SECRET: 'hunter2' } });
    const response = await api.get(`/${id}`);
    expect(response.text).not.toContain('hunter2');
  });
});

describe('GET /:ID/attach', () => {
  it('replays the whole output of a short job that already finished, then ends', async () => {
    const id = await submit({ CommandLine: 'echo hello; echo world >&2' });
    expect((await ended(id)).State).toBe('succeeded');
    const first = await attach(`${server.url}/${id}/attach`).done;
    expect(first).toEqual({ exitCode: 0, body: Buffer.from('hello\nworld\n') });
    // And again: output is not consumed by reading it.
    expect((await attach(`${server.url}/${id}/attach`).done).body.toString()).toBe(
      'hello\nworld\n',
    );
  });

  it('waits for output that does not exist yet, and flushes each chunk as it is written', async () => {
    const gate1 = join(dir, 'flush-gate-1');
    const gate2 = join(dir, 'flush-gate-2');
    const id = await submit({
      CommandLine: `${waitForFile(gate1)}; echo first; ${waitForFile(gate2)}; echo second >&2`,
    });
    const stream = attach(`${server.url}/${id}/attach`);
    await writeFile(gate1, '');
    await waitFor('the first line to arrive', () => stream.output().toString() === 'first\n');
    // It arrived while the job was still running, not buffered until the end.
    expect((await job(id)).State).toBe('running');
    expect(stream.child.exitCode).toBeNull();
    await writeFile(gate2, '');
    expect(await stream.done).toEqual({ exitCode: 0, body: Buffer.from('first\nsecond\n') });
  });

  it('merges stdout and stderr in exactly the order they were written', async () => {
    const id = await submit({
      CommandLine: 'for i in $(seq 1 200); do echo out$i; echo err$i >&2; done; printf tail >&2',
    });
    const expected =
      Array.from({ length: 200 }, (_, index) => `out${index + 1}\nerr${index + 1}\n`).join('') +
      'tail';
    expect((await attach(`${server.url}/${id}/attach`).done).body.toString()).toBe(expected);
  });

  it('streams 10 MiB intact and in order to concurrent attachers and to a late one', async () => {
    const gate = join(dir, 'big-gate');
    const file = join(dir, 'big.bin');
    const id = await submit({
      CommandLine: `${waitForFile(gate)}; head -c 10485760 /dev/urandom | tee ${file}`,
    });
    const outputs = [join(dir, 'big-1.bin'), join(dir, 'big-2.bin')];
    const headers = outputs.map((output) => `${output}.headers`);
    const live = outputs.map((output, index) =>
      spawn('curl', ['-sN', '-D', headers[index]!, '-o', output, `${server.url}/${id}/attach`]),
    );
    const liveExits = live.map(
      (child) => new Promise<number | null>((resolve) => child.once('close', resolve)),
    );
    // Both are attached (headers received) before the job writes a byte.
    for (const header of headers) {
      await waitFor('attach headers', async () =>
        (await readFile(header, 'utf8').catch(() => '')).includes('\r\n\r\n'),
      );
    }
    expect((await readFile(headers[0]!, 'utf8')).toLowerCase()).toContain(
      'transfer-encoding: chunked',
    );
    await writeFile(gate, '');
    expect(await Promise.all(liveExits)).toEqual([0, 0]);
    expect((await ended(id)).State).toBe('succeeded');

    const late = join(dir, 'big-late.bin');
    const lateResult = await curl(['-N', '-o', late, `${server.url}/${id}/attach`]);
    expect(lateResult.exitCode).toBe(0);

    const expected = await sha256File(file);
    expect((await stat(file)).size).toBe(10 * 1024 * 1024);
    for (const output of [...outputs, late]) {
      expect((await stat(output)).size).toBe(10 * 1024 * 1024);
      expect(await sha256File(output)).toBe(expected);
    }
  });

  it('answers 404 for an unknown job', async () => {
    const response = await api.get('/00000000-0000-4000-8000-000000000000/attach');
    expect(response.status).toBe(404);
    expect(response.json()).toEqual({
      code: 'NOT_FOUND',
      message: expect.stringContaining('no such job'),
    });
  });
});

describe('DELETE /:ID', () => {
  it('kills a running job (its process group), keeps it as killed, and ends its attachers cleanly', async () => {
    const id = await submit({ CommandLine: 'echo started; sleep 30 & wait' });
    const stream = attach(`${server.url}/${id}/attach`);
    await waitFor('the job to start', () => stream.output().toString() === 'started\n');

    const response = await api.delete(`/${id}`);
    expect(response.status).toBe(200);
    expect(response.text).toBe('');
    // DELETE answers once the job has ended.
    expect(await runningIds()).not.toContain(id);
    const killed = await job(id);
    expect(killed.State).toBe('killed');
    expect(killed.ExitCode).toBeNull();
    expect(killed.Commands[0]).toMatchObject({ State: 'killed', Signal: 'SIGTERM' });
    expect(await stream.done).toEqual({ exitCode: 0, body: Buffer.from('started\n') });
  });

  it('escalates to SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const id = await submit({ CommandLine: "trap '' TERM; echo ready; sleep 30" });
    const stream = attach(`${server.url}/${id}/attach`);
    await waitFor('the trap to be set', () => stream.output().toString() === 'ready\n');
    const started = Date.now();
    expect((await api.delete(`/${id}`)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350); // JOBRUNNER_KILL_GRACE_MS=400
    expect((await job(id)).Commands[0]).toMatchObject({ State: 'killed', Signal: 'SIGKILL' });
    expect((await stream.done).exitCode).toBe(0);
  });

  it('forgets a finished job, and answers 200 for unknown ids', async () => {
    const id = await submit({ CommandLine: 'true' });
    await ended(id);
    expect((await api.delete(`/${id}`)).status).toBe(200);
    expect((await api.get(`/${id}`)).status).toBe(404);
    expect((await api.delete(`/${id}`)).status).toBe(200);
    expect((await api.delete('/not-a-job')).status).toBe(200);
  });
});

describe('Commands: a job as a sequence', () => {
  it('runs commands in order with job-wide defaults, and attach streams them all', async () => {
    const id = await submit({
      Environment: { A: 'a', B: 'b' },
      WorkingDirectory: dir,
      Commands: [
        { CommandLine: 'echo "1 $A$B $(pwd)"' },
        { CommandLine: 'echo "2 $A$B $(pwd)" >&2', Environment: { B: 'B' }, WorkingDirectory: '/' },
        { CommandLine: 'echo 3' },
      ],
    });
    const output = await attach(`${server.url}/${id}/attach`).done;
    expect(output).toEqual({ exitCode: 0, body: Buffer.from(`1 ab ${dir}\n2 aB /\n3\n`) });
    const done = await job(id);
    expect(done.State).toBe('succeeded');
    expect(done.ExitCode).toBe(0);
    expect(done.Commands.map((command) => command.State)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
    ]);
  });

  it('stops at the first failure and reports it', async () => {
    const id = await submit({
      Commands: [
        { CommandLine: 'echo one' },
        { CommandLine: 'echo two >&2; exit 3' },
        { CommandLine: 'echo three' },
      ],
    });
    expect((await attach(`${server.url}/${id}/attach`).done).body.toString()).toBe('one\ntwo\n');
    const done = await job(id);
    expect(done).toMatchObject({ State: 'failed', ExitCode: 3 });
    expect(done.Commands.map((command) => [command.State, command.ExitCode])).toEqual([
      ['succeeded', 0],
      ['failed', 3],
      ['skipped', null],
    ]);
  });

  it('fails the job when a later command cannot start', async () => {
    const id = await submit({
      Commands: [
        { CommandLine: 'echo one' },
        { CommandLine: 'pwd', WorkingDirectory: join(dir, 'nowhere') },
        { CommandLine: 'echo three' },
      ],
    });
    const done = await ended(id);
    expect(done.State).toBe('failed');
    expect(done.Commands[1]).toMatchObject({
      State: 'failed',
      ExitCode: null,
      Error: expect.stringContaining(join(dir, 'nowhere')),
    });
    expect(done.Commands[2]!.State).toBe('skipped');
    expect((await attach(`${server.url}/${id}/attach`).done).body.toString()).toBe('one\n');
  });

  it('DELETE kills the running command and skips the rest', async () => {
    const id = await submit({
      Commands: [
        { CommandLine: 'echo one' },
        { CommandLine: 'echo two; sleep 30' },
        { CommandLine: 'echo three' },
      ],
    });
    const stream = attach(`${server.url}/${id}/attach`);
    await waitFor('the second command', () => stream.output().toString() === 'one\ntwo\n');
    expect((await api.delete(`/${id}`)).status).toBe(200);
    const done = await job(id);
    expect(done.State).toBe('killed');
    expect(done.Commands.map((command) => command.State)).toEqual([
      'succeeded',
      'killed',
      'skipped',
    ]);
    expect(await stream.done).toEqual({ exitCode: 0, body: Buffer.from('one\ntwo\n') });
  });
});

describe('bad input', () => {
  const cases: [string, string, RegExp][] = [
    ['malformed JSON', '{"CommandLine": "echo', /not valid JSON/],
    ['an empty body', '', /body is empty/],
    ['a JSON array', '["echo hi"]', /must be a JSON object/],
    ['a JSON string', '"echo hi"', /must be a JSON object/],
    ['no CommandLine', '{"Environment":{}}', /CommandLine is required/],
    ['a numeric CommandLine', '{"CommandLine":5}', /CommandLine must be a string/],
    ['an empty CommandLine', '{"CommandLine":"  "}', /CommandLine must not be empty/],
    [
      'a list Environment',
      '{"CommandLine":"true","Environment":["A=1"]}',
      /Environment must be an object/,
    ],
    [
      'a numeric variable',
      '{"CommandLine":"true","Environment":{"A":1}}',
      /Environment\.A must be a string/,
    ],
    ['a variable name with =', '{"CommandLine":"true","Environment":{"A=B":"x"}}', /contains '='/],
    [
      'a numeric WorkingDirectory',
      '{"CommandLine":"true","WorkingDirectory":3}',
      /WorkingDirectory must be a string/,
    ],
    ['an unknown field', '{"CommandLine":"true","Cmd":"x"}', /unknown field "Cmd"/],
    ['a field given twice', '{"CommandLine":"true","commandLine":"x"}', /more than once/],
    [
      'CommandLine and Commands',
      '{"CommandLine":"true","Commands":[{"CommandLine":"x"}]}',
      /not both/,
    ],
    ['Commands as an object', '{"Commands":{"CommandLine":"x"}}', /Commands must be a list/],
    ['empty Commands', '{"Commands":[]}', /Commands must not be empty/],
    ['a number in Commands', '{"Commands":[5]}', /Commands\[0\] must be a JSON object/],
    [
      'a command without CommandLine',
      '{"Commands":[{"CommandLine":"x"},{}]}',
      /Commands\[1\]\.CommandLine is required/,
    ],
    [
      'an unknown command field',
      '{"Commands":[{"CommandLine":"x","Dir":"/"}]}',
      /unknown field "Dir" in Commands\[0\]/,
    ],
    [
      'a Container without Image',
      '{"CommandLine":"x","Container":{}}',
      /Container\.Image must be a non-empty string/,
    ],
    ['a numeric Image', '{"CommandLine":"x","Container":{"Image":5}}', /Container\.Image/],
    [
      'an unknown Container field',
      '{"CommandLine":"x","Container":{"Image":"a","Privileged":true}}',
      /unknown field "Privileged"/,
    ],
  ];

  it.each(cases)('POST / with %s → 400 INVALID_ARGUMENT', async (_name, body, message) => {
    const response = await api.post(body);
    expect(response.status, response.text).toBe(400);
    expect(response.json()).toEqual({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(message),
    });
  });

  it('answers 413 for a body over 1 MiB, 404 for unknown jobs and routes, and keeps running jobs untouched', async () => {
    const gate = join(dir, 'survivor-gate');
    const survivor = await submit({ CommandLine: `echo alive; ${waitForFile(gate)}; echo done` });

    const big = await api.post(JSON.stringify({ CommandLine: `echo ${'x'.repeat(1024 * 1024)}` }));
    expect(big.status).toBe(413);
    expect(big.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });

    const tooLongLine = await api.post({ CommandLine: `echo ${'x'.repeat(200 * 1024)}` });
    expect(tooLongLine.status).toBe(400);
    expect(tooLongLine.json()).toMatchObject({
      message: expect.stringMatching(/limit for one argument/),
    });

    for (const path of [
      '/unknown-id',
      '/00000000-0000-4000-8000-000000000000',
      '/unknown-id/attach',
    ]) {
      const response = await api.get(path);
      expect(response.status, path).toBe(404);
      expect(response.json()).toMatchObject({ code: 'NOT_FOUND' });
    }
    // An id longer than any job id can be (over 256 characters) is refused by the router.
    expect((await api.get(`/${'a'.repeat(300)}`)).status).toBe(414);
    expect((await api.get('/a/b/c')).status).toBe(404);
    expect((await curl(['-X', 'PUT', `${server.url}/`])).status).toBe(404);

    expect(await runningIds()).toContain(survivor);
    const stream = attach(`${server.url}/${survivor}/attach`);
    await writeFile(gate, '');
    expect(await stream.done).toEqual({ exitCode: 0, body: Buffer.from('alive\ndone\n') });
  });
});

describe('the jobrunner command', () => {
  it('--help and --version print and exit 0; an unknown argument exits 2', async () => {
    const [help, version, unknown] = await Promise.all([
      runJobrunner(['--help']),
      runJobrunner(['--version']),
      runJobrunner(['--frobnicate']),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('JOBRUNNER_PORT');
    expect(help.stdout).toContain('JOBRUNNER_TOKEN');
    expect(version).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^jobrunner \d+\.\d+\.\d+\n$/),
    });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--frobnicate');
  });

  it('refuses a non-loopback JOBRUNNER_HOSTNAME without JOBRUNNER_TOKEN, and a bad port', async () => {
    const [open, port] = await Promise.all([
      runJobrunner([], { JOBRUNNER_HOSTNAME: '0.0.0.0' }),
      runJobrunner([], { JOBRUNNER_PORT: 'eighty' }),
    ]);
    expect(open.code).toBe(1);
    expect(open.stderr).toMatch(/refusing to listen on 0\.0\.0\.0.*JOBRUNNER_TOKEN/);
    expect(port.code).toBe(1);
    expect(port.stderr).toContain('JOBRUNNER_PORT');
  });
});

describe('a server with JOBRUNNER_JOB_TTL_MS=300, stopped by SIGINT', () => {
  let own: Server;
  let ownApi: ReturnType<typeof client>;

  beforeAll(async () => {
    own = await startServer({ JOBRUNNER_JOB_TTL_MS: '300' });
    ownApi = client(own.url);
  });

  afterAll(() => {
    if (own.child.exitCode === null) own.child.kill('SIGKILL');
  });

  it('forgets a finished job and its output once the TTL has passed', async () => {
    const response = await ownApi.post({ CommandLine: 'echo short-lived' });
    const { ID } = response.json() as { ID: string };
    const finished = await waitFor('the job to end', async () => {
      const current = await ownApi.get(`/${ID}`);
      return current.status === 200 && (current.json() as JobJson).State === 'succeeded';
    });
    expect(finished).toBe(true);
    await waitFor(
      'the job to be forgotten',
      async () => (await ownApi.get(`/${ID}`)).status === 404,
    );
    expect((await ownApi.get(`/${ID}/attach`)).status).toBe(404);
  });

  it('on SIGINT kills running jobs, ends attachers cleanly and exits 0', async () => {
    const pidFile = join(dir, 'shutdown.pid');
    const response = await ownApi.post({ CommandLine: `echo $$ > ${pidFile}; echo up; sleep 30` });
    const { ID } = response.json() as { ID: string };
    const stream = attach(`${own.url}/${ID}/attach`);
    await waitFor('the job to start', () => stream.output().toString() === 'up\n');
    const pid = Number(await readFile(pidFile, 'utf8'));

    expect(await own.stop('SIGINT')).toEqual({ code: 0, signal: null });
    expect(await stream.done).toEqual({ exitCode: 0, body: Buffer.from('up\n') });
    expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
  });
});

describe('JOBRUNNER_TOKEN', () => {
  const token = 'test-token-5b1f0c2e';
  let secured: Server;

  beforeAll(async () => {
    secured = await startServer({ JOBRUNNER_TOKEN: token });
  });

  afterAll(async () => {
    expect(await secured?.stop()).toEqual({ code: 0, signal: null });
  });

  it('listens on every interface when a token is set', () => {
    expect(secured.stderr()).toMatch(
      /listening on http:\/\/0\.0\.0\.0:\d+ \(bearer token required\)/,
    );
  });

  it('answers 401 on every route without the right bearer token', async () => {
    const anonymous = client(secured.url);
    const wrong = client(secured.url, ['Authorization: Bearer not-the-token']);
    const basic = client(secured.url, [
      `Authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}`,
    ]);
    for (const api of [anonymous, wrong, basic]) {
      for (const response of [
        await api.get('/'),
        await api.post({ CommandLine: 'echo hi' }),
        await api.get('/some-id'),
        await api.get('/some-id/attach'),
        await api.delete('/some-id'),
      ]) {
        expect(response.status).toBe(401);
        expect(response.json()).toEqual({ code: 'UNAUTHENTICATED', message: expect.any(String) });
      }
    }
    const headers = await curl(['-D', '-', '-o', '/dev/null', `${secured.url}/`]);
    expect(headers.text.toLowerCase()).toContain('www-authenticate: bearer');
  });

  it('serves every route with the token, and jobs do not see it', async () => {
    const header = `Authorization: Bearer ${token}`;
    const api = client(secured.url, [header]);
    const created = await api.post({ CommandLine: 'echo "token=${JOBRUNNER_TOKEN:-unset}"' });
    expect(created.status).toBe(200);
    const { ID } = created.json() as { ID: string };
    const output = await attach(`${secured.url}/${ID}/attach`, [header]).done;
    expect(output).toEqual({ exitCode: 0, body: Buffer.from('token=unset\n') });
    expect((await api.get('/')).status).toBe(200);
    expect((await api.get(`/${ID}`)).status).toBe(200);
    expect((await api.delete(`/${ID}`)).status).toBe(200);
  });
});
