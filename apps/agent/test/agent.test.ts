/**
 * The README's main job, end to end: a real `overthere-agent` process, driven
 * with curl, stopped with SIGTERM, restarted on the same data dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

interface Agent {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function startAgent(args: string[]): Promise<Agent> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/agent/src/main.ts', ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stderr });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /listening on (https?:\/\/[^\s,]+)/.exec(line);
      if (match?.[1]) resolve(match[1]);
    });
    void exited.then((code) => reject(new Error(`agent exited with ${code}`)));
  });
  return { url, child, exited };
}

const curl = async (...args: string[]) =>
  (await run('curl', ['-sS', '--fail-with-body', ...args])).stdout;

describe('overthere-agent', () => {
  let dataDir: string;
  const token = 'agent-test-token';

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'overthere-agent-'));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs a command for curl, streams its output, and keeps it across a restart', async () => {
    const agent = await startAgent(['--port', '0', '--data-dir', dataDir, '--token', token]);
    const auth = ['-H', `Authorization: Bearer ${token}`];
    const created = JSON.parse(
      await curl(
        ...auth,
        '-H',
        'Content-Type: application/json',
        '--data',
        '{"command":["sh","-c","echo hello; echo oops >&2; exit 3"]}',
        `${agent.url}/v1/tasks`,
      ),
    ) as { id: string };
    const streamed = await curl(
      ...auth,
      `${agent.url}/v1/tasks/${created.id}/output?follow=1&stream=stdout`,
    );
    expect(streamed).toBe('hello\n');
    const done = JSON.parse(await curl(...auth, `${agent.url}/v1/tasks/${created.id}/wait`)) as {
      state: string;
      exit: unknown;
    };
    expect(done.state).toBe('exited');
    expect(done.exit).toEqual({ code: 3, signal: null, reason: 'exited' });
    await expect(run('curl', ['-sS', '--fail', `${agent.url}/v1/tasks`])).rejects.toThrow(/401/);

    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);

    const again = await startAgent(['--port', '0', '--data-dir', dataDir, '--token', token]);
    try {
      const stderr = await curl(
        ...auth,
        `${again.url}/v1/tasks/${created.id}/output?stream=stderr`,
      );
      expect(stderr).toBe('oops\n');
    } finally {
      again.child.kill('SIGTERM');
      expect(await again.exited).toBe(0);
    }
  });

  it('refuses to listen beyond loopback without a token', async () => {
    const failed = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'apps/agent/src/main.ts',
        '--host',
        '0.0.0.0',
        '--port',
        '0',
        '--data-dir',
        dataDir,
      ],
      { cwd: REPO_ROOT },
    ).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without auth/);
  });
});
