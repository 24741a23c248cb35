/**
 * The original's task tests, through the gRPC service, driven by a client
 * generated from the .proto (no code of the app): exit codes, SIGTERM
 * handling and the 5 s escalation to BrutallyKilled, a program that leaves a
 * file behind, a missing binary, environment and working directory.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import {
  handle,
  levity,
  PROTO_FILE,
  protoClient,
  startLevityd,
  useLevityd,
  waitFor,
  waitForState,
} from './helpers.js';

// The default grace period (5 s): the BrutallyKilled test is about it.
const fixture = useLevityd({
  tempPrefix: 'levity-tasks-',
  args: (dir) => ['--data-dir', path.join(dir!, 'data')],
});

async function start(binary: string, args: string[] = [], extra: Record<string, unknown> = {}) {
  const response = await fixture.client.startTask({ binary, args, ...extra });
  const id = response.task_id?.id;
  expect(id).toBeTypeOf('string');
  return id!;
}

async function stdoutOf(id: string): Promise<string> {
  return ((await fixture.client.fetchLogs(handle(id))).stdout ?? Buffer.alloc(0)).toString();
}

describe.concurrent('tasks', () => {
  it('ends up BrutallyKilled when it ignores SIGTERM for the 5 s grace period', async () => {
    const id = await start('sh', ['-c', "trap '' TERM; echo Ready; while :; do sleep 1; done"]);
    await waitFor('Ready', async () => ((await stdoutOf(id)).includes('Ready') ? true : undefined));
    const t0 = Date.now();
    await fixture.client.signalTask(handle(id));
    expect(await fixture.client.queryTask(handle(id))).toEqual({ status_code: 'Signalled' });
    const end = await waitForState(fixture.client, id, ['BrutallyKilled', 'Finished'], 8_000);
    const elapsed = Date.now() - t0;
    // No exit code: the original's fixture.client only reads it for Finished.
    expect(end).toEqual({ status_code: 'BrutallyKilled' });
    expect(elapsed).toBeGreaterThanOrEqual(4_900);
    expect(elapsed).toBeLessThan(7_000);
  });

  it('is Finished with the exit code of a program that exits 2', async () => {
    const id = await start('sh', ['-c', 'exit 2']);
    expect(await waitForState(fixture.client, id, ['Finished'])).toEqual({
      status_code: 'Finished',
      exit_code: 2,
    });
  });

  it('is Finished with exit code 0 (sent, not left out) for a program that succeeds', async () => {
    const id = await start('true');
    await waitForState(fixture.client, id, ['Finished']);
    // Decode the raw response: field 2 must be on the wire even though it is 0.
    const definition = protoLoader.loadSync(PROTO_FILE, { keepCase: true });
    const method = (definition['levity.TaskManager'] as protoLoader.ServiceDefinition).QueryTask!;
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const rawClient = new grpc.Client(fixture.daemon.address, grpc.credentials.createInsecure());
      rawClient.makeUnaryRequest(
        method.path,
        (request: Buffer) => request,
        (response: Buffer) => response,
        method.requestSerialize(handle(id)),
        (error, response) => {
          rawClient.close();
          if (error) reject(error);
          else resolve(response!);
        },
      );
    });
    // status_code = 3 (Finished), exit_code = 0.
    expect(raw.toString('hex')).toBe('08031000');
  });

  it('is Finished after SIGTERM when the program quits on it', async () => {
    const id = await start('sh', [
      '-c',
      "trap 'echo bye; exit 0' TERM; echo Ready; while :; do sleep 0.1; done",
    ]);
    await waitFor('Ready', async () => ((await stdoutOf(id)).includes('Ready') ? true : undefined));
    await fixture.client.signalTask(handle(id));
    expect(await waitForState(fixture.client, id, ['Finished', 'BrutallyKilled'], 4_000)).toEqual({
      status_code: 'Finished',
      exit_code: 0,
    });
    expect(await stdoutOf(id)).toBe('Ready\nbye\n');
    // Signalling a task that has ended is not an error (as the original).
    await expect(fixture.client.signalTask(handle(id))).resolves.toEqual({});
  });

  it('runs touch, which creates its file', async () => {
    const file = path.join(fixture.temp.dir, 'touched');
    const id = await start('touch', [file]);
    expect(await waitForState(fixture.client, id, ['Finished'])).toEqual({
      status_code: 'Finished',
      exit_code: 0,
    });
    expect(existsSync(file)).toBe(true);
  });

  it('fails to start a missing binary, and registers nothing', async () => {
    // A server of its own, so that no other test's task is on its disk.
    const ownData = path.join(fixture.temp.dir, 'missing-binary-data');
    const own = await startLevityd(['--data-dir', ownData]);
    const ownClient = protoClient(own.address);
    try {
      await expect(ownClient.startTask({ binary: 'no-such-binary' })).rejects.toMatchObject({
        code: grpc.status.UNKNOWN,
        details: 'exec: "no-such-binary": executable file not found in $PATH',
      });
      await expect(ownClient.startTask({ binary: '/no/such/binary' })).rejects.toMatchObject({
        code: grpc.status.UNKNOWN,
        details: expect.stringContaining('ENOENT') as string,
      });
      await expect(
        ownClient.startTask({
          binary: 'true',
          working_dir: path.join(fixture.temp.dir, 'no-such-dir'),
        }),
      ).rejects.toMatchObject({
        code: grpc.status.UNKNOWN,
        details: expect.stringContaining('no-such-dir') as string,
      });
      const cli = await levity(['-a', own.address, 'start', 'no-such-binary']);
      expect(cli).toMatchObject({
        code: 1,
        stdout: '',
        stderr:
          'levity: GRPC request failed: rpc error: code = Unknown desc = exec: "no-such-binary": executable file not found in $PATH\n',
      });
      expect(await readdir(path.join(ownData, 'tasks'))).toEqual([]);
    } finally {
      ownClient.close();
      await own.stop();
    }
  });

  it('gives the task exactly the environment sent, and nothing of the server’s', async () => {
    const id = await start('sh', ['-c', 'echo The value of FOO is $FOO'], {
      environment: { FOO: 'BAR' },
    });
    await waitForState(fixture.client, id, ['Finished']);
    expect(await stdoutOf(id)).toContain('FOO is BAR');

    // `env` prints its whole environment: only what was sent.
    const bare = await start('env', [], { environment: { A: '1', B: 'two words' } });
    await waitForState(fixture.client, bare, ['Finished']);
    expect((await stdoutOf(bare)).split('\n').filter(Boolean).sort()).toEqual([
      'A=1',
      'B=two words',
    ]);

    const none = await start('env');
    await waitForState(fixture.client, none, ['Finished']);
    expect(await stdoutOf(none)).toBe('');
  });

  it('runs in the working dir given, else in the server’s', async () => {
    const root = await start('pwd', [], { working_dir: '/' });
    await waitForState(fixture.client, root, ['Finished']);
    expect(await stdoutOf(root)).toBe('/\n');

    const dir = await start('pwd', [], { working_dir: fixture.temp.dir });
    await waitForState(fixture.client, dir, ['Finished']);
    expect(await stdoutOf(dir)).toBe(`${await realpath(fixture.temp.dir)}\n`);

    // The test helpers start levityd in the repository root.
    const own = await start('pwd', [], { working_dir: '' });
    await waitForState(fixture.client, own, ['Finished']);
    expect(await realpath((await stdoutOf(own)).trim())).toBe(
      await realpath(path.resolve(__dirname, '../../..')),
    );
  });

  it('keeps stdout and stderr apart, and passes arguments as they are', async () => {
    const id = await start('sh', [
      '-c',
      'printf "%s|" "$@"; echo oops >&2',
      'sh',
      'a b',
      '',
      '$HOME',
      '*',
    ]);
    await waitForState(fixture.client, id, ['Finished']);
    const logs = await fixture.client.fetchLogs(handle(id));
    expect(logs.stdout?.toString()).toBe('a b||$HOME|*|');
    expect(logs.stderr?.toString()).toBe('oops\n');
  });

  it('stops the whole process group on signal, not just the main process', async () => {
    const pidFile = path.join(fixture.temp.dir, 'grandchild.pid');
    const id = await start('sh', ['-c', `sleep 300 & echo $! > ${pidFile}; echo Ready; wait`]);
    await waitFor('Ready', async () => ((await stdoutOf(id)).includes('Ready') ? true : undefined));
    const grandchild = Number((await readFile(pidFile, 'utf8')).trim());
    await fixture.client.signalTask(handle(id));
    await waitForState(fixture.client, id, ['Finished', 'BrutallyKilled']);
    const alive = () => {
      try {
        process.kill(grandchild, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor('the grandchild to be gone', () => (alive() ? undefined : true), 3_000);
  });

  it('reports Running with no exit code while the task runs', async () => {
    const id = await start('sleep', ['30']);
    expect(await fixture.client.queryTask(handle(id))).toEqual({ status_code: 'Running' });
    await fixture.client.signalTask(handle(id));
    expect(await waitForState(fixture.client, id, ['Finished'])).toEqual({
      status_code: 'Finished',
      exit_code: -1,
    });
  });
});
