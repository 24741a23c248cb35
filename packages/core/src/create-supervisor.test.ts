import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSupervisor } from './create-supervisor.js';
import { OverthereError } from './errors.js';
import { createMemoryRuntime, type MemoryProgram } from './memory-runtime.js';
import type { Runtime } from './runtime.js';
import type { Supervisor } from './supervisor.js';
import type { TaskInfo } from './task.js';
import { createFileTaskStore } from './task-store.js';

/** Runs until signalled; exits 0 on SIGTERM. */
const serve: MemoryProgram = (context) =>
  new Promise((resolve) => {
    context.onSignal('SIGTERM', () => resolve(0));
    context.stdout.write('ready\n');
  });

/** Resolves once the task has written its first frame (its signal handlers are in place). */
async function firstOutput(supervisor: Supervisor, id: string): Promise<void> {
  for await (const event of supervisor.output(id).read({ follow: true })) {
    if (event.type === 'frame') return;
  }
}

/** Exits with the code given as its first argument, after printing a line. */
const crash: MemoryProgram = (context) => {
  context.stdout.write(`run ${context.argv.slice(1).join(' ')}\n`);
  return Promise.resolve(Number(context.argv[1] ?? 1));
};

function rejectsWithCode(promise: Promise<unknown>, code: string) {
  return expect(promise).rejects.toSatisfy((error: unknown) =>
    OverthereError.hasCode(error, code as never),
  );
}

