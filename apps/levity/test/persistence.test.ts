/**
 * Task records that survive a levityd restart (`--data-dir`), the data dir
 * lock, and forgetting finished tasks after `--task-ttl`.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  handle,
  levity,
  protoClient,
  runLevityd,
  startLevityd,
  stopAllDaemons,
  tempDir,
  waitFor,
  waitForState,
  type ProtoClient,
} from './helpers.js';

let temp: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  temp = await tempDir('levity-persist-');
});

afterAll(async () => {
  await stopAllDaemons();
  await temp?.remove();
});

async function start(client: ProtoClient, args: string[]): Promise<string> {
  const response = await client.startTask({ binary: args[0], args: args.slice(1) });
  return response.task_id!.id!;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.concurrent('restarts', () => {
  it('keeps finished tasks with their state and logs; a running task is lost, never re-run; a clean stop ends tasks', async () => {
    const dataDir = path.join(temp.dir, 'data');
    const pidFile = path.join(temp.dir, 'long.pid');
    const runs = path.join(temp.dir, 'runs');

    const first = await startLevityd(['--data-dir', dataDir, '--grace', '1s']);
    let client = protoClient(first.address);
    const finished = await start(client, ['sh', '-c', 'echo to out; echo to err >&2; exit 4']);
    const killed = await start(client, [
      'sh',
      '-c',
      "trap '' TERM; echo Ready; while :; do sleep 1; done",
    ]);
    const long = await start(client, [
      'sh',
      '-c',
      `echo run >> ${runs}; echo $$ > ${pidFile}; exec sleep 300`,
    ]);
    await waitForState(client, finished, ['Finished']);
    await waitFor('Ready', async () =>
      (await client.fetchLogs(handle(killed))).stdout?.toString() === 'Ready\n' ? true : undefined,
    );
    await client.signalTask(handle(killed));
    await waitForState(client, killed, ['BrutallyKilled'], 5_000);
    const longPid = await waitFor('the long task’s pid', async () => {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      return text.endsWith('\n') ? Number(text) : undefined;
    });
    client.close();
    // QueryTask answers from memory; the record reaches the disk just after.
    // Wait for it (the file store's documented layout) before killing levityd.
    for (const id of [finished, killed]) {
      await waitFor(`the final record of ${id}`, async () => {
        const text = await readFile(path.join(dataDir, 'tasks.jsonl'), 'utf8').catch(() => '');
        const last = text
          .split('\n')
          .flatMap((line) => {
            try {
              return [JSON.parse(line) as { id?: string; state?: string }];
            } catch {
              return []; // a line being written right now
            }
          })
          .filter((entry) => entry.id === id)
          .at(-1);
        return last?.state === 'exited' ? true : undefined;
      });
    }

    // Killed outright: no chance to write anything more.
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    // The runtime's watchdog takes the running task with it.
    await waitFor(
      'the long task to die with levityd',
      () => (alive(longPid) ? undefined : true),
      5_000,
    );

    const second = await startLevityd(['--data-dir', dataDir, '--grace', '1s']);
    client = protoClient(second.address);
    let stopped = '';
    try {
      expect(await client.queryTask(handle(finished))).toEqual({
        status_code: 'Finished',
        exit_code: 4,
      });
      const logs = await client.fetchLogs(handle(finished));
      expect(logs.stdout?.toString()).toBe('to out\n');
      expect(logs.stderr?.toString()).toBe('to err\n');
      expect(await client.queryTask(handle(killed))).toEqual({ status_code: 'BrutallyKilled' });
      expect(await client.queryTask(handle(long))).toEqual({ status_code: 'InternalServerError' });
      expect(await readFile(runs, 'utf8')).toBe('run\n');

      // And through the CLI, as a user would see it.
      expect(await levity(['-a', second.address, 'query', finished])).toMatchObject({
        code: 0,
        stdout: 'Finished\n4\n',
      });
      expect(await levity(['-a', second.address, 'logs', finished])).toMatchObject({
        code: 0,
        stdout: 'to out\n',
        stderr: 'to err\n',
      });

      // A clean stop (SIGTERM) stops the tasks that run, which then ended by a signal.
      stopped = await start(client, ['sleep', '300']);
      expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      client.close();
    }
    const third = await startLevityd(['--data-dir', dataDir]);
    client = protoClient(third.address);
    try {
      const all = await Promise.all(
        [finished, killed, long, stopped].map((id) => client.queryTask(handle(id))),
      );
      expect(all).toEqual([
        { status_code: 'Finished', exit_code: 4 },
        { status_code: 'BrutallyKilled' },
        { status_code: 'InternalServerError' },
        { status_code: 'Finished', exit_code: -1 },
      ]);
    } finally {
      client.close();
      await third.stop();
    }
  });

  it('forgets finished tasks after --task-ttl; refuses a data dir another levityd uses', async () => {
    const dataDir = path.join(temp.dir, 'ttl');
    const daemon = await startLevityd(['--task-ttl', '300ms', '--data-dir', dataDir]);
    const client = protoClient(daemon.address);
    try {
      const second = await runLevityd(['127.0.0.1:0', '--data-dir', dataDir]);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(
        new RegExp(`data dir .*ttl is in use by levityd pid ${daemon.process.pid}\\n$`),
      );

      const id = await start(client, ['true']);
      await waitForState(client, id, ['Finished']);
      await waitFor(
        'the task to be forgotten',
        () =>
          client.queryTask(handle(id)).then(
            () => undefined,
            (error: { details?: string }) => error.details,
          ),
        5_000,
      ).then((details) => expect(details).toBe(`No such task: ${id}`));
    } finally {
      client.close();
      await daemon.stop();
    }
  });
});
