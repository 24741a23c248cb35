/**
 * Ownership and recovery: an agent restart with a running container (the
 * task is re-adopted, output before and after is complete, the exit status
 * right), leftovers of this agent removed, other agents' containers untouched.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileTaskStore, createSupervisor, type Supervisor } from '@overthere/core';
import { createDockerRuntime } from '@overthere/runtime-docker';
import { exitOf, spawnSource, testEnv } from '../../../test-support/app-process.js';
import { containerExists, docker, sh, TEST_IMAGE, waitFor, within } from './helpers.js';

const WAIT_MS = 20_000;
let dataDir: string;
let stateDir: string;
const cleanup: Array<() => Promise<void>> = [];

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'overthere-docker-adopt-data-'));
  stateDir = await mkdtemp(join(tmpdir(), 'overthere-docker-adopt-state-'));
});

afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  // Whatever a failed test left behind: every container of this file's agents.
  const leftovers = await docker.listContainers({
    all: true,
    filters: { label: ['org.overthere.managed-by=overthere'] },
  });
  await Promise.all(
    leftovers
      .filter((summary) => summary.Labels['org.overthere.agent']?.endsWith(`-${process.pid}`))
      .map((summary) =>
        docker
          .getContainer(summary.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
  );
  await rm(dataDir, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

/** Follow a task's stdout until `text` appears. */
async function untilOutput(supervisor: Supervisor, id: string, text: string): Promise<void> {
  let seen = '';
  for await (const event of supervisor.output(id).read({ follow: true, streams: ['stdout'] })) {
    if (event.type !== 'frame') continue;
    seen += event.data.toString();
    if (seen.includes(text)) return;
  }
  throw new Error(`output ended without ${text}: ${seen}`);
}

/** Run a command in a running container, behind the runtime's back. */
async function execIn(containerId: string, command: string[]): Promise<void> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: command });
  const stream = await exec.start({ hijack: true, stdin: false });
  stream.resume();
  await new Promise((resolve) => stream.once('close', resolve));
}

