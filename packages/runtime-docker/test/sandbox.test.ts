/**
 * Sandboxes (what narc builds on): processes exec'd into one long-lived
 * container, each with its own streams, TTY and exit status; signals to one
 * of them; destroy ends them all. Plus a task container's TTY.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, type Process, type Sandbox } from '@overthere/core';
import { createDockerRuntime, type DockerRuntime } from '@overthere/runtime-docker';
import { collect, containerExists, finish, sh, TEST_IMAGE, within } from './helpers.js';

const CONTAINER_TEST_MS = 30_000;
const WAIT_MS = 15_000;

let runtime: DockerRuntime;
let stateDir: string;
let sandbox: Sandbox;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'overthere-docker-sandbox-'));
  runtime = await createDockerRuntime({
    agentId: `sandbox-${process.pid}`,
    defaultImage: TEST_IMAGE,
    stateDir,
  });
  sandbox = await runtime.createSandbox(
    { env: { SANDBOX_VARIABLE: 'from the sandbox' }, limits: { memoryBytes: 64 * 1024 * 1024 } },
    { taskId: `sandbox-${process.pid}` },
  );
});

afterAll(async () => {
  await sandbox.destroy();
  await runtime.dispose();
  await rm(stateDir, { recursive: true, force: true });
});

const context = { taskId: `sandbox-process-${process.pid}` };

/** Write a line to an interactive shell and wait for `expected` in its output. */
async function say(
  shell: Process,
  output: ReturnType<typeof collect>,
  line: string,
  expected: string,
) {
  shell.stdin!.write(`${line}\n`);
  return within(output.until(expected), WAIT_MS, `${JSON.stringify(expected)} after ${line}`);
}

describe('sandbox', () => {
  it(
    'an exec’d process group is killed by a signal while the sandbox lives on',
    async () => {
      const victim = await sandbox.spawn(
        { command: sh('sleep 301 & echo $!; wait'), env: { EXTRA: 'x' } },
        context,
      );
      const stdout = collect(victim.stdout);
      collect(victim.stderr);
      await within(stdout.until('\n'), WAIT_MS, 'the child pid');
      await victim.signal('SIGTERM');
      // The child holds stdout open too: the exit only arrives once the whole group is gone.
      const exit = await within(victim.wait(), WAIT_MS, 'the signalled exit');
      expect(exit).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });

      const survivor = await finish(
        await sandbox.spawn(
          { command: sh('echo "$SANDBOX_VARIABLE"; ps -o args | grep -c "^sleep 301" || true') },
          context,
        ),
      );
      expect(survivor.stdout).toBe('from the sandbox\n0\n');
      expect(survivor.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
    },
    CONTAINER_TEST_MS,
  );

  it(
    'an interactive shell under a TTY follows resizes and reports its exit code',
    async () => {
      const shell = await sandbox.spawn(
        { command: ['/bin/sh'], tty: { cols: 80, rows: 24 }, stdin: 'pipe' },
        context,
      );
      const output = collect(shell.stdout);
      const stderr = collect(shell.stderr);
      await say(shell, output, 'stty size', '24 80');
      await shell.resize({ cols: 100, rows: 30 });
      await say(shell, output, 'stty size', '30 100');
      await say(shell, output, 'tty', '/dev/pts/');
      shell.stdin!.write('exit 3\n');
      expect(await within(shell.wait(), WAIT_MS, 'the shell exiting')).toEqual({
        code: 3,
        signal: null,
        reason: 'exited',
      });
      expect(await stderr.ended).toBe('');
    },
    CONTAINER_TEST_MS,
  );

  it(
    'a one-off process gets stdin with a real EOF and keeps stdout and stderr apart',
    async () => {
      const child = await sandbox.spawn(
        { command: sh('cat; echo done >&2; exit 4'), stdin: 'pipe' },
        context,
      );
      const result = finish(child);
      child.stdin!.end('piped in\n');
      expect(await result).toEqual({
        stdout: 'piped in\n',
        stderr: 'done\n',
        exit: { code: 4, signal: null, reason: 'exited' },
      });
    },
    CONTAINER_TEST_MS,
  );

  it(
    'destroy ends every process in it and removes the container',
    async () => {
      const own = await runtime.createSandbox({}, { taskId: `sandbox-destroy-${process.pid}` });
      const sleeper = await own.spawn({ command: ['sleep', '300'] }, context);
      const shell = await own.spawn(
        { command: ['/bin/sh'], tty: { cols: 80, rows: 24 }, stdin: 'pipe' },
        context,
      );
      const results = [finish(sleeper), finish(shell)];
      await within(own.destroy(), WAIT_MS, 'destroy()');
      for (const result of await Promise.all(results)) {
        expect(result.exit.reason).not.toBe('exited');
      }
      expect(await containerExists(own.id)).toBe(false);
      await expect(own.spawn({ command: ['true'] }, context)).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
    },
    CONTAINER_TEST_MS,
  );
});

