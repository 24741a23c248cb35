import { describe, expect, it } from 'vitest';
import { OverthereError } from '@overthere/core';
import { keyTypeOf, parseAuthorizedKeys, publicKeyAuthorized } from './authorized-keys.js';

const ED25519 = 'AAAAC3NzaC1lZDI1NTE5AAAAIGsJq3n0rbTj8n2R0kJ2dV1gqv0b4Vb8kqZ2s0w1uQnQ';
const OTHER = 'AAAAC3NzaC1lZDI1NTE5AAAAIBu7vG3bq6nZyV0hC1cQmJ5mR8R3r9v0wZkq3l0bGxYz';

describe('parseAuthorizedKeys', () => {
  it('reads keys with comments and options, skipping blank lines and # comments', () => {
    const keys = parseAuthorizedKeys(
      `# admins\n\nssh-ed25519 ${ED25519} alice@laptop\nno-pty,from="10.0.0.1" ssh-ed25519 ${OTHER}\r\n`,
    );
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatchObject({ type: 'ssh-ed25519', comment: 'alice@laptop' });
    expect(keys[0]!.fingerprint).toMatch(/^SHA256:/);
    expect(keys[1]!.comment).toBeUndefined();
    expect(keys[1]!.data.equals(Buffer.from(OTHER, 'base64'))).toBe(true);
  });

  it('names the first line without a key', () => {
    const error = (() => {
      try {
        parseAuthorizedKeys(`ssh-ed25519 ${ED25519}\nssh-rsa notbase64!!\n`);
      } catch (caught) {
        return caught;
      }
    })();
    expect(OverthereError.hasCode(error, 'INVALID_ARGUMENT')).toBe(true);
    expect((error as Error).message).toBe('authorized keys line 2 holds no key');
  });

  it('refuses a blob whose type does not match the named type', () => {
    expect(() => parseAuthorizedKeys(`ssh-rsa ${ED25519}`)).toThrow(/line 1/);
  });
});

describe('publicKeyAuthorized and keyTypeOf', () => {
  it('matches the same blob only', () => {
    const [alice, other] = parseAuthorizedKeys(`ssh-ed25519 ${ED25519}\nssh-ed25519 ${OTHER}`);
    expect(publicKeyAuthorized(alice!, [other!, alice!])).toBe(true);
    expect(publicKeyAuthorized(alice!, [other!])).toBe(false);
    expect(publicKeyAuthorized(alice!, [])).toBe(false);
  });

  it('reads the type from a blob and rejects malformed ones', () => {
    expect(keyTypeOf(Buffer.from(ED25519, 'base64'))).toBe('ssh-ed25519');
    expect(keyTypeOf(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(keyTypeOf(Buffer.from([0, 0, 0, 200, 1, 2]))).toBeUndefined();
  });
});
