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