describe('sandbox warm exec', () => {
  it(
    'runs processes back to back with their own argv, environment, stdin and exit code',
    async () => {
      const quoted = `a 'b' "c" $HOME \\ \`x\``;
      const results = [];
      // More than one: each takes the exec prepared while the previous one ran.
      for (let index = 0; index < 3; index += 1) {
        const child = await sandbox.spawn(
          {
            command: [
              'sh',
              '-c',
              'printf "%s|%s|%s" "$1" "$QUOTED" "$(cat)"; exit $2',
              'sh',
              "it's",
              String(index),
            ],
            env: { QUOTED: quoted },
            stdin: 'pipe',
          },
          context,
        );
        child.stdin!.end(`input ${index}\nsecond line`);
        results.push(await finish(child));
      }
      expect(results.map((result) => result.stdout)).toEqual(
        [0, 1, 2].map((index) => `it's|${quoted}|input ${index}\nsecond line`),
      );
      expect(results.map((result) => result.exit.code)).toEqual([0, 1, 2]);
    },
    CONTAINER_TEST_MS,
  );

  it(
    'reports a missing program like a fresh exec does, and gives no stdin when none is asked',
    async () => {
      const missing = await finish(await sandbox.spawn({ command: ['no-such-program'] }, context));
      expect(missing.exit).toEqual({ code: 127, signal: null, reason: 'exited' });
      expect(missing.stderr).toMatch(/no-such-program/);
      const noStdin = await finish(await sandbox.spawn({ command: ['cat'] }, context));
      expect(noStdin).toMatchObject({ stdout: '', exit: { code: 0 } });
    },
    CONTAINER_TEST_MS,
  );
});

describe('sandbox bookkeeping', () => {
  it(
    'pid files of ended processes are cleared (the tmpfs that holds them is small)',
    async () => {
      for (let index = 0; index < 3; index += 1) {
        await finish(await sandbox.spawn({ command: ['true'] }, context));
      }
      const listing = await finish(
        await sandbox.spawn({ command: ['ls', '/run/overthere'] }, context),
      );
      // Only the listing process's own file is left, and that of the warm exec
      // started for the next process.
      expect(listing.stdout.trim().split('\n')).toHaveLength(2);
    },
    CONTAINER_TEST_MS,
  );
});

describe('sandbox through a supervisor', () => {
  it(
    'a stopped task leaves the sandbox and its other tasks running; destroySandbox ends them',
    async () => {
      const supervisor = await createSupervisor({ runtime });
      try {
        const { id: sandboxId } = await supervisor.createSandbox({});
        const shell = await supervisor.create(
          { command: ['/bin/sh'], tty: { cols: 80, rows: 24 }, stdin: 'pipe' },
          { sandboxId },
        );
        const job = await supervisor.create(
          { command: sh('echo ready; exec sleep 300'), kill: { graceMs: 5_000 } },
          { sandboxId },
        );
        const stopped = await within(supervisor.stop(job.id), WAIT_MS, 'stop()');
        expect(stopped.exit).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });
        await supervisor.resize(shell.id, { cols: 90, rows: 20 });
        await supervisor.writeStdin(shell.id, 'stty size\n');
        await within(
          (async () => {
            let seen = '';
            for await (const event of supervisor.output(shell.id).read({ follow: true })) {
              if (event.type === 'frame') seen += event.data.toString();
              if (seen.includes('20 90')) return;
            }
          })(),
          WAIT_MS,
          'the resized shell answering',
        );
        await within(supervisor.destroySandbox(sandboxId), WAIT_MS, 'destroySandbox()');
        expect(supervisor.get(shell.id).state).not.toBe('running');
        expect(supervisor.listSandboxes()).toEqual([]);
      } finally {
        await supervisor.close();
      }
    },
    CONTAINER_TEST_MS,
  );
});

describe('task container with a TTY', () => {
  it(
    'takes input, follows resizes and reports the exit',
    async () => {
      const shell = await runtime.spawn(
        { command: ['/bin/sh'], tty: { cols: 80, rows: 24 }, stdin: 'pipe' },
        { taskId: `tty-${process.pid}` },
      );
      const output = collect(shell.stdout);
      collect(shell.stderr);
      await say(shell, output, 'stty size', '24 80');
      await shell.resize({ cols: 120, rows: 40 });
      await say(shell, output, 'stty size', '40 120');
      shell.stdin!.write('exit 5\n');
      expect(await within(shell.wait(), WAIT_MS, 'the shell exiting')).toEqual({
        code: 5,
        signal: null,
        reason: 'exited',
      });
    },
    CONTAINER_TEST_MS,
  );
});
