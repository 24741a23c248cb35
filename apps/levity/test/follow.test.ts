/**
 * `levity logs -f`: the task's output as it is written, until the task ends
 * (the FollowLogs stream, an addition the original clients never call).
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { handle, levity, REPO_ROOT, useLevityd, waitFor, waitForState } from './helpers.js';

const fixture = useLevityd({ tempPrefix: 'levity-follow-', args: () => ['--grace', '1s'] });

describe.concurrent('logs -f', () => {
  it('delivers output while the task runs, and exits 0 once it has ended', async () => {
    const gate = path.join(fixture.temp.dir, 'gate');
    const id = await fixture.start([
      'sh',
      '-c',
      `echo first; echo warn >&2; while [ ! -e ${gate} ]; do sleep 0.05; done; echo second; exit 7`,
    ]);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'apps/levity/src/levity-main.ts',
        '-a',
        fixture.daemon.address,
        'logs',
        '-f',
        id,
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));

    // Live: the first line arrives while the task is still waiting at the gate.
    await waitFor(
      'the first line',
      () => (stdout === 'first\n' && stderr === 'warn\n' ? true : undefined),
      10_000,
    );
    expect(await fixture.client.queryTask(handle(id))).toEqual({ status_code: 'Running' });
    expect(child.exitCode).toBeNull();

    await writeFile(gate, '');
    expect(await exited).toBe(0);
    expect(stdout).toBe('first\nsecond\n');
    expect(stderr).toBe('warn\n');
    expect(await fixture.client.queryTask(handle(id))).toEqual({
      status_code: 'Finished',
      exit_code: 7,
    });
  });

  it('prints everything of a task that has ended, then exits', async () => {
    const id = await fixture.start([
      'sh',
      '-c',
      'for i in 1 2 3; do echo line $i; done; echo oops >&2',
    ]);
    await waitForState(fixture.client, id, ['Finished']);
    const result = await levity(['-a', fixture.daemon.address, 'logs', '-f', id]);
    expect(result).toMatchObject({ code: 0, stdout: 'line 1\nline 2\nline 3\n', stderr: 'oops\n' });

    const json = await levity(['-a', fixture.daemon.address, '--json', 'logs', '--follow', id]);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { stream: string; data: string });
    expect(
      lines
        .filter((line) => line.stream === 'stdout')
        .map((line) => line.data)
        .join(''),
    ).toBe('line 1\nline 2\nline 3\n');
    expect(
      lines
        .filter((line) => line.stream === 'stderr')
        .map((line) => line.data)
        .join(''),
    ).toBe('oops\n');
  });

  it('ends the stream when a signalled task ends', async () => {
    const id = await fixture.start(['sh', '-c', 'echo Ready; exec sleep 60']);
    await waitFor('Ready', async () =>
      (await fixture.client.fetchLogs(handle(id))).stdout?.toString() === 'Ready\n'
        ? true
        : undefined,
    );
    const following = fixture.client.followLogs(handle(id));
    await fixture.client.signalTask(handle(id));
    const chunks = await following;
    expect(Buffer.concat(chunks.map((chunk) => chunk.stdout ?? Buffer.alloc(0))).toString()).toBe(
      'Ready\n',
    );
  });

  it('fails with one line for an unknown task', async () => {
    const result = await levity(['-a', fixture.daemon.address, 'logs', '-f', 'nope']);
    expect(result).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'levity: GRPC request failed: rpc error: code = Unknown desc = No such task: nope\n',
    });
    await expect(fixture.client.followLogs(handle('nope'))).rejects.toMatchObject({
      code: grpc.status.UNKNOWN,
      details: 'No such task: nope',
    });
  });
});
