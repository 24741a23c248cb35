import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { noopLogger } from '@overthere/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createSpawner, SpawnError } from '../src/spawner.js';
import { isAlive, waitForDeath } from './helpers.js';

/** Polls until `condition` holds (bounded). */
async function until(condition: () => boolean, deadlineMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/** True once `pid` handles SIGHUP, SIGINT and SIGTERM itself (its handlers are installed). */
function ignoresStopSignals(pid: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const ignored = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
  const mask = (1n << 0n) | (1n << 1n) | (1n << 14n); // signals 1, 2, 15
  return (ignored & mask) === mask;
}

const groups: number[] = [];

afterEach(() => {
  // Whatever a failed test left behind.
  for (const pgid of groups.splice(0)) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** A detached `sleep` with a child of its own: a process group of two. */
async function group(): Promise<{ pgid: number; child: number }> {
  const leader = spawn('sh', ['-c', 'sleep 1000 & echo $!; wait'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  leader.unref();
  groups.push(leader.pid!);
  const [line] = (await once(leader.stdout, 'data')) as [Buffer];
  leader.stdout.destroy();
  return { pgid: leader.pid!, child: Number(line.toString().trim()) };
}

describe('spawner as watchdog', () => {
  it('kills registered groups when its channel closes, and only those', async () => {
    const watchdog = createSpawner({ logger: noopLogger });
    const kept = await group();
    const released = await group();
    const killed = await group();
    watchdog.register(kept.pgid);
    watchdog.register(released.pgid);
    watchdog.register(killed.pgid);
    watchdog.unregister(kept.pgid);
    watchdog.unregister(released.pgid);
    const watchdogPid = watchdog.pid!;
    expect(await until(() => ignoresStopSignals(watchdogPid))).toBe(true);
    await watchdog.close();
    expect(await waitForDeath([killed.pgid, killed.child, watchdogPid])).toEqual([]);
    expect([kept.pgid, kept.child, released.pgid, released.child].every(isAlive)).toBe(true);
  });

  it('ignores SIGTERM, SIGINT and SIGHUP', async () => {
    const watchdog = createSpawner({ logger: noopLogger });
    const target = await group();
    watchdog.register(target.pgid);
    const pid = watchdog.pid!;
    expect(await until(() => ignoresStopSignals(pid))).toBe(true);
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.kill(pid, signal);
    // Still there to do its job: closing it kills the group.
    await watchdog.close();
    expect(await waitForDeath([target.pgid, target.child])).toEqual([]);
  });

  it('is replaced, with everything registered, when it is killed', async () => {
    const watchdog = createSpawner({ logger: noopLogger, restartAfterMs: 0 });
    const first = await group();
    const second = await group();
    watchdog.register(first.pgid);
    const original = watchdog.pid!;
    process.kill(original, 'SIGKILL');
    expect(await until(() => watchdog.pid !== undefined && watchdog.pid !== original)).toBe(true);
    watchdog.register(second.pgid);
    await watchdog.close();
    expect(await waitForDeath([first.pgid, first.child, second.pgid, second.child])).toEqual([]);
  });
});

describe('spawner', () => {
  const frozenEnv = Object.freeze({ PATH: process.env.PATH ?? '/usr/bin:/bin', GREETING: 'hi' });

  async function collect(stream: NodeJS.ReadableStream): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString();
  }

  it('hands back the pipes of a child in its own session, and its exit', async () => {
    const spawner = createSpawner({ logger: noopLogger });
    try {
      const child = await spawner.spawn({
        file: 'sh',
        args: ['-c', 'echo "$GREETING $(cat)"; ps -o sid= -p $$; echo oops >&2; exit 3'],
        cwd: '/',
        env: frozenEnv,
        credentials: undefined,
        stdin: true,
      });
      child.stdin!.end('there');
      const [stdout, stderr, exit] = await Promise.all([
        collect(child.stdout),
        collect(child.stderr),
        child.exit,
      ]);
      const [greeting, sid] = stdout.trim().split('\n');
      expect(greeting).toBe('hi there');
      expect(Number(sid)).toBe(child.pid);
      expect(stderr).toBe('oops\n');
      expect(exit).toEqual({ code: 3, signal: null });
    } finally {
      await spawner.close();
    }
  });

  it('hands back the stdin of tasks that end at once', async () => {
    const spawner = createSpawner({ logger: noopLogger });
    try {
      const children = await Promise.all(
        Array.from({ length: 20 }, () =>
          spawner.spawn({
            file: 'true',
            args: [],
            cwd: '/',
            env: frozenEnv,
            credentials: undefined,
            stdin: true,
          }),
        ),
      );
      for (const child of children) expect(child.stdin).toBeDefined();
      const exits = await Promise.all(children.map((child) => child.exit));
      expect(exits).toEqual(children.map(() => ({ code: 0, signal: null })));
    } finally {
      await spawner.close();
    }
  });

  it('sends an environment that is not frozen with the request', async () => {
    const spawner = createSpawner({ logger: noopLogger });
    try {
      for (const value of ['one', 'two']) {
        const child = await spawner.spawn({
          file: 'sh',
          args: ['-c', 'echo $VALUE'],
          cwd: '/',
          env: { ...frozenEnv, VALUE: value },
          credentials: undefined,
          stdin: false,
        });
        expect(child.stdin).toBeUndefined();
        expect((await collect(child.stdout)).trim()).toBe(value);
        expect(await child.exit).toEqual({ code: 0, signal: null });
      }
    } finally {
      await spawner.close();
    }
  });

  it('rejects with the OS error when the program cannot start', async () => {
    const spawner = createSpawner({ logger: noopLogger });
    try {
      const attempt = spawner.spawn({
        file: '/nonexistent/program',
        args: [],
        cwd: '/',
        env: frozenEnv,
        credentials: undefined,
        stdin: false,
      });
      await expect(attempt).rejects.toBeInstanceOf(SpawnError);
      await expect(attempt).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await spawner.close();
    }
  });

  it('kills its children and reports them ended when it is killed', async () => {
    const spawner = createSpawner({ logger: noopLogger });
    try {
      const child = await spawner.spawn({
        file: 'sleep',
        args: ['1000'],
        cwd: '/',
        env: frozenEnv,
        credentials: undefined,
        stdin: false,
      });
      process.kill(spawner.pid!, 'SIGKILL');
      expect(await child.exit).toEqual({ code: null, signal: null });
      expect(await waitForDeath([child.pid])).toEqual([]);
      // The next spawn gets a new spawner.
      const next = await spawner.spawn({
        file: 'true',
        args: [],
        cwd: '/',
        env: frozenEnv,
        credentials: undefined,
        stdin: false,
      });
      expect(await next.exit).toEqual({ code: 0, signal: null });
    } finally {
      await spawner.close();
    }
  });
});
