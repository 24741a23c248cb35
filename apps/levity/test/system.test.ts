/**
 * The original levity's system tests, with our levityd and our levity CLI as
 * real processes: the happy path (a loop printing `ping N`), an unknown id,
 * an unreachable server; plus a request without a task id, which crashed the
 * original and must be an error here while the server keeps serving.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { handle, levity, useLevityd, UUID, waitFor, waitForState } from './helpers.js';

const fixture = useLevityd();

describe.concurrent('levity against levityd', () => {
  it('runs the happy path: start, Running, signal, Finished within 5 s, logs with ping 0', async () => {
    const started = await levity([
      '-a',
      fixture.daemon.address,
      'start',
      '--',
      'sh',
      '-c',
      'i=0; while true; do echo ping $i; i=`expr $i + 1`; sleep 1; done',
    ]);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    expect(started.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    const id = started.stdout.trim();
    expect(id).toMatch(UUID);

    const running = await levity(['-a', fixture.daemon.address, 'query', id]);
    expect(running).toMatchObject({ code: 0, stdout: 'Running\n', stderr: '' });

    // The loop has printed its first line before it is asked to quit.
    await waitFor('ping 0', async () => {
      const logs = await fixture.client.fetchLogs(handle(id));
      return logs.stdout?.toString().includes('ping 0') ? true : undefined;
    });
    const signalled = await levity(['-a', fixture.daemon.address, 'signal', id]);
    expect(signalled).toMatchObject({ code: 0, stdout: '', stderr: '' });

    const t0 = Date.now();
    await waitForState(fixture.client, id, ['Finished'], 5_000);
    expect(Date.now() - t0).toBeLessThan(5_000);

    // SIGTERM ended sh: Finished, and -1 for a death by signal, as the original.
    const finished = await levity(['-a', fixture.daemon.address, 'query', id]);
    expect(finished).toMatchObject({ code: 0, stdout: 'Finished\n-1\n', stderr: '' });

    const logs = await levity(['-a', fixture.daemon.address, 'logs', id]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('ping 0');
  });

  it('exits 1 with one line on stderr for an unknown task id', async () => {
    const results = await Promise.all(
      ['query', 'signal'].map((command) =>
        levity(['-a', fixture.daemon.address, command, 'no-such-task']),
      ),
    );
    for (const result of results) {
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        'levity: GRPC request failed: rpc error: code = Unknown desc = No such task: no-such-task\n',
      );
    }
    // Every call says so (the CLI's logs is in follow.test.ts and cli.test.ts).
    for (const call of [
      fixture.client.queryTask,
      fixture.client.signalTask,
      fixture.client.fetchLogs,
    ]) {
      await expect(call(handle('no-such-task'))).rejects.toMatchObject({
        code: grpc.status.UNKNOWN,
        details: 'No such task: no-such-task',
      });
    }
  });

  it('exits 1 with one line on stderr when no server listens', async () => {
    // A port that was just free: bind it, note it, let it go.
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const result = await levity(['-a', `127.0.0.1:${port}`, 'start', 'ls']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /^levity: GRPC request failed: rpc error: code = Unavailable desc = .*ECONNREFUSED.*\n$/,
    );
    expect(result.stderr.split('\n')).toHaveLength(2);
  });

  it('answers a request without a task id with an error, and keeps serving', async () => {
    for (const call of [
      fixture.client.queryTask,
      fixture.client.signalTask,
      fixture.client.fetchLogs,
    ]) {
      for (const request of [{}, { task_id: {} }, { task_id: { id: '' } }]) {
        await expect(call(request)).rejects.toMatchObject({
          code: grpc.status.UNKNOWN,
          details: 'missing task id',
        });
      }
    }
    await expect(fixture.client.followLogs({})).rejects.toMatchObject({
      code: grpc.status.UNKNOWN,
    });
    await expect(fixture.client.startTask({})).rejects.toMatchObject({
      code: grpc.status.UNKNOWN,
      details: 'exec: "": executable file not found in $PATH',
    });
    const { task_id } = await fixture.client.startTask({ binary: 'true' });
    const status = await waitForState(fixture.client, task_id!.id!, ['Finished']);
    expect(status).toEqual({ status_code: 'Finished', exit_code: 0 });
    expect(fixture.daemon.process.exitCode).toBeNull();
  });
});
