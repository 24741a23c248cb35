/**
 * Small security helpers every transport and app shares, so there is one way
 * to compare a secret and one way to decide whether an address is loopback.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * Compare a presented secret with the expected one in constant time. Both are
 * hashed first, so neither the content nor the length leaks through timing.
 * An undefined or empty presented secret never matches.
 */
export function secretsEqual(presented: string | undefined, expected: string): boolean {
  if (presented === undefined || presented.length === 0) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * True when `host` only accepts connections from this machine: `localhost`,
 * 127.0.0.0/8, `::1` (and its IPv4-mapped forms). `0.0.0.0`, `::` and any
 * other name are not loopback.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost') return true;
  const version = isIP(bare);
  if (version === 4) return bare.startsWith('127.');
  if (version === 6) {
    const lower = bare.toLowerCase();
    if (lower === '::1' || lower === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    return mapped?.[1] !== undefined && mapped[1].startsWith('127.');
  }
  return false;
}
