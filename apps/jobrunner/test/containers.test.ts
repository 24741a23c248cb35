/**
 * jobrunner's `Container` commands with a real dockerd: the command runs in a
 * container of the named image, mixes with host commands in one job, is
 * killed by DELETE, and leaves no container behind.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attach, client, startServer, waitFor, type Server } from './helpers.js';

const run = promisify(execFile);
const BASE_IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';
/** The test image has no bash; jobrunner runs `bash -c`. This one adds a `bash` that is busybox sh. */
const IMAGE = 'overthere-test:jobrunner-bash';
const CONTAINER_TEST_MS = 30_000;

let server: Server;
let api: ReturnType<typeof client>;
let buildDir: string;

interface JobJson {
  ID: string;
  State: string;
  ExitCode: number | null;
  Commands: Array<{ State: string; ExitCode: number | null; Signal: string | null }>;
}

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

/** Ids of the containers this jobrunner process owns (by the runtime's labels). */
async function ownContainers(): Promise<string[]> {
  const { stdout } = await run('docker', [
    'ps',
    '-aq',
    '--filter',
    `label=org.overthere.agent=jobrunner-${server.child.pid}`,
    '--filter',
    'label=org.overthere.kind=task',
  ]);
  return stdout.split('\n').filter((line) => line.length > 0);
}

beforeAll(async () => {
  buildDir = await mkdtemp(join(tmpdir(), 'jobrunner-image-'));
  await writeFile(join(buildDir, 'bash'), '#!/bin/sh\nexec /bin/sh "$@"\n');
  await chmod(join(buildDir, 'bash'), 0o755);
  await writeFile(join(buildDir, 'Dockerfile'), `FROM ${BASE_IMAGE}\nCOPY bash /usr/bin/bash\n`);
  await run('docker', ['build', '-q', '-t', IMAGE, buildDir]);
  server = await startServer({ JOBRUNNER_KILL_GRACE_MS: '400' });
  api = client(server.url);
}, 60_000);

afterAll(async () => {
  const exit = await server?.stop('SIGTERM');
  expect(exit).toEqual({ code: 0, signal: null });
  // Stopping jobrunner removed every container it made.
  expect(await ownContainers()).toEqual([]);
  await rm(buildDir, { recursive: true, force: true });
});

describe.concurrent('Container commands', () => {
  it(
    'run in a container of the image: output streamed, exit code reported',
    async () => {
      const id = await submit({
        CommandLine:
          'echo in-container; cat /etc/overthere-test >/dev/null && echo image-file; echo err >&2; exit 3',
        Container: { Image: IMAGE },
      });
      const output = await attach(`${server.url}/${id}/attach`).done;
      expect(output.body.toString()).toBe('in-container\nimage-file\nerr\n');
      const done = await waitFor('the job to end', async () => {
        const current = await job(id);
        return current.State !== 'running' && current;
      });
      expect(done).toMatchObject({ State: 'failed', ExitCode: 3 });
    },
    CONTAINER_TEST_MS,
  );

  it(
    'mix with host commands in one job, in order',
    async () => {
      const id = await submit({
        Commands: [
          { CommandLine: 'echo on-the-host' },
          { CommandLine: 'echo "in the box $GREETING"', Container: { Image: IMAGE } },
          { CommandLine: 'echo back-on-the-host' },
        ],
        Environment: { GREETING: 'hello' },
      });
      const output = await attach(`${server.url}/${id}/attach`).done;
      expect(output.body.toString()).toBe('on-the-host\nin the box hello\nback-on-the-host\n');
      expect((await job(id)).State).toBe('succeeded');
    },
    CONTAINER_TEST_MS,
  );

  it(
    'are killed by DELETE',
    async () => {
      const id = await submit({
        CommandLine: 'echo started; exec sleep 300',
        Container: { Image: IMAGE },
      });
      const live = attach(`${server.url}/${id}/attach`);
      await waitFor('the command to start', () => live.output().toString().includes('started'));
      const response = await api.delete(`/${id}`);
      expect(response.status).toBe(200);
      expect(await job(id)).toMatchObject({
        State: 'killed',
        Commands: [{ State: 'killed', Signal: 'SIGTERM' }],
      });
      expect((await live.done).body.toString()).toBe('started\n');
    },
    CONTAINER_TEST_MS,
  );

  it(
    'name a missing image in a 422 SPAWN_FAILED, and no job is kept',
    async () => {
      const response = await api.post({
        CommandLine: 'echo never',
        Container: { Image: 'overthere-test:no-such-image' },
      });
      expect(response.status).toBe(422);
      expect(response.json()).toEqual({
        code: 'SPAWN_FAILED',
        message: expect.stringContaining('overthere-test:no-such-image'),
      });
    },
    CONTAINER_TEST_MS,
  );
});
