/**
 * What narc builds on, without NATS: each user has a Docker sandbox; `ssh
 * USER@host` gets a shell in a PTY inside it that survives disconnects, and
 * `ssh USER@host CMD` runs a one-off command in the same container.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFinalState, OverthereError } from '@overthere/core';
import { createDockerRuntime, type DockerRuntime } from '@overthere/runtime-docker';
import { interactiveSsh, runSsh, startSshServer, type TestSshServer } from './helpers.js';

const TEST_IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';
const CONTAINER_TEST_MS = 40_000;

describe('ssh into Docker sandboxes (the narc shape)', () => {
  let ssh: TestSshServer;
  let runtime: DockerRuntime;
  let stateDir: string;
  const sandboxes = new Map<string, string>();
  const shells = new Map<string, string>();

  beforeAll(async () => {
    stateDir = await mkdtemp(path.join(tmpdir(), 'overthere-ssh-docker-'));
    runtime = await createDockerRuntime({
      agentId: `ssh-test-${process.pid}`,
      defaultImage: TEST_IMAGE,
      stateDir,
    });
    ssh = await startSshServer({
      runtime,
      authenticate: ({ username, password }) =>
        sandboxes.has(username) && password === `token-of-${username}`
          ? { name: username }
          : undefined,
      hooks: {
        async shell(session) {
          const existing = shells.get(session.username);
          if (existing !== undefined && !isFinalState(ssh.supervisor.get(existing).state)) {
            return { taskId: existing };
          }
          const task = await ssh.supervisor.create(
            {
              command: ['/bin/sh'],
              stdin: 'pipe',
              tty: { cols: session.pty?.cols ?? 80, rows: session.pty?.rows ?? 24 },
              env: { TERM: session.pty?.term ?? 'xterm', PS1: '$ ' },
            },
            { sandboxId: sandboxes.get(session.username)! },
          );
          shells.set(session.username, task.id);
          return { taskId: task.id, replay: true };
        },
        exec: (session, command) => {
          const sandboxId = sandboxes.get(session.username);
          if (sandboxId === undefined) throw new OverthereError('NOT_FOUND', 'no sandbox');
          return {
            spec: { command: ['/bin/sh', '-c', command], stdin: 'pipe' },
            options: { sandboxId },
          };
        },
      },
    });
    const sandbox = await ssh.supervisor.createSandbox({});
    sandboxes.set('task-1', sandbox.id);
  }, CONTAINER_TEST_MS);

  afterAll(async () => {
    for (const sandboxId of sandboxes.values()) {
      await ssh.supervisor.destroySandbox(sandboxId).catch(() => {});
    }
    await ssh.close();
    await rm(stateDir, { recursive: true, force: true });
  }, CONTAINER_TEST_MS);

  /** Resolves once an SSH session is bound to the user's shell task. */
  async function attached(): Promise<void> {
    await expect
      .poll(
        () => {
          const shell = shells.get('task-1');
          return ssh.server
            .connections()
            .some((connection) => shell !== undefined && connection.taskIds.includes(shell));
        },
        { timeout: 20_000 },
      )
      .toBe(true);
  }

  it(
    'a PTY shell in the container survives a disconnect; a one-off command sees its files',
    async () => {
      const first = interactiveSsh({
        server: ssh,
        user: 'task-1',
        password: 'token-of-task-1',
        cols: 88,
        rows: 22,
      });
      // sshpass forwards keystrokes only once it has answered the password prompt.
      await attached();
      first.write('echo "h""i $(cat /etc/overthere-test | cut -c1-9)"; stty size\r');
      await first.expect(/hi overthere/, 0, 20_000);
      await first.expect(/22 88/);
      first.write('echo kept > /tmp/mark; KEPT=yes; echo "wro""te"\r');
      await first.expect(/wrote/);
      first.kill('SIGKILL');
      await first.exited;

      const oneOff = await runSsh({
        server: ssh,
        user: 'task-1',
        password: 'token-of-task-1',
        command: 'cat /tmp/mark; exit 6',
      });
      expect(oneOff.stdout.toString()).toBe('kept\n');
      expect(oneOff.code).toBe(6);

      const second = interactiveSsh({
        server: ssh,
        user: 'task-1',
        password: 'token-of-task-1',
        cols: 100,
        rows: 30,
      });
      await attached();
      second.write('echo "again $KEPT"; stty size\r');
      await second.expect(/again yes/, 0, 20_000);
      await second.expect(/30 100/);
      second.write('exit\r');
      expect(await second.exited).toBe(0);
    },
    CONTAINER_TEST_MS,
  );

  it('refuses a wrong token and an unknown task', async () => {
    const wrong = await runSsh({ server: ssh, user: 'task-1', password: 'nope', command: 'true' });
    expect(wrong.code).toBe(255);
    const unknown = await runSsh({
      server: ssh,
      user: 'task-2',
      password: 'token-of-task-2',
      command: 'true',
    });
    expect(unknown.code).toBe(255);
  });
});
