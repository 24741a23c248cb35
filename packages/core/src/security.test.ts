import { describe, expect, it } from 'vitest';
import { isLoopbackHost, secretsEqual } from './security.js';

describe('secretsEqual', () => {
  it('matches only the exact secret', () => {
    expect(secretsEqual('s3cret', 's3cret')).toBe(true);
    expect(secretsEqual('s3cret ', 's3cret')).toBe(false);
    expect(secretsEqual('S3cret', 's3cret')).toBe(false);
    expect(secretsEqual('', '')).toBe(false);
    expect(secretsEqual(undefined, 's3cret')).toBe(false);
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['', false],
    ['10.0.0.1', false],
    ['example.com', false],
    ['::ffff:10.0.0.1', false],
  ])('%s → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});
