import { once } from 'node:events';
import net from 'node:net';
import ssh2, { type ClientChannel } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OverthereError, isFinalState } from '@overthere/core';
import { interactiveSsh, runSsh, startSshServer, type TestSshServer } from './helpers.js';

/** An ssh2 client connected to a test server (the OpenSSH client cannot send signal requests). */
async function connect(ssh: TestSshServer, password = 'x'): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  const ready = once(client, 'ready');
  client.connect({ host: '127.0.0.1', port: ssh.port, username: 'tester', password });
  await ready;
  return client;
}

interface ExitInfo {
  code: number | null;
  signal: string | undefined;
}

/** A channel with its exit, listened for from the moment it opens (the exit may come in the same packet batch). */
type ExecChannel = ClientChannel & { exited: Promise<ExitInfo>; firstOutput: Promise<void> };

function exec(client: ssh2.Client, command: string): Promise<ExecChannel> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, channel) => {
      if (error) {
        reject(error);
        return;
      }
      const exit = new Promise<ExitInfo>((resolveExit) => {
        channel.on('exit', (code: number | null, signal?: string) => resolveExit({ code, signal }));
      });
      const firstOutput = new Promise<void>((resolveOutput) => {
        channel.once('data', () => resolveOutput());
      });
      channel.resume();
      channel.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
      resolve(Object.assign(channel, { exited: exit, firstOutput }));
    });
  });
}

/** Resolves with what the channel's `exit` event carried. */
function exitOf(channel: ExecChannel): Promise<ExitInfo> {
  return channel.exited;
}

