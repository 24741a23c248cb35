import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { noopLogger } from '@overthere/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createWatchdog } from '../src/watchdog.js';
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

/** True once `pid` ignores SIGHUP, SIGINT and SIGTERM (its trap ran). */
function ignoresStopSignals(pid: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const ignored = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
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

describe('watchdog', () => {
  it('kills registered groups when its stdin closes, and only those', async () => {
    const watchdog = createWatchdog({ logger: noopLogger });
    const kept = await group();
    const released = await group();
    const killed = await group();
    watchdog.register(kept.pgid);
    watchdog.register(released.pgid);
    watchdog.register(killed.pgid);
    watchdog.unregister(kept.pgid);
    watchdog.unregister(released.pgid);
    const watchdogPid = watchdog.pid!;
    await watchdog.close();
    expect(await waitForDeath([killed.pgid, killed.child, watchdogPid])).toEqual([]);
    expect([kept.pgid, kept.child, released.pgid, released.child].every(isAlive)).toBe(true);
  });

  it('ignores SIGTERM, SIGINT and SIGHUP', async () => {
    const watchdog = createWatchdog({ logger: noopLogger });
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
    const watchdog = createWatchdog({ logger: noopLogger, restartAfterMs: 0 });
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
