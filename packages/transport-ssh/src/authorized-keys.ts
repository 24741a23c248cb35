/**
 * Helpers for apps that authorise public keys: parse `authorized_keys` text
 * and compare a presented key with it.
 */
import { timingSafeEqual } from 'node:crypto';
import { OverthereError } from '@overthere/core';
import { sshFingerprint } from './host-key.js';

/** A public key as the client presented it, or as read from `authorized_keys`. */
export interface SshPublicKey {
  /** Key type, e.g. `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`. */
  type: string;
  /** The key blob in SSH wire format (what base64 in `authorized_keys` decodes to). */
  data: Buffer;
  /** `SHA256:…`, as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** The comment after the key, when read from text. */
  comment?: string;
}

const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+)$/;

/** The key type named inside an SSH wire-format key blob, or undefined when the blob is malformed. */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || blob.length < 4 + length) return undefined;
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** Build an {@link SshPublicKey} from a wire-format blob. */
export function publicKeyFromBlob(blob: Buffer, comment?: string): SshPublicKey {
  const type = keyTypeOf(blob);
  if (type === undefined) throw new OverthereError('INVALID_ARGUMENT', 'malformed public key blob');
  return {
    type,
    data: blob,
    fingerprint: sshFingerprint(blob),
    ...(comment === undefined || comment === '' ? {} : { comment }),
  };
}

/**
 * Parse `authorized_keys` (or `id_*.pub`) text: one `type base64 [comment]`
 * per line; blank lines and `#` comments are skipped. Lines with options
 * before the key type are read for the key and the options ignored.
 *
 * @throws OverthereError `INVALID_ARGUMENT` naming the first line that holds no key.
 */
export function parseAuthorizedKeys(text: string): SshPublicKey[] {
  const keys: SshPublicKey[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    const at = fields.findIndex((field) => KEY_TYPE.test(field));
    const base64 = at === -1 ? undefined : fields[at + 1];
    const blob = base64 === undefined ? undefined : Buffer.from(base64, 'base64');
    if (at === -1 || blob === undefined || keyTypeOf(blob) !== fields[at]) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `authorized keys line ${index + 1} holds no key`,
      );
    }
    keys.push(publicKeyFromBlob(blob, fields.slice(at + 2).join(' ')));
  });
  return keys;
}

/** True when `presented` is one of `authorized` (same type and blob, compared in constant time per key). */
export function publicKeyAuthorized(
  presented: SshPublicKey,
  authorized: readonly SshPublicKey[],
): boolean {
  let found = false;
  for (const key of authorized) {
    if (key.data.length === presented.data.length && timingSafeEqual(key.data, presented.data)) {
      found = true;
    }
  }
  return found;
}
