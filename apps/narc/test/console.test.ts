/**
 * One narc agent against its own nats-server and the real dockerd, driven
 * the way users drive it: `task.start` / `task.stop` published on NATS, the
 * OpenSSH client (through sshpass) for consoles and one-off commands.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  interactiveSsh,
  natsClient,
  publish,
  runSsh,
  startNarc,
  startNatsServer,
  taskContainers,
  waitFor,
  type NarcProcess,
  type NatsServerProcess,
} from './helpers.js';

const CONTAINER_TEST_MS = 45_000;

let nats: NatsServerProcess;
let client: NatsConnection;
let narc: NarcProcess;
let counter = 0;

/** A fresh task id and token. */
function newTask(): { task: string; token: string } {
  counter += 1;
  return { task: `console-${process.pid}-${counter}`, token: randomBytes(12).toString('hex') };
}

/** Publish `task.start` and wait until the agent has the task. */
async function startTask(
  extra: { memory_limit?: number; disk_limit?: number } = {},
): Promise<{ task: string; token: string }> {
  const task = newTask();
  const mark = narc.log().length;
  await publish(client, 'task.start', { task: task.task, secure_token: task.token, ...extra });
  await narc.waitForLog(new RegExp(`"task":"${task.task}".*"msg":"task started"`), mark);
  return task;
}

const ssh = (task: { task: string; token: string }, command: string) =>
  runSsh({ port: narc.sshPort, ...task, command });

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
  client = await natsClient(nats.url);
  narc = await startNarc({
    nats: nats.url,
    agentId: `console-${process.pid}`,
    args: ['--memory-mb', '1024', '--disk-mb', '256', '--advertise-interval-ms', '300'],
  });
});

afterAll(async () => {
  await narc?.dispose();
  await client?.close();
  await nats?.stop();
});