function throwsWithCode(action: () => unknown, code: string) {
  try {
    action();
  } catch (error) {
    expect(OverthereError.is(error) && error.code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** Collects each `backoff` transition's delay until `count` were seen. */
function backoffDelays(supervisor: Supervisor, id: string, count: number): Promise<number[]> {
  const delays: number[] = [];
  return new Promise((resolve) => {
    supervisor.on('task-state', (task: TaskInfo) => {
      if (task.id !== id || task.state !== 'backoff' || !task.nextRestartAt) return;
      delays.push(Date.parse(task.nextRestartAt) - Date.now());
      if (delays.length === count) resolve(delays);
    });
  });
}

describe('supervisor', () => {
  let runtime: Runtime;
  let supervisor: Supervisor;

  beforeEach(async () => {
    runtime = createMemoryRuntime({ programs: { serve, crash } });
    supervisor = await createSupervisor({ runtime });
  });

  afterEach(async () => {
    await supervisor.close();
    await runtime.dispose();
  });

  it('runs a task to completion and keeps its output and exit status', async () => {
    const created = await supervisor.create({ command: ['crash', '3'], labels: { team: 'a' } });
    expect(created.state).toBe('running');
    const done = await supervisor.wait(created.id);
    expect(done.state).toBe('exited');
    expect(done.exit).toEqual({ code: 3, signal: null, reason: 'exited' });
    expect(done.endedAt).toBeDefined();
    expect((await supervisor.output(created.id).text('stdout')).toString()).toBe('run 3\n');
    expect(supervisor.list({ labels: { team: 'a' } }).map((task) => task.id)).toEqual([created.id]);
    expect(supervisor.list({ labels: { team: 'b' } })).toEqual([]);
    expect(supervisor.list({ state: 'running' })).toEqual([]);
  });

  it('emits task-start, task-output, task-exit and task-end in order', async () => {
    const seen: string[] = [];
    supervisor.on('task-start', () => seen.push('start'));
    supervisor.on('task-output', (_id, frame) =>
      seen.push(`output:${frame.data.toString().trim()}`),
    );
    supervisor.on('task-exit', () => seen.push('exit'));
    supervisor.on('task-end', () => seen.push('end'));
    const task = await supervisor.create({ command: ['crash', '0'] });
    await supervisor.wait(task.id);
    expect(seen).toEqual(['start', 'output:run 0', 'exit', 'end']);
  });

  it('rejects bad input with clear codes and registers nothing', async () => {
    await rejectsWithCode(supervisor.create({ command: [] }), 'SPAWN_FAILED');
    await rejectsWithCode(supervisor.create({ command: ['no-such-program'] }), 'SPAWN_FAILED');
    await rejectsWithCode(supervisor.create({}), 'INVALID_ARGUMENT');
    await rejectsWithCode(
      supervisor.create({ command: ['serve'], kill: { signal: 'SIGNOPE' } }),
      'INVALID_ARGUMENT',
    );
    await rejectsWithCode(
      supervisor.create({ command: ['serve'] }, { id: '../escape' }),
      'INVALID_ARGUMENT',
    );
    await rejectsWithCode(
      supervisor.create({ command: ['serve'] }, { runtime: 'nope' }),
      'INVALID_ARGUMENT',
    );
    expect(supervisor.list()).toEqual([]);
    throwsWithCode(() => supervisor.get('missing'), 'NOT_FOUND');
    await rejectsWithCode(supervisor.stop('missing'), 'NOT_FOUND');
    const task = await supervisor.create({ command: ['serve'] });
    await rejectsWithCode(supervisor.signal(task.id, 'SIGBOGUS'), 'INVALID_ARGUMENT');
    await rejectsWithCode(supervisor.create({ command: ['serve'] }, { id: task.id }), 'CONFLICT');
    expect(supervisor.list()).toHaveLength(1);
  });

  it('reports a task that exits on the stop signal as signalled or exited, and never restarts it', async () => {
    const task = await supervisor.create({ command: ['serve'], restart: { mode: 'always' } });
    await firstOutput(supervisor, task.id);
    const stopped = await supervisor.stop(task.id, { graceMs: 5000 });
    expect(stopped.state).toBe('exited');
    expect(stopped.exit?.reason).toBe('exited');
    expect(stopped.stopRequested).toBe(true);
    expect(stopped.restarts).toBe(0);
  });

  it('escalates to SIGKILL after graceMs and reports the task killed', async () => {
    const task = await supervisor.create({ command: ['trap-term', '60'] });
    await firstOutput(supervisor, task.id);
    const started = Date.now();
    const stopped = await supervisor.stop(task.id, { graceMs: 150 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(stopped.exit).toEqual({ code: null, signal: 'SIGKILL', reason: 'killed' });
  });

  it('kills a task that runs past timeoutMs with reason timeout', async () => {
    const task = await supervisor.create({
      command: ['sleep', '60'],
      timeoutMs: 50,
      kill: { graceMs: 100 },
    });
    const done = await supervisor.wait(task.id);
    expect(done.exit?.reason).toBe('timeout');
    expect(done.state).toBe('exited');
  });

  it('restarts with growing, capped backoff and a visible next restart time', async () => {
    const restart = {
      mode: 'always' as const,
      initialDelayMs: 20,
      factor: 2,
      maxDelayMs: 80,
      resetAfterMs: 60_000,
    };
    const task = await supervisor.create({ command: ['crash', '1'], restart }, { id: 'crasher' });
    const delays = await backoffDelays(supervisor, task.id, 5);
    // 20, 40, 80, 80, 80 (minus the few ms between scheduling and the event)
    const rounded = delays.map((delay) => Math.round(delay / 20) * 20);
    expect(rounded).toEqual([20, 40, 80, 80, 80]);
    const info = supervisor.get(task.id);
    expect(info.restarts).toBeGreaterThanOrEqual(4);
    const stopped = await supervisor.stop(task.id);
    expect(stopped.state).toBe('exited');
    const restartsAtStop = stopped.restarts;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(supervisor.get(task.id).restarts).toBe(restartsAtStop);
    expect(supervisor.get(task.id).state).toBe('exited');
  });

  it('resets the backoff after a stable run', async () => {
    let runs = 0;
    const flaky: MemoryProgram = () => {
      runs += 1;
      // Runs 1-3 crash at once; run 4 is stable (longer than resetAfterMs); then crashes again.
      const duration = runs === 4 ? 120 : 0;
      return new Promise((resolve) => setTimeout(() => resolve(1), duration));
    };
    const local = createMemoryRuntime({ programs: { flaky } });
    const other = await createSupervisor({ runtime: local });
    try {
      const restart = {
        mode: 'on-failure' as const,
        initialDelayMs: 10,
        factor: 3,
        maxDelayMs: 10_000,
        resetAfterMs: 100,
      };
      const task = await other.create({ command: ['flaky'], restart });
      const delays = await backoffDelays(other, task.id, 5);
      const rounded = delays.map((delay) => Math.round(delay / 10) * 10);
      // 10, 30, 90 for the crashes; run 4 was stable → back to 10, then 30.
      expect(rounded).toEqual([10, 30, 90, 10, 30]);
      await other.stop(task.id);
    } finally {
      await other.close();
      await local.dispose();
    }
  });

  it('does not restart on-failure tasks that succeed, and honours maxRestarts', async () => {
    const ok = await supervisor.create({
      command: ['crash', '0'],
      restart: { mode: 'on-failure', initialDelayMs: 1 },
    });
    expect((await supervisor.wait(ok.id)).restarts).toBe(0);
    const limited = await supervisor.create({
      command: ['crash', '2'],
      restart: { mode: 'on-failure', initialDelayMs: 1, maxRestarts: 3 },
    });
    const done = await supervisor.wait(limited.id);
    expect(done.restarts).toBe(3);
    expect(done.exit?.code).toBe(2);
    expect((await supervisor.output(limited.id).text('stdout')).toString()).toBe(
      'run 2\n'.repeat(4),
    );
  });

  it('stops a task in backoff for good', async () => {
    const task = await supervisor.create({
      command: ['crash', '1'],
      restart: { mode: 'always', initialDelayMs: 60_000 },
    });
    await backoffDelays(supervisor, task.id, 1);
    const stopped = await supervisor.stop(task.id);
    expect(stopped.state).toBe('exited');
    expect(stopped.nextRestartAt).toBeUndefined();
  });

  it('remove stops a live task and forgets it and its output', async () => {
    const task = await supervisor.create({ command: ['serve'] });
    const removed: string[] = [];
    supervisor.on('task-remove', (id) => removed.push(id));
    await supervisor.remove(task.id);
    expect(removed).toEqual([task.id]);
    throwsWithCode(() => supervisor.get(task.id), 'NOT_FOUND');
    await rejectsWithCode(supervisor.remove(task.id), 'NOT_FOUND');
  });

  it('garbage-collects finished tasks after ttlMs', async () => {
    const local = createMemoryRuntime();
    const other = await createSupervisor({ runtime: local, ttlMs: 30 });
    try {
      const task = await other.create({ command: ['true'] });
      const removed = new Promise((resolve) => other.on('task-remove', resolve));
      await other.wait(task.id);
      expect(await removed).toBe(task.id);
      expect(other.list()).toEqual([]);
    } finally {
      await other.close();
      await local.dispose();
    }
  });

  it('does not collect a finished task while its output is being read', async () => {
    const local = createMemoryRuntime();
    const other = await createSupervisor({ runtime: local, ttlMs: 20 });
    try {
      const task = await other.create({ command: ['echo', 'still here'] });
      await other.wait(task.id);
      const reader = other.output(task.id).read({ follow: true });
      const first = await reader.next();
      expect(first.value).toMatchObject({ type: 'frame' });
      const removed = new Promise((resolve) => other.on('task-remove', resolve));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(other.list().map((item) => item.id)).toEqual([task.id]);
      expect((await reader.next()).done).toBe(true);
      expect(await removed).toBe(task.id);
    } finally {
      await other.close();
      await local.dispose();
    }
  });

  it('keeps finished tasks for a ttlMs longer than setTimeout can wait', async () => {
    const local = createMemoryRuntime();
    const other = await createSupervisor({ runtime: local, ttlMs: 2 ** 31 + 60_000 });
    try {
      const task = await other.create({ command: ['true'] });
      await other.wait(task.id);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(other.list().map((item) => item.id)).toEqual([task.id]);
    } finally {
      await other.close();
      await local.dispose();
    }
  });

  it('writes stdin and delivers EOF', async () => {
    const task = await supervisor.create({ command: ['cat'], stdin: 'pipe' });
    await supervisor.writeStdin(task.id, 'hello ');
    await supervisor.writeStdin(task.id, Buffer.from('world'));
    await supervisor.closeStdin(task.id);
    const done = await supervisor.wait(task.id);
    expect(done.exit?.code).toBe(0);
    expect((await supervisor.output(task.id).text('stdout')).toString()).toBe('hello world');
    await rejectsWithCode(supervisor.writeStdin(task.id, 'late'), 'FAILED_PRECONDITION');
  });

  it('accounts capacity: limits of live tasks are reserved, maxTasks enforced', async () => {
    const local = createMemoryRuntime({ capacity: { memoryBytes: 1000, diskBytes: 500 } });
    const other = await createSupervisor({ runtime: local, maxTasks: 2 });
    try {
      const first = await other.create({
        command: ['sleep', '60'],
        limits: { memoryBytes: 600, diskBytes: 100 },
      });
      expect(await other.capacity()).toEqual({
        liveTasks: 1,
        memoryBytes: 400,
        diskBytes: 400,
        tasks: 1,
      });
      await rejectsWithCode(
        other.create({ command: ['sleep', '60'], limits: { memoryBytes: 600 } }),
        'RESOURCE_EXHAUSTED',
      );
      await other.create({ command: ['sleep', '60'], limits: { memoryBytes: 400 } });
      await rejectsWithCode(other.create({ command: ['true'] }), 'RESOURCE_EXHAUSTED');
      await other.stop(first.id, { graceMs: 100 });
      expect((await other.capacity()).memoryBytes).toBe(600);
    } finally {
      await other.close();
      await local.dispose();
    }
  });

  it('runs several tasks in a sandbox and ends them all when it is destroyed', async () => {
    const sandbox = await supervisor.createSandbox({ labels: { purpose: 'test' } });
    const first = await supervisor.create({ command: ['sleep', '60'] }, { sandboxId: sandbox.id });
    const second = await supervisor.create({ command: ['serve'] }, { sandboxId: sandbox.id });
    expect(supervisor.listSandboxes().map((item) => item.id)).toEqual([sandbox.id]);
    await supervisor.destroySandbox(sandbox.id);
    expect(supervisor.get(first.id).state).toBe('exited');
    expect(supervisor.get(second.id).state).toBe('exited');
    expect(supervisor.listSandboxes()).toEqual([]);
    await rejectsWithCode(
      supervisor.create({ command: ['true'] }, { sandboxId: sandbox.id }),
      'NOT_FOUND',
    );
  });

  it('close stops live tasks and refuses new ones', async () => {
    const task = await supervisor.create({ command: ['serve'] });
    await supervisor.close();
    expect(supervisor.get(task.id).state).toBe('exited');
    await rejectsWithCode(supervisor.create({ command: ['true'] }), 'UNAVAILABLE');
  });
});

describe('supervisor with a file store', () => {
  it('leaves nothing in the store when a create fails, and has the final record on disk when wait resolves', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'overthere-store-'));
    const runtime = createMemoryRuntime();
    const supervisor = await createSupervisor({
      runtime,
      store: await createFileTaskStore({ dir }),
    });
    try {
      await rejectsWithCode(
        supervisor.create({ command: ['no-such-program'] }, { id: 'failed' }),
        'SPAWN_FAILED',
      );
      expect(await readdir(join(dir, 'tasks'))).toEqual([]);
      const task = await supervisor.create({ command: ['true'] }, { id: 'done' });
      await supervisor.wait(task.id);
      // The journal's last line for the task (the store's documented layout).
      const lines = (await readFile(join(dir, 'tasks.jsonl'), 'utf8')).trimEnd().split('\n');
      const record = lines
        .map((line) => JSON.parse(line) as TaskInfo)
        .filter((entry) => entry.id === 'done')
        .at(-1);
      expect(record?.state).toBe('exited');
    } finally {
      await supervisor.close();
      await runtime.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('supervisor recovery from a file store', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'overthere-recovery-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists earlier tasks with output, marks running one-shots lost and restarts services', async () => {
    const firstRuntime = createMemoryRuntime({ programs: { serve } });
    const first = await createSupervisor({
      runtime: firstRuntime,
      store: await createFileTaskStore({ dir }),
    });
    const finished = await first.create({ command: ['echo', 'kept'] }, { id: 'finished' });
    await first.wait(finished.id);
    await first.create({ command: ['serve'] }, { id: 'oneshot' });
    const service = await first.create(
      { command: ['serve'], restart: { mode: 'always', initialDelayMs: 1 } },
      { id: 'always' },
    );
    expect(service.state).toBe('running');
    // The agent "dies": nothing is stopped, records stay as they were.
    await first.close({ stopTasks: false });
    await firstRuntime.dispose();

    const secondRuntime = createMemoryRuntime({ programs: { serve } });
    const second = await createSupervisor({
      runtime: secondRuntime,
      store: await createFileTaskStore({ dir }),
    });
    try {
      expect(second.get('finished').state).toBe('exited');
      expect((await second.output('finished').text('stdout')).toString()).toBe('kept\n');
      const lost = second.get('oneshot');
      expect(lost.state).toBe('lost');
      expect(lost.exit?.reason).toBe('lost');
      const always = second.get('always');
      expect(always.state).toBe('running');
      expect(always.restarts).toBe(1);
    } finally {
      await second.close();
      await secondRuntime.dispose();
    }
  });
});
