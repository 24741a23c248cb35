/**
 * The server's host key: generated once (ed25519) into a file and reused on
 * every start, so a client's known_hosts entry stays valid across restarts.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import { OverthereError, writeFileAtomic } from '@overthere/core';

/** File name of the host key inside a data dir. */
export const HOST_KEY_FILE = 'ssh_host_ed25519_key';

/** A loaded host key. */
export interface SshHostKey {
  /** The private key in OpenSSH format, as ssh2 takes it. */
  privateKey: string;
  /** The public key line (`ssh-ed25519 AAAA…`), as in `known_hosts`. */
  publicKey: string;
  /** `SHA256:…`, the form `ssh-keygen -l` prints. */
  fingerprint: string;
}

/** The OpenSSH fingerprint (`SHA256:` + unpadded base64 of the SHA-256 of the key blob). */
export function sshFingerprint(publicKeyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(publicKeyBlob).digest('base64').replace(/=+$/, '')}`;
}

function describe(privateKey: string, file: string): SshHostKey {
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error || !parsed.isPrivateKey()) {
    const reason = parsed instanceof Error ? parsed.message : 'not a private key';
    throw new OverthereError('FAILED_PRECONDITION', `host key ${file} is unusable: ${reason}`);
  }
  const blob = parsed.getPublicSSH();
  return {
    privateKey,
    publicKey: `${parsed.type} ${blob.toString('base64')}`,
    fingerprint: sshFingerprint(blob),
  };
}

/** Length of an ssh-ed25519 public key blob: string "ssh-ed25519" and a 32-byte key. */
const ED25519_BLOB_BYTES = 4 + 11 + 4 + 32;

/**
 * A new ed25519 private key in OpenSSH format. ssh2's generator drops a
 * leading zero byte of the public key (about 1 key in 300), which yields a
 * file it cannot read back; such a key is thrown away and another made.
 */
function generateEd25519PrivateKey(): string {
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'overthere host key' });
    const parsed = ssh2.utils.parseKey(pair.private);
    if (!(parsed instanceof Error) && parsed.getPublicSSH().length === ED25519_BLOB_BYTES) {
      return pair.private;
    }
  }
}

/**
 * Read the host key at `file`, or generate an ed25519 key there (mode 0600,
 * directory 0700) when the file does not exist.
 *
 * @throws OverthereError `FAILED_PRECONDITION` when the file exists but holds no usable private key.
 */
export async function loadOrCreateHostKey(file: string): Promise<SshHostKey> {
  try {
    return describe(await readFile(file, 'utf8'), file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, generateEd25519PrivateKey());
  return describe(await readFile(file, 'utf8'), file);
}