describe('narc console over SSH', () => {
  it(
    'a shell in a PTY: echo round-trips, stty sees window changes, a reconnect reattaches, exit destroys the container',
    async () => {
      const task = await startTask();
      const first = interactiveSsh({ port: narc.sshPort, ...task, cols: 101, rows: 33 });
      first.write('echo "h""i"\r');
      await first.expect(/\bhi\r?\n/);
      let mark = first.output.length;
      first.write('stty size\r');
      await first.expect(/33 101/, mark);
      mark = first.output.length;
      first.resize(120, 40);
      // The resize travels as SIGWINCH → window-change; ask until the shell sees it.
      await expect
        .poll(
          async () => {
            const before = first.output.length;
            first.write('stty size\r');
            await first.expect(/\d+ \d+\s*\r?\n/, before, 2_000).catch(() => undefined);
            return first.output.slice(mark);
          },
          { timeout: 10_000, interval: 200 },
        )
        .toMatch(/40 120/);
      mark = first.output.length;
      first.write('KEPT=still-here-$((40+2)); echo set\r');
      await first.expect(/set\r?\n/, mark);
      const [container] = await taskContainers(task.task);
      expect(container).toBeDefined();

      // Drop the client: the shell keeps running and a new login gets it back.
      first.kill();
      await first.exited;
      const second = interactiveSsh({ port: narc.sshPort, ...task, cols: 90, rows: 20 });
      second.write('echo "$KEPT"\r');
      await second.expect(/still-here-42/);
      mark = second.output.length;
      second.write('stty size\r');
      await second.expect(/20 90/, mark);
      expect(await taskContainers(task.task)).toEqual([container]);

      second.write('exit\r');
      expect(await second.exited).toBe(0);
      await waitFor('the container to be removed', async () =>
        (await taskContainers(task.task)).length === 0 ? true : undefined,
      );
      const later = await ssh(task, 'true');
      expect(later.code).toBe(255);
      expect(later.stderr).toMatch(/permission denied/i);
    },
    CONTAINER_TEST_MS,
  );

  it(
    'a one-off command: output and exit status come back, then the task is gone',
    async () => {
      const task = await startTask();
      const result = await ssh(task, 'echo "$((6*7))"; echo oops >&2; exit 3');
      expect(result.stdout).toBe('42\n');
      expect(result.stderr).toContain('oops');
      expect(result.code).toBe(3);
      await waitFor('the container to be removed', async () =>
        (await taskContainers(task.task)).length === 0 ? true : undefined,
      );
      expect((await ssh(task, 'true')).code).toBe(255);
    },
    CONTAINER_TEST_MS,
  );

  it(
    'memory limit: an allocation under it works, one over it is killed',
    async () => {
      const task = await startTask({ memory_limit: 32 });
      // dd allocates its block size up front and fills it from /dev/zero.
      const result = await ssh(
        task,
        'dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo small ok; ' +
          'dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo "large $?"',
      );
      expect(result.stdout).toMatch(/^small ok\nlarge (137|1)\n$/);
      expect(result.stdout).not.toContain('large 0');
    },
    CONTAINER_TEST_MS,
  );

  it(
    'disk limit: writes past it are refused',
    async () => {
      const task = await startTask({ disk_limit: 8 });
      const result = await ssh(
        task,
        'dd if=/dev/zero of=small bs=1024 count=1024 2>/dev/null && sync && echo small ok; ' +
          'dd if=/dev/zero of=large bs=1024 count=16384; echo "large $?"',
      );
      expect(result.stdout).toMatch(/^small ok\nlarge [1-9]\d*\n$/);
      expect(result.stderr).toMatch(/No space left on device/i);
    },
    CONTAINER_TEST_MS,
  );

  it('a wrong token, an unknown task or no token at all: ssh authentication fails', async () => {
    const task = await startTask();
    const wrong = await ssh({ task: task.task, token: `${task.token}x` }, 'true');
    expect(wrong.code).toBe(255);
    expect(wrong.stderr).toMatch(/permission denied/i);
    const unknown = await ssh({ task: `${task.task}-unknown`, token: task.token }, 'true');
    expect(unknown.code).toBe(255);
    const empty = await ssh({ task: task.task, token: '' }, 'true');
    expect(empty.code).toBe(255);
    // Still usable with the right one; tokens never reach the log.
    expect((await ssh(task, 'echo fine')).stdout).toBe('fine\n');
    expect(narc.log()).not.toContain(task.token);
  });

  it(
    'task.stop destroys the container and kicks off every connected session',
    async () => {
      const task = await startTask();
      const sessions = [
        interactiveSsh({ port: narc.sshPort, ...task }),
        interactiveSsh({ port: narc.sshPort, ...task }),
      ];
      for (const session of sessions) {
        session.write('echo "rea""dy"\r');
        await session.expect(/ready/);
      }
      expect(await taskContainers(task.task)).toHaveLength(1);
      await publish(client, 'task.stop', { task: task.task });
      const codes = await Promise.all(sessions.map((session) => session.exited));
      // Cut off by the server: ssh reports the lost connection (255) or the killed shell.
      for (const code of codes) expect(code).not.toBe(0);
      await waitFor('the container to be removed', async () =>
        (await taskContainers(task.task)).length === 0 ? true : undefined,
      );
      expect((await ssh(task, 'true')).code).toBe(255);
    },
    CONTAINER_TEST_MS,
  );

  it('a duplicate start is ignored and the first token stays valid', async () => {
    const task = await startTask();
    const mark = narc.log().length;
    await publish(client, 'task.start', { task: task.task, secure_token: 'second-token' });
    await narc.waitForLog(/duplicate task\.start ignored/, mark);
    expect((await ssh({ task: task.task, token: 'second-token' }, 'true')).code).toBe(255);
    expect((await ssh(task, 'echo first')).stdout).toBe('first\n');
  });

  it('invalid payloads are logged (without tokens) and ignored', async () => {
    const mark = narc.log().length;
    const bad: unknown[] = [
      'not json',
      '[1,2]',
      { secure_token: 'no-task-secret' },
      { task: 'no-token' },
      { task: '../escape', secure_token: 'path-secret' },
      { task: 'negative', secure_token: 'negative-secret', memory_limit: -5 },
      { task: 'fraction', secure_token: 'fraction-secret', disk_limit: 1.5 },
      { task: 'text', secure_token: 'text-secret', memory_limit: '64' },
    ];
    for (const payload of bad) await publish(client, 'task.start', payload);
    await publish(client, 'task.stop', 'not json either');
    await publish(client, 'task.stop', { task: 42 });
    await waitFor('every invalid message logged', () => {
      const lines =
        narc
          .log()
          .slice(mark)
          .match(/invalid task\.(start|stop) ignored/g) ?? [];
      return lines.length >= bad.length + 2 ? lines : undefined;
    });
    const log = narc.log().slice(mark);
    expect(log).not.toMatch(/task started/);
    for (const secret of ['no-task-secret', 'path-secret', 'negative-secret', 'text-secret']) {
      expect(log).not.toContain(secret);
    }
    // The agent still works.
    const task = await startTask();
    expect((await ssh(task, 'echo alive')).stdout).toBe('alive\n');
  });

  it('a start that does not fit is refused with a log line; adverts show what is left', async () => {
    const mark = narc.log().length;
    const task = newTask();
    await publish(client, 'task.start', {
      task: task.task,
      secure_token: task.token,
      memory_limit: 4096,
    });
    await narc.waitForLog(
      new RegExp(`"task":"${task.task}".*"msg":"task\\.start refused: it does not fit"`),
      mark,
    );
    expect((await ssh(task, 'true')).code).toBe(255);

    // A reservation shows in the next adverts: 1024 - 100 MB memory, 256 - 20 MB disk.
    const seen: unknown[] = [];
    const adverts = client.subscribe('task.advertise', {
      callback: (_error, message) => {
        seen.push(message.json());
      },
    });
    const reserved = await startTask({ memory_limit: 100, disk_limit: 20 });
    const expected = { id: narc.agentId, available_memory: 924, available_disk: 236 };
    await waitFor('an advert with the reservation', () =>
      seen.some((advert) => JSON.stringify(advert) === JSON.stringify(expected)) ? true : undefined,
    );
    adverts.unsubscribe();
    await publish(client, 'task.stop', { task: reserved.task });
  });
});
