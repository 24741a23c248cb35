import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  OverthereError,
  createFileTaskStore,
  createSupervisor,
  type Supervisor,
} from '@overthere/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalRuntime } from '../src/index.js';

const isAlive = (pid: number) => existsSync(`/proc/${pid}`) && !isZombie(pid);

function isZombie(pid: number): boolean {
  try {
    // Field 3 of /proc/PID/stat is the state; Z = zombie (dead, not yet reaped).
    return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return condition();
}

describe('supervisor with real local processes', () => {
  const runtime = createLocalRuntime();
  let supervisor: Supervisor;

  beforeEach(async () => {
    supervisor = await createSupervisor({ runtime });
  });

  afterEach(async () => {
    await supervisor.close();
  });

  it('SIGKILLs a task that traps SIGTERM after graceMs and reports it killed', async () => {
    const task = await supervisor.create({
      script: "trap 'echo ignored' TERM; echo ready; while :; do sleep 0.05; done",
    });
    for await (const event of supervisor.output(task.id).read({ follow: true }))
      if (event.type === 'frame') break;
    const started = Date.now();
    const done = await supervisor.stop(task.id, { graceMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(done.exit).toEqual({ code: null, signal: 'SIGKILL', reason: 'killed' });
    expect((await supervisor.output(task.id).text('stdout')).toString()).toContain('ignored');
  });

  it('reports a task that exits on SIGTERM as signalled', async () => {
    const task = await supervisor.create({ command: ['sleep', '1000'] });
    const done = await supervisor.stop(task.id, { graceMs: 5000 });
    expect(done.exit).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });
  });

  it('kills a task at timeoutMs with reason timeout', async () => {
    const task = await supervisor.create({ command: ['sleep', '1000'], timeoutMs: 200 });
    const done = await supervisor.wait(task.id);
    expect(done.exit?.reason).toBe('timeout');
    expect(done.exit?.signal).toBe('SIGTERM');
  });

  it("kills a task's grandchildren with it", async () => {
    const task = await supervisor.create({ script: 'sh -c "sleep 1000 & echo \\$!; wait" & wait' });
    let grandchild = 0;
    for await (const event of supervisor.output(task.id).read({ follow: true })) {
      if (event.type === 'frame') {
        grandchild = Number(event.data.toString().trim());
        break;
      }
    }
    expect(isAlive(grandchild)).toBe(true);
    await supervisor.stop(task.id, { graceMs: 2000 });
    expect(await waitUntil(() => !isAlive(grandchild), 2000)).toBe(true);
  });

  it('rejects bad input with the OS reason and leaves nothing registered', async () => {
    const failures = [
      { spec: { command: [] }, reason: /empty command/ },
      { spec: { command: ['/no/such/binary'] }, reason: /ENOENT/ },
      { spec: { command: ['true'], cwd: '/no/such/dir' }, reason: /\/no\/such\/dir.*ENOENT/ },
    ];
    for (const { spec, reason } of failures) {
      const error = await supervisor.create(spec).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(OverthereError.hasCode(error, 'SPAWN_FAILED')).toBe(true);
      expect((error as Error).message).toMatch(reason);
    }
    expect(supervisor.list()).toEqual([]);
    const task = await supervisor.create({ command: ['sleep', '1000'] });
    await expect(supervisor.signal(task.id, 'SIGNOPE')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(supervisor.signal('no-such-task', 'SIGTERM')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    expect(() => supervisor.get('no-such-task')).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND' }) as Error,
    );
    expect(supervisor.list().map((item) => item.state)).toEqual(['running']);
  });

  it('captures 1 GiB of output durably with agent RSS growth under 64 MiB', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'overthere-gib-'));
    const durable = await createSupervisor({ runtime, store: await createFileTaskStore({ dir }) });
    try {
      global.gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 25);
      const task = await durable.create({
        command: ['head', '-c', String(1024 ** 3), '/dev/zero'],
      });
      const done = await durable.wait(task.id);
      clearInterval(sampler);
      expect(done.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
      expect(durable.output(task.id).bytes('stdout')).toBe(1024 ** 3);
      expect(peak - before).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await durable.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops a restarting task for good when it is removed', async () => {
    const task = await supervisor.create({
      command: ['false'],
      restart: { mode: 'always', initialDelayMs: 5, maxDelayMs: 20 },
    });
    await waitUntil(() => supervisor.get(task.id).restarts >= 3, 5000);
    await supervisor.remove(task.id);
    expect(supervisor.list()).toEqual([]);
  });
});

describe('agent restart on the same data dir', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'overthere-agent-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps finished tasks with full output, marks running one-shots lost and restarts services', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/supervisor-agent.ts', import.meta.url));
    const agent = spawn(process.execPath, ['--import', 'tsx', fixture, dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: agent.stdout });
    const report = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      agent.once('exit', (code) => reject(new Error(`agent exited early with ${code}`)));
    });
    const { pids } = JSON.parse(report) as { pids: number[] };
    const exited = new Promise((resolve) => agent.once('exit', resolve));
    agent.kill('SIGKILL');
    await exited;
    // The agent's watchdog reaps its children.
    expect(await waitUntil(() => pids.every((pid) => !isAlive(pid)), 5000)).toBe(true);

    const runtime = createLocalRuntime();
    const supervisor = await createSupervisor({
      runtime,
      store: await createFileTaskStore({ dir }),
    });
    try {
      const finished = supervisor.get('finished');
      expect(finished.state).toBe('exited');
      expect(finished.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
      expect((await supervisor.output('finished').text('stdout')).toString()).toBe('all of it\n');
      expect((await supervisor.output('finished').text('stderr')).toString()).toBe('err');
      expect(supervisor.get('oneshot').state).toBe('lost');
      const service = supervisor.get('service');
      expect(service.state).toBe('running');
      expect(service.restarts).toBe(1);
      const log = supervisor.output('service');
      expect(await waitUntil(() => log.bytes('stdout') >= 'started\n'.length * 2, 5000)).toBe(true);
      expect((await log.text('stdout')).toString()).toBe('started\nstarted\n');
      // The journal's last line for it (the file store's documented layout).
      await supervisor.close();
      const lines = (await readFile(join(dir, 'tasks.jsonl'), 'utf8')).trimEnd().split('\n');
      const record = lines
        .map((line) => JSON.parse(line) as { id: string; state: string })
        .filter((entry) => entry.id === 'oneshot')
        .at(-1);
      expect(record?.state).toBe('lost');
    } finally {
      await supervisor.close();
      await runtime.dispose();
    }
  });
});
