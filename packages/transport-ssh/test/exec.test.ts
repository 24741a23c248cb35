import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSsh, startSshServer, type TestSshServer } from './helpers.js';

describe('ssh exec with the OpenSSH client (no authenticate hook, loopback)', () => {
  let ssh: TestSshServer;
  beforeAll(async () => {
    ssh = await startSshServer();
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('returns the exit status and keeps stdout and stderr apart', async () => {
    const result = await runSsh({
      server: ssh,
      command: 'echo out; echo err >&2; exit 7',
    });
    expect(result.stdout.toString()).toBe('out\n');
    expect(result.stderr).toBe('err\n');
    expect(result.code).toBe(7);
  });

  it('passes stdin and stdout through byte for byte', async () => {
    const input = randomBytes(3 * 1024 * 1024);
    const result = await runSsh({ server: ssh, command: 'cat', stdin: input });
    expect(result.code).toBe(0);
    const hash = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    expect(result.stdout.length).toBe(input.length);
    expect(hash(result.stdout)).toBe(hash(input));
  });
});

describe('ssh exec: PTYs, shells without one, signals as the OpenSSH client sees them', () => {
  let ssh: TestSshServer;
  beforeAll(async () => {
    ssh = await startSshServer();
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('runs a command in a PTY with -tt (one merged stream, TERM set)', async () => {
    const result = await runSsh({
      server: ssh,
      command: 'test -t 0 && echo "tty $TERM"; echo to-stderr >&2',
      args: ['-tt', '-o', 'SetEnv=TERM=vt220'],
    });
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toMatch(/^tty \S+\r\nto-stderr\r\n$/);
    expect(result.stderr).toBe('');
  });

  it('runs a shell without a PTY, reading commands from stdin until EOF', async () => {
    const result = await runSsh({
      server: ssh,
      args: ['-T'],
      stdin: 'test -t 0 || echo "no tty"\necho "sum $((40+2))"\nexit 9\n',
    });
    expect(result.stdout.toString()).toBe('no tty\nsum 42\n');
    expect(result.code).toBe(9);
  });

  it('exits 255 when the task is killed by a signal (exit-signal)', async () => {
    const result = await runSsh({ server: ssh, command: 'echo before; kill -TERM $$' });
    expect(result.stdout.toString()).toBe('before\n');
    expect(result.code).toBe(255);
    const [task] = ssh.supervisor
      .list({ state: 'exited' })
      .filter((candidate) => candidate.spec.command?.[2]?.startsWith('echo before'));
    expect(task?.exit?.signal).toBe('SIGTERM');
  });
});
