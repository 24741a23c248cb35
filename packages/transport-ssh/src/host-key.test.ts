import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OverthereError } from '@overthere/core';
import { loadOrCreateHostKey, sshFingerprint } from './host-key.js';

describe('loadOrCreateHostKey', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'overthere-host-key-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('generates a readable ed25519 key every time (ssh2 alone fails about 1 in 300)', async () => {
    for (let index = 0; index < 400; index += 1) {
      const key = await loadOrCreateHostKey(path.join(dir, `key-${index}`));
      expect(key.publicKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=*$/);
    }
  });

  it('creates the key once, mode 0600 in a 0700 dir, and returns the same key later', async () => {
    const file = path.join(dir, 'nested', 'ssh_host_ed25519_key');
    const first = await loadOrCreateHostKey(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    const content = await readFile(file, 'utf8');
    const second = await loadOrCreateHostKey(file);
    expect(second).toEqual(first);
    expect(await readFile(file, 'utf8')).toBe(content);
    const blob = Buffer.from(first.publicKey.split(' ')[1]!, 'base64');
    expect(first.fingerprint).toBe(sshFingerprint(blob));
    expect(first.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('refuses a file that holds no private key', async () => {
    const file = path.join(dir, 'garbage');
    await writeFile(
      file,
      '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
    );
    const error = await loadOrCreateHostKey(file).catch((caught: unknown) => caught);
    expect(OverthereError.hasCode(error, 'FAILED_PRECONDITION')).toBe(true);
  });
});