describe('agent restart', () => {
  it('re-adopts a running container with complete output and the right exit; removes a leftover; leaves other agents alone', async () => {
    const agentId = `adopt-${process.pid}`;
    const runtimeOptions = { agentId, defaultImage: TEST_IMAGE, stateDir };
    const first = await createDockerRuntime(runtimeOptions);
    const firstSupervisor = await createSupervisor({
      runtime: first,
      store: await createFileTaskStore({ dir: dataDir }),
    });
    const task = await firstSupervisor.create({
      command: sh(
        'echo before; echo to-stderr >&2; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 7',
      ),
    });
    await within(untilOutput(firstSupervisor, task.id, 'before\n'), WAIT_MS, 'before');
    const containerId = firstSupervisor.get(task.id).handle?.containerId as string;
    expect(typeof containerId).toBe('string');
    // A container of this agent that no task record knows: a leftover after the restart.
    const leftover = await first.spawn(
      { command: ['sleep', '300'], limits: { diskBytes: 1024 * 1024 } },
      { taskId: 'leftover' },
    );
    const leftoverId = leftover.handle?.containerId as string;
    leftover.stdout.resume();
    leftover.stderr.resume();
    // Another agent's container must survive this agent's clean-up.
    const other = await createDockerRuntime({
      agentId: `other-${process.pid}`,
      defaultImage: TEST_IMAGE,
      stateDir: join(stateDir, 'other'),
    });
    cleanup.push(() => other.dispose());
    const foreign = await other.spawn({ command: ['sleep', '300'] }, { taskId: 'foreign' });
    foreign.stdout.resume();
    foreign.stderr.resume();

    // The agent goes away without stopping its tasks.
    await first.detach();
    await firstSupervisor.close({ stopTasks: false });
    expect(await containerExists(containerId)).toBe(true);

    // Output written while no agent was there must not be lost either.
    await execIn(containerId, ['sh', '-c', 'echo while-away > /proc/1/fd/1']);

    const second = await createDockerRuntime(runtimeOptions);
    cleanup.push(() => second.dispose());
    const secondSupervisor = await createSupervisor({
      runtime: second,
      store: await createFileTaskStore({ dir: dataDir }),
    });
    cleanup.push(() => secondSupervisor.close());
    expect(secondSupervisor.get(task.id).state).toBe('running');

    // Nobody adopts the leftover: it is removed; the other agent's container stays.
    expect(await second.removeUnadopted()).toEqual([leftoverId]);
    expect(await containerExists(leftoverId)).toBe(false);
    // Its disk-quota filesystem went with it: unmounted, image deleted.
    expect(await readdir(join(stateDir, 'quota'))).toEqual([]);
    expect(await readFile('/proc/self/mounts', 'utf8')).not.toContain(join(stateDir, 'quota'));
    expect(await containerExists(foreign.handle?.containerId as string)).toBe(true);

    await execIn(containerId, ['touch', '/tmp/go']);
    const ended = await within(secondSupervisor.wait(task.id), WAIT_MS, 'the adopted task ending');
    expect(ended.exit).toEqual({ code: 7, signal: null, reason: 'exited' });
    const log = secondSupervisor.output(task.id);
    expect((await log.text('stdout')).toString()).toBe('before\nwhile-away\nafter\n');
    expect((await log.text('stderr')).toString()).toBe('to-stderr\n');
  }, 60_000);

  it('after the agent process was SIGKILLed, the next one re-adopts the task: output complete, exit right', async () => {
    const agentId = `crash-${process.pid}`;
    const crashState = join(stateDir, 'crash');
    const crashData = await mkdtemp(join(tmpdir(), 'overthere-docker-crash-data-'));
    cleanup.push(() => rm(crashData, { recursive: true, force: true }));
    const child = spawnSource(
      'packages/runtime-docker/test/fixtures/crashing-agent.ts',
      [
        agentId,
        crashState,
        crashData,
        TEST_IMAGE,
        'echo before; echo to-stderr >&2; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 7',
      ],
      testEnv('OVERTHERE_DOCKER_'),
    );
    const exited = exitOf(child);
    cleanup.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    let printed = '';
    child.stdout!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    child.stderr!.resume();
    const { taskId, containerId } = await waitFor(
      'the agent to start its task',
      () =>
        printed.includes('\n') && (JSON.parse(printed) as { taskId: string; containerId: string }),
      20_000,
    );
    // The runtime saves how much output it delivered a moment after delivering it.
    const cursor = join(crashState, 'cursors', `${containerId}.json`);
    await waitFor(
      'the output position to be saved',
      async () => {
        const saved = await readFile(cursor, 'utf8').catch(() => '{}');
        let counts: { stdout?: number; stderr?: number };
        try {
          counts = JSON.parse(saved) as typeof counts;
        } catch {
          return false; // not a whole record (yet)
        }
        return counts.stdout === 'before\n'.length && counts.stderr === 'to-stderr\n'.length;
      },
      10_000,
    );
    child.kill('SIGKILL');
    expect((await exited).signal).toBe('SIGKILL');
    expect(await containerExists(containerId)).toBe(true);

    const runtime = await createDockerRuntime({
      agentId,
      stateDir: crashState,
      defaultImage: TEST_IMAGE,
    });
    cleanup.push(() => runtime.dispose());
    const supervisor = await createSupervisor({
      runtime,
      store: await createFileTaskStore({ dir: crashData }),
    });
    cleanup.push(() => supervisor.close());
    expect(supervisor.get(taskId).state).toBe('running');
    await execIn(containerId, ['touch', '/tmp/go']);
    const ended = await within(supervisor.wait(taskId), WAIT_MS, 'the adopted task ending');
    expect(ended.exit).toEqual({ code: 7, signal: null, reason: 'exited' });
    const log = supervisor.output(taskId);
    expect((await log.text('stdout')).toString()).toBe('before\nafter\n');
    expect((await log.text('stderr')).toString()).toBe('to-stderr\n');
  }, 60_000);

  it('adopt() of a container that is gone, or of another agent, resolves undefined', async () => {
    const runtime = await createDockerRuntime({
      agentId: `adopt-missing-${process.pid}`,
      defaultImage: TEST_IMAGE,
      stateDir: join(stateDir, 'missing'),
    });
    cleanup.push(() => runtime.dispose());
    const context = { taskId: 'missing' };
    expect(
      await runtime.adopt({ containerId: 'f'.repeat(64), agentId: runtime.agentId }, context),
    ).toBe(undefined);
    const other = await createDockerRuntime({
      agentId: `adopt-owner-${process.pid}`,
      defaultImage: TEST_IMAGE,
      stateDir: join(stateDir, 'owner'),
    });
    cleanup.push(() => other.dispose());
    const child = await other.spawn({ command: ['sleep', '300'] }, context);
    child.stdout.resume();
    child.stderr.resume();
    const handle = child.handle!;
    expect(await runtime.adopt(handle, context)).toBe(undefined);
    expect(await runtime.adopt({ ...handle, agentId: runtime.agentId }, context)).toBe(undefined);
  }, 30_000);
});
