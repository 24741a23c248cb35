import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFinalState } from '@overthere/core';
import type { SshTarget } from '@overthere/transport-ssh';
import { interactiveSsh, startSshServer, type TestSshServer } from './helpers.js';

describe('ssh shell with a PTY (default hooks)', () => {
  let ssh: TestSshServer;
  beforeAll(async () => {
    ssh = await startSshServer();
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('round-trips input through the PTY, reports the size and follows window changes', async () => {
    const client = interactiveSsh({ server: ssh, cols: 101, rows: 33 });
    client.write('echo "hi""there"\r');
    await client.expect(/hithere/);
    let mark = client.output.length;
    client.write('stty size\r');
    await client.expect(/33 101/, mark);
    mark = client.output.length;
    client.resize(120, 40);
    // The resize reaches the task through ssh's SIGWINCH → window-change; poll stty until it shows.
    await expect
      .poll(
        async () => {
          const before = client.output.length;
          client.write('stty size\r');
          await client.expect(/\d+ \d+\s*\r?\n/, before).catch(() => undefined);
          return client.output.slice(mark);
        },
        { timeout: 10_000, interval: 200 },
      )
      .toMatch(/40 120/);
    mark = client.output.length;
    client.write('exit 3\r');
    expect(await client.exited).toBe(3);
  });

  it('stops the shell task with SIGHUP when the client goes away', async () => {
    const client = interactiveSsh({ server: ssh });
    client.write('echo "rea""dy"\r');
    await client.expect(/ready/);
    const [task] = ssh.supervisor
      .list({ state: 'running' })
      .filter((candidate) => candidate.spec.tty !== undefined);
    expect(task).toBeDefined();
    client.kill('SIGKILL');
    const ended = await ssh.supervisor.wait(task!.id);
    expect(ended.exit?.signal).toBe('SIGHUP');
  });
});

describe('ssh shell that outlives the session (reattach hook)', () => {
  let ssh: TestSshServer;
  let shellTaskId: string | undefined;
  beforeAll(async () => {
    ssh = await startSshServer({
      hooks: {
        // One shell per user: the first login starts it, later logins reattach.
        async shell(session): Promise<SshTarget> {
          if (shellTaskId !== undefined && !isFinalState(ssh.supervisor.get(shellTaskId).state)) {
            return { taskId: shellTaskId };
          }
          const task = await ssh.supervisor.create({
            command: ['/bin/sh'],
            stdin: 'pipe',
            tty: { cols: session.pty?.cols ?? 80, rows: session.pty?.rows ?? 24 },
            env: { PS1: 'prompt$ ' },
          });
          shellTaskId = task.id;
          return { taskId: task.id, replay: true };
        },
      },
    });
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('keeps the shell across a disconnect; a reconnect sees the same shell', async () => {
    const first = interactiveSsh({ server: ssh, cols: 90, rows: 20 });
    first.write('MARKER=still-here-$((6*7))\r');
    first.write('echo "s""et"\r');
    await first.expect(/\bset\b/);
    first.kill('SIGKILL');
    await first.exited;
    await expect.poll(() => ssh.server.connections().length, { timeout: 5_000 }).toBe(0);
    expect(ssh.supervisor.get(shellTaskId!).state).toBe('running');

    const second = interactiveSsh({ server: ssh, cols: 70, rows: 25 });
    second.write('echo "got $MARKER"; stty size\r');
    await second.expect(/got still-here-42/);
    await second.expect(/25 70/);
    second.write('exit\r');
    expect(await second.exited).toBe(0);
    expect(ssh.supervisor.get(shellTaskId!).state).toBe('exited');
  });
});
