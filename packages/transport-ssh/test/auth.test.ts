import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OverthereError, secretsEqual } from '@overthere/core';
import {
  createSshServer,
  parseAuthorizedKeys,
  publicKeyAuthorized,
  type SshAuthContext,
} from '@overthere/transport-ssh';
import { runProgram, runSsh, startSshServer, type TestSshServer } from './helpers.js';

const PASSWORD = 'correct horse battery staple';

describe('password and public-key authentication delegated to the app', () => {
  let ssh: TestSshServer;
  let goodKey: string;
  let otherKey: string;
  const attempts: SshAuthContext[] = [];

  beforeAll(async () => {
    ssh = await startSshServer({
      authenticate: async (context) => {
        attempts.push(context);
        if (context.username === 'alice' && secretsEqual(context.password, PASSWORD)) {
          return { name: 'alice', data: { role: 'admin' } };
        }
        if (context.username === 'bob' && context.publicKey) {
          const authorized = parseAuthorizedKeys(await readFile(`${goodKey}.pub`, 'utf8'));
          if (publicKeyAuthorized(context.publicKey, authorized)) return { name: 'bob' };
        }
        return undefined;
      },
      hooks: {
        exec: (session, command) => ({
          spec: {
            command: ['/bin/sh', '-c', command],
            env: {
              LOGGED_IN_AS: `${session.user.name}/${JSON.stringify(session.user.data ?? null)}`,
            },
          },
        }),
      },
    });
    goodKey = path.join(ssh.dir, 'id_good');
    otherKey = path.join(ssh.dir, 'id_other');
    for (const [file, type] of [
      [goodKey, 'ed25519'],
      [otherKey, 'ecdsa'],
    ] as const) {
      await runProgram('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'test', '-f', file]);
    }
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('accepts the right password and hands the app user to the hooks', async () => {
    const result = await runSsh({
      server: ssh,
      user: 'alice',
      password: PASSWORD,
      command: 'echo "$LOGGED_IN_AS"',
    });
    expect(result.stderr).toBe('');
    expect(result.stdout.toString()).toBe('alice/{"role":"admin"}\n');
    expect(result.code).toBe(0);
    expect(attempts.some((attempt) => attempt.remoteAddress === '127.0.0.1')).toBe(true);
  });

  it('refuses a wrong password and an unknown user with exit status 255', async () => {
    const before = ssh.supervisor.list().length;
    const wrong = await runSsh({ server: ssh, user: 'alice', password: 'nope', command: 'true' });
    expect(wrong.code).toBe(255);
    expect(wrong.stderr).toMatch(/Permission denied/);
    const unknown = await runSsh({
      server: ssh,
      user: 'mallory',
      password: PASSWORD,
      command: 'true',
    });
    expect(unknown.code).toBe(255);
    expect(ssh.supervisor.list().length).toBe(before);
  });

  it('accepts an authorized key and refuses another one', async () => {
    const good = await runSsh({
      server: ssh,
      user: 'bob',
      identity: goodKey,
      command: 'echo key-ok',
    });
    expect(good.stdout.toString()).toBe('key-ok\n');
    expect(good.code).toBe(0);
    const other = await runSsh({ server: ssh, user: 'bob', identity: otherKey, command: 'true' });
    expect(other.code).toBe(255);
    expect(other.stderr).toMatch(/Permission denied \(password,publickey\)/);
  });
});

describe('host key', () => {
  it('is generated once (mode 0600) and the same after a restart, so known_hosts stays valid', async () => {
    const first = await startSshServer();
    const dir = first.dir;
    const keyFile = path.join(dir, 'ssh_host_ed25519_key');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const scan = async (port: number) => {
      const line = await runProgram('ssh-keyscan', [
        '-t',
        'ed25519',
        '-p',
        String(port),
        '127.0.0.1',
      ]);
      return runProgram('ssh-keygen', ['-l', '-f', '-'], line);
    };
    const fingerprintBefore = await scan(first.port);
    expect(fingerprintBefore).toContain(first.server.hostKeyFingerprint);
    // Record the key as a client would, then insist on it after the restart.
    const ok = await runSsh({ server: first, command: 'true' });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    await first.close({ keepDir: true });

    const second = await startSshServer({ dir });
    try {
      expect(second.server.hostKeyFingerprint).toBe(first.server.hostKeyFingerprint);
      expect(await scan(second.port)).toContain(first.server.hostKeyFingerprint);
      const strict = await runSsh({
        server: { port: second.port, dir },
        command: 'echo same-key',
        args: ['-o', 'StrictHostKeyChecking=yes'],
      });
      expect(strict.stderr).toBe('');
      expect(strict.stdout.toString()).toBe('same-key\n');
    } finally {
      await second.close();
    }
  });

  it('refuses a host key file that holds no key', async () => {
    const ssh = await startSshServer();
    try {
      const bad = path.join(ssh.dir, 'bad_key');
      await writeFile(bad, 'not a key\n');
      const error = await createSshServer({ supervisor: ssh.supervisor, hostKeyPath: bad }).catch(
        (caught: unknown) => caught,
      );
      expect(OverthereError.hasCode(error, 'FAILED_PRECONDITION')).toBe(true);
      const none = await createSshServer({ supervisor: ssh.supervisor }).catch(
        (caught: unknown) => caught,
      );
      expect(OverthereError.hasCode(none, 'INVALID_ARGUMENT')).toBe(true);
    } finally {
      await ssh.close();
    }
  });
});

describe('listening', () => {
  it('refuses a non-loopback address without an authenticate hook', async () => {
    const ssh = await startSshServer();
    try {
      const server = await createSshServer({ supervisor: ssh.supervisor, dataDir: ssh.dir });
      const error = await server
        .listen({ host: '0.0.0.0', port: 0 })
        .catch((caught: unknown) => caught);
      expect(OverthereError.hasCode(error, 'FAILED_PRECONDITION')).toBe(true);
      await server.close();
    } finally {
      await ssh.close();
    }
  });
});