describe('ssh sessions: attach, signals, disconnects, limits', () => {
  let ssh: TestSshServer;
  beforeAll(async () => {
    ssh = await startSshServer({
      maxSessionsPerConnection: 2,
      allowEnv: ['LANG', 'LC_*', 'GREETING'],
    });
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('attaches to a task started through the supervisor (as HTTP would), replaying its output', async () => {
    const task = await ssh.supervisor.create({
      command: ['/bin/sh', '-c', 'echo before; read line; echo "got $line"; echo oops >&2; exit 4'],
      stdin: 'pipe',
    });
    await expect
      .poll(async () => (await ssh.supervisor.output(task.id).text('stdout')).toString())
      .toBe('before\n');
    const result = await runSsh({ server: ssh, command: `attach ${task.id}`, stdin: 'hello\n' });
    expect(result.stdout.toString()).toBe('before\ngot hello\n');
    expect(result.stderr).toBe('oops\n');
    expect(result.code).toBe(4);
  });

  it('reports an unknown task and a malformed attach as errors with status 255', async () => {
    const unknown = await runSsh({ server: ssh, command: 'attach no-such-task' });
    expect(unknown.code).toBe(255);
    expect(unknown.stderr).toMatch(/NOT_FOUND: no such task: no-such-task/);
    const malformed = await runSsh({ server: ssh, command: 'attach' });
    expect(malformed.code).toBe(255);
    expect(malformed.stderr).toMatch(/INVALID_ARGUMENT: usage: attach TASK_ID/);
  });

  it('sends exit-signal when the task dies by a signal, and forwards signal requests', async () => {
    const client = await connect(ssh);
    try {
      const killed = await exec(client, 'kill -USR1 $$');
      expect(await exitOf(killed)).toEqual({ code: null, signal: 'SIGUSR1' });

      const sleeper = await exec(client, 'echo started; exec sleep 30');
      const exited = exitOf(sleeper);
      await sleeper.firstOutput;
      sleeper.signal('TERM');
      expect(await exited).toEqual({ code: null, signal: 'SIGTERM' });
    } finally {
      client.end();
    }
  });

  it('stops a default exec task when its client goes away', async () => {
    const client = await connect(ssh);
    const channel = await exec(client, 'echo started; exec sleep 30');
    await channel.firstOutput;
    const [task] = ssh.supervisor.list({
      state: 'running',
      labels: { 'overthere.ssh.user': 'tester' },
    });
    expect(task).toBeDefined();
    client.destroy();
    const ended = await ssh.supervisor.wait(task!.id);
    expect(ended.exit?.signal).toBe('SIGHUP');
  });

  it('passes allowed env requests and drops the others', async () => {
    const result = await runSsh({
      server: ssh,
      command: 'echo "$GREETING|${SECRET_THING:-unset}"',
      args: ['-o', 'SetEnv=GREETING=hello SECRET_THING=leak'],
    });
    expect(result.stderr).toBe('');
    expect(result.stdout.toString()).toBe('hello|unset\n');
  });

  it('refuses sessions past maxSessionsPerConnection without disturbing the others', async () => {
    const client = await connect(ssh);
    try {
      const first = await exec(client, 'exec sleep 30');
      const second = await exec(client, 'exec sleep 30');
      const error = await exec(client, 'true').catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      const firstExit = exitOf(first);
      const firstClosed = once(first, 'close');
      first.signal('KILL');
      expect(await firstExit).toEqual({ code: null, signal: 'SIGKILL' });
      await firstClosed;
      // A slot is free again.
      const third = await exec(client, 'exit 5');
      expect(await exitOf(third)).toEqual({ code: 5, signal: undefined });
      second.close();
    } finally {
      client.end();
    }
  });

  it('disconnects every session of a user; a kept task survives', async () => {
    const shell = await ssh.supervisor.create({
      command: ['/bin/sh'],
      tty: { cols: 80, rows: 24 },
    });
    const client = interactiveSsh({ server: ssh, user: 'kicked', command: `attach ${shell.id}` });
    client.write('echo "at""tached"\r');
    await client.expect(/attached/);
    expect(ssh.server.connections().map((connection) => connection.taskIds)).toContainEqual([
      shell.id,
    ]);
    expect(ssh.server.disconnect({ username: 'nobody-here' })).toBe(0);
    expect(ssh.server.disconnect({ username: 'kicked' })).toBe(1);
    expect(await client.exited).toBe(255);
    expect(isFinalState(ssh.supervisor.get(shell.id).state)).toBe(false);
    await ssh.supervisor.stop(shell.id, { graceMs: 1_000 });
  });

  it('reports a hook failure on stderr with status 255', async () => {
    const failing = await startSshServer({
      hooks: {
        exec: () => {
          throw new OverthereError('PERMISSION_DENIED', 'not for you');
        },
      },
    });
    try {
      const result = await runSsh({ server: failing, command: 'true' });
      expect(result.code).toBe(255);
      expect(result.stderr).toBe('overthere: PERMISSION_DENIED: not for you\n');
    } finally {
      await failing.close();
    }
  });

  it('drops a connection that does not authenticate within authTimeoutMs', async () => {
    const strict = await startSshServer({ authTimeoutMs: 300 });
    try {
      const socket = net.connect(strict.port, '127.0.0.1');
      socket.resume();
      const started = Date.now();
      await once(socket, 'close');
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await strict.close();
    }
  });
});

describe('ssh connection limits', () => {
  it('drops a connection left without a session for idleTimeoutMs', async () => {
    const ssh = await startSshServer({ idleTimeoutMs: 300 });
    try {
      const client = await connect(ssh);
      const started = Date.now();
      await once(client, 'close');
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      // A connection with a running session is not idle.
      const busy = await connect(ssh);
      const channel = await exec(busy, 'sleep 0.8; echo done');
      expect(await exitOf(channel)).toEqual({ code: 0, signal: undefined });
      busy.end();
    } finally {
      await ssh.close();
    }
  });

  it('closes connections past maxConnections and drops a client after maxAuthAttempts', async () => {
    let attempts = 0;
    const ssh = await startSshServer({
      maxConnections: 1,
      maxAuthAttempts: 2,
      authenticate: ({ password }) => {
        attempts += 1;
        return password === 'right' ? { name: 'ok' } : undefined;
      },
    });
    try {
      const first = await connect(ssh, 'right');
      const refused = net.connect(ssh.port, '127.0.0.1');
      refused.resume();
      await once(refused, 'close');
      expect(ssh.server.connections()).toHaveLength(1);
      first.end();
      await once(first, 'close');
      await expect.poll(() => ssh.server.connections().length).toBe(0);

      // A client that keeps trying wrong passwords is cut off after the second.
      const before = attempts;
      const guesser = new ssh2.Client();
      guesser.on('error', () => {});
      guesser.connect({
        host: '127.0.0.1',
        port: ssh.port,
        username: 'tester',
        authHandler: (_methodsLeft, _partialSuccess, next) =>
          next({ type: 'password', username: 'tester', password: 'wrong' }),
      });
      await once(guesser, 'close');
      expect(attempts - before).toBe(2);
    } finally {
      await ssh.close();
    }
  });
});

describe('ssh keepalives and kicks by task', () => {
  it('drops a client that stops answering keepalives', async () => {
    const ssh = await startSshServer({ keepaliveIntervalMs: 200, keepaliveCountMax: 2 });
    // A proxy that can go silent towards the server, as a vanished client does.
    let silent = false;
    const proxy = net.createServer((inbound) => {
      const outbound = net.connect(ssh.port, '127.0.0.1');
      inbound.on('data', (chunk: Buffer) => {
        if (!silent) outbound.write(chunk);
      });
      outbound.pipe(inbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
      inbound.on('close', () => outbound.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const client = new ssh2.Client();
      client.on('error', () => {});
      const ready = once(client, 'ready');
      client.connect({
        host: '127.0.0.1',
        port: (proxy.address() as net.AddressInfo).port,
        username: 'tester',
        password: 'x',
        keepaliveInterval: 0,
      });
      await ready;
      expect(ssh.server.connections()).toHaveLength(1);
      silent = true;
      const started = Date.now();
      await expect.poll(() => ssh.server.connections().length, { timeout: 5_000 }).toBe(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      client.destroy();
    } finally {
      proxy.close();
      await ssh.close();
    }
  });

  it('disconnects the sessions on a task; stopping an attached task ends its sessions', async () => {
    const ssh = await startSshServer();
    try {
      const task = await ssh.supervisor.create({ command: ['sleep', '30'] });
      const client = await connect(ssh);
      await exec(client, `attach ${task.id}`);
      await expect
        .poll(() => ssh.server.connections().flatMap((connection) => connection.taskIds))
        .toEqual([task.id]);
      expect(ssh.server.disconnect({ taskId: 'another-task' })).toBe(0);
      expect(ssh.server.disconnect({ taskId: task.id })).toBe(1);
      await once(client, 'close');
      expect(ssh.supervisor.get(task.id).state).toBe('running');

      const second = await connect(ssh);
      const attached = await exec(second, `attach ${task.id}`);
      await expect
        .poll(() => ssh.server.connections().flatMap((connection) => connection.taskIds))
        .toEqual([task.id]);
      await ssh.supervisor.stop(task.id, { signal: 'SIGINT', graceMs: 1_000 });
      expect(await exitOf(attached)).toEqual({ code: null, signal: 'SIGINT' });
      second.end();
    } finally {
      await ssh.close();
    }
  });
});
