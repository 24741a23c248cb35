/**
 * Limits and isolation against a real dockerd: memory (OOM reported), disk
 * quota, pids, no network, labels, removal, capacity.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from '@overthere/runtime-docker';
import { collect, containerExists, docker, finish, sh, TEST_IMAGE, within } from './helpers.js';

const MiB = 1024 * 1024;
const CONTAINER_TEST_MS = 30_000;

let runtime: DockerRuntime;
let stateDir: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'overthere-docker-limits-'));
  runtime = await createDockerRuntime({
    agentId: `limits-${process.pid}`,
    defaultImage: TEST_IMAGE,
    stateDir,
  });
});

afterAll(async () => {
  await runtime.dispose();
  await rm(stateDir, { recursive: true, force: true });
});

const context = (name: string) => ({ taskId: `${name}-${process.pid}` });

describe.concurrent('limits', () => {
  it(
    'memory: an allocation under the limit works; over it the task dies with reason oom',
    async () => {
      // dd allocates its block size up front and fills it from /dev/zero.
      const limits = { memoryBytes: 32 * MiB };
      const [under, over] = await Promise.all([
        runtime.spawn(
          { command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=8M', 'count=1'], limits },
          context('memory-under'),
        ),
        // A string that doubles for ever: the pages are touched in user space, so
        // the kernel's answer is the OOM killer (a read() into a fresh buffer
        // may fail with EFAULT instead).
        runtime.spawn(
          { command: ['awk', 'BEGIN { s = "x"; while (1) s = s s }'], limits },
          context('memory-over'),
        ),
      ]);
      const [underResult, overResult] = await Promise.all([finish(under), finish(over)]);
      expect(underResult.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
      expect(overResult.exit.reason).toBe('oom');
    },
    CONTAINER_TEST_MS,
  );

  it(
    'disk: writing 512 KiB under a 1 MiB quota works, 2 MiB fails; the quota filesystem goes with the container',
    async () => {
      const limits = { diskBytes: MiB };
      const write = (kib: number, name: string) =>
        runtime.spawn(
          {
            command: sh(
              `dd if=/dev/zero of=data bs=1024 count=${kib} && sync && echo written; status=$?; pwd; touch /outside 2>/dev/null || echo read-only root; exit $status`,
            ),
            limits,
          },
          context(name),
        );
      const [small, large] = await Promise.all([
        write(512, 'disk-small'),
        write(2048, 'disk-large'),
      ]);
      const [smallResult, largeResult] = await Promise.all([finish(small), finish(large)]);
      expect(smallResult.stdout).toBe('written\n/work\nread-only root\n');
      expect(smallResult.exit.code).toBe(0);
      expect(largeResult.stdout).toBe('/work\nread-only root\n');
      expect(largeResult.stderr).toMatch(/No space left on device/i);
      expect(largeResult.exit.code).not.toBe(0);
    },
    CONTAINER_TEST_MS,
  );

  it(
    'pids: the limit stops a fork bomb',
    async () => {
      // busybox sh gives up at the first failed fork; every sleep dies with the container.
      const child = await runtime.spawn(
        {
          command: sh('i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); echo $i; done'),
          limits: { pids: 16 },
        },
        context('pids'),
      );
      const result = await finish(child);
      const started = Number(result.stdout.trim().split('\n').at(-1));
      expect(started).toBeGreaterThan(0);
      expect(started).toBeLessThan(16);
      expect(result.stderr).toMatch(/can't fork|Resource temporarily unavailable/i);
      expect(result.exit.code).not.toBe(0);
    },
    CONTAINER_TEST_MS,
  );

  it(
    'containers are labelled, unprivileged, without network, and removed when the task ends',
    async () => {
      const child = await runtime.spawn(
        {
          command: sh(
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo ready; exec sleep 30",
          ),
          limits: { cpus: 0.5, openFiles: 256 },
        },
        context('labels'),
      );
      const stdout = collect(child.stdout);
      collect(child.stderr);
      // Only the loopback interface: no network.
      expect(await within(stdout.until('ready'), 20_000, 'ready')).toBe('lo\nready\n');
      const containerId = child.handle?.containerId as string;
      const info = await docker.getContainer(containerId).inspect();
      expect(info.Config.Labels['org.overthere.agent']).toBe(runtime.agentId);
      expect(info.Config.Labels['org.overthere.task']).toBe(context('labels').taskId);
      expect(info.Config.Labels['org.overthere.managed-by']).toBe('overthere');
      expect(info.HostConfig.Privileged).toBe(false);
      expect(info.HostConfig.NetworkMode).toBe('none');
      expect(info.HostConfig.NanoCpus).toBe(500_000_000);
      expect(info.HostConfig.Ulimits).toEqual([{ Name: 'nofile', Soft: 256, Hard: 256 }]);
      await child.signal('SIGTERM');
      expect((await within(child.wait(), 20_000, 'the exit')).reason).toBe('signalled');
      // Removal follows the exit; a fresh runtime's dispose awaits it, so wait via the daemon's events.
      await within(
        (async () => {
          while (await containerExists(containerId)) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })(),
        10_000,
        'the container being removed',
      );
    },
    CONTAINER_TEST_MS,
  );
});

describe.concurrent('scripts and keep', () => {
  it(
    'keeps a container that asked to be kept, after its task ended',
    async () => {
      const kept = await createDockerRuntime({
        agentId: `keep-${process.pid}`,
        defaultImage: TEST_IMAGE,
        stateDir: join(stateDir, 'keep'),
      });
      let containerId: string | undefined;
      try {
        const child = await kept.spawn(
          { command: ['true'], runtimeOptions: { docker: { keep: true } } },
          context('keep'),
        );
        containerId = child.handle?.containerId as string;
        expect((await finish(child)).exit.code).toBe(0);
        // dispose() waits for every pending removal: a kept container has none.
        await kept.dispose();
        expect(await containerExists(containerId)).toBe(true);
      } finally {
        await kept.dispose();
        if (containerId !== undefined)
          await docker.getContainer(containerId).remove({ force: true });
      }
    },
    CONTAINER_TEST_MS,
  );

  it(
    'runs a script by its #! interpreter, or by /bin/sh without one',
    async () => {
      const [withShebang, plain] = await Promise.all([
        runtime.spawn(
          { script: '#!/bin/sh -e\necho "interpreted by sh -e: $-"\nfalse\necho unreachable\n' },
          context('script-shebang'),
        ),
        runtime.spawn({ script: 'echo plain; exit 6' }, context('script-plain')),
      ]);
      const [shebangResult, plainResult] = await Promise.all([finish(withShebang), finish(plain)]);
      expect(shebangResult.stdout).toMatch(/^interpreted by sh -e: \w*e\w*\n$/);
      expect(shebangResult.exit).toEqual({ code: 1, signal: null, reason: 'exited' });
      expect(plainResult).toMatchObject({ stdout: 'plain\n', exit: { code: 6 } });
    },
    CONTAINER_TEST_MS,
  );
});

describe('capacity and errors', () => {
  it(
    'capacity() reports memory and disk left after reservations',
    async () => {
      // Fixed totals: the host's free disk moves with whatever else runs on it.
      const sized = await createDockerRuntime({
        agentId: `capacity-${process.pid}`,
        defaultImage: TEST_IMAGE,
        stateDir: join(stateDir, 'capacity'),
        memoryBytes: 1024 * MiB,
        diskBytes: 64 * MiB,
      });
      const before = await sized.capacity();
      expect(before).toEqual({ memoryBytes: 1024 * MiB, diskBytes: 64 * MiB });
      const sandbox = await sized.createSandbox(
        { limits: { memoryBytes: 64 * MiB, diskBytes: 2 * MiB } },
        context('capacity'),
      );
      try {
        expect(await sized.capacity()).toEqual({ memoryBytes: 960 * MiB, diskBytes: 62 * MiB });
        await sandbox.destroy();
        expect(await sized.capacity()).toEqual(before);
        expect(await readdir(join(stateDir, 'capacity', 'quota'))).toEqual([]);
      } finally {
        await sized.dispose();
      }
    },
    CONTAINER_TEST_MS,
  );

  it('a missing image is SPAWN_FAILED naming the image', async () => {
    const error = await runtime
      .spawn(
        { command: ['true'], runtimeOptions: { docker: { image: 'overthere-test:no-such-tag' } } },
        context('missing-image'),
      )
      .then(
        () => undefined,
        (rejection: unknown) => rejection,
      );
    expect(error).toMatchObject({ code: 'SPAWN_FAILED' });
    expect((error as Error).message).toContain('overthere-test:no-such-tag');
  });

  it('pulls only when asked; a failed pull is SPAWN_FAILED naming the image', async () => {
    // A registry on loopback where nothing listens: the pull fails fast, without the network.
    const image = '127.0.0.1:9/overthere/nothing:latest';
    const spawnWith = (pull: boolean) =>
      runtime
        .spawn({ command: ['true'], runtimeOptions: { docker: { image, pull } } }, context('pull'))
        .then(
          () => undefined,
          (rejection: unknown) => rejection as Error & { code?: string },
        );
    const notAsked = await spawnWith(false);
    expect(notAsked).toMatchObject({ code: 'SPAWN_FAILED' });
    expect(notAsked?.message).toMatch(/not present/);
    expect(notAsked?.message).toContain(image);
    const asked = await spawnWith(true);
    expect(asked).toMatchObject({ code: 'SPAWN_FAILED' });
    expect(asked?.message).toContain(`pulling image ${image}`);
  });

  it('bad runtimeOptions and limits are INVALID_ARGUMENT', async () => {
    await expect(
      runtime.spawn(
        { command: ['true'], runtimeOptions: { docker: { imag: 'x' } } },
        context('bad'),
      ),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('imag') });
    await expect(
      runtime.spawn({ command: ['true'], limits: { memoryBytes: -1 } }, context('bad')),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('an unreachable dockerd is UNAVAILABLE with a clear message', async () => {
    const socketPath = join(stateDir, 'no-dockerd.sock');
    expect(existsSync(socketPath)).toBe(false);
    const error = await createDockerRuntime({
      socketPath,
      stateDir: join(stateDir, 'unused'),
    }).then(
      () => undefined,
      (rejection: unknown) => rejection,
    );
    expect(error).toMatchObject({ code: 'UNAVAILABLE' });
    expect((error as Error).message).toContain(socketPath);
    expect((error as Error).message).toMatch(/unreachable/);
    // Nothing was set up for it.
    expect(existsSync(join(stateDir, 'unused'))).toBe(false);
  });
});
