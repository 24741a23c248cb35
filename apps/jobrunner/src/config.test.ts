import { describe, expect, it } from 'vitest';
import { configFromEnv, DEFAULT_JOB_TTL_MS, DEFAULT_KILL_GRACE_MS } from './config.js';

describe('configFromEnv', () => {
  it('defaults to port 8080 on 127.0.0.1 without auth', () => {
    expect(configFromEnv({})).toEqual({
      host: '127.0.0.1',
      port: 8080,
      token: undefined,
      killGraceMs: DEFAULT_KILL_GRACE_MS,
      jobTtlMs: DEFAULT_JOB_TTL_MS,
      logLevel: 'warn',
    });
  });

  it('reads an empty JOBRUNNER_HOSTNAME as all interfaces only when a token is set', () => {
    expect(configFromEnv({ JOBRUNNER_HOSTNAME: '' }).host).toBe('127.0.0.1');
    expect(configFromEnv({ JOBRUNNER_HOSTNAME: '', JOBRUNNER_TOKEN: 'abc' }).host).toBe('0.0.0.0');
    expect(configFromEnv({ JOBRUNNER_HOSTNAME: '::1' }).host).toBe('::1');
    expect(configFromEnv({ JOBRUNNER_HOSTNAME: 'localhost' }).host).toBe('localhost');
  });

  it('refuses a non-loopback host without a token', () => {
    expect(() => configFromEnv({ JOBRUNNER_HOSTNAME: '0.0.0.0' })).toThrow(/JOBRUNNER_TOKEN/);
    expect(() => configFromEnv({ JOBRUNNER_HOSTNAME: 'example.com', JOBRUNNER_TOKEN: '' })).toThrow(
      /refusing/,
    );
    expect(configFromEnv({ JOBRUNNER_HOSTNAME: '0.0.0.0', JOBRUNNER_TOKEN: 't' }).token).toBe('t');
  });

  it.each([
    [{ JOBRUNNER_PORT: '65536' }, /JOBRUNNER_PORT/],
    [{ JOBRUNNER_PORT: '-1' }, /JOBRUNNER_PORT/],
    [{ JOBRUNNER_PORT: '80.5' }, /JOBRUNNER_PORT/],
    [{ JOBRUNNER_KILL_GRACE_MS: 'soon' }, /JOBRUNNER_KILL_GRACE_MS/],
    [{ JOBRUNNER_TOKEN: 'has space' }, /JOBRUNNER_TOKEN/],
    [{ JOBRUNNER_LOG_LEVEL: 'loud' }, /JOBRUNNER_LOG_LEVEL/],
  ])('rejects %j', (env, message) => {
    expect(() => configFromEnv(env)).toThrow(message);
  });

  it('reads numbers', () => {
    expect(
      configFromEnv({
        JOBRUNNER_PORT: '0',
        JOBRUNNER_KILL_GRACE_MS: '250',
        JOBRUNNER_JOB_TTL_MS: '0',
      }),
    ).toMatchObject({ port: 0, killGraceMs: 250, jobTtlMs: 0 });
  });
});
