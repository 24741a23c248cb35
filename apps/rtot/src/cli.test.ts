import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_JOB_TTL_MS,
  DEFAULT_KILL_GRACE_MS,
  UsageError,
  defaultDataDir,
  parseAddress,
  parseCommandLine,
  usage,
  type ServerSettings,
} from './cli.js';

const env = { HOME: '/home/op' };

function settings(args: string[], environment: NodeJS.ProcessEnv = env): ServerSettings {
  const command = parseCommandLine(args, environment);
  if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`);
  return command.settings;
}

describe('parseCommandLine', () => {
  it("defaults to the original's :8457 on every interface, a generated secret and ~/.local/state/rtot", () => {
    expect(settings([])).toEqual({
      address: ':8457',
      host: undefined,
      port: 8457,
      secret: undefined,
      dataDir: '/home/op/.local/state/rtot',
      jobTtlMs: DEFAULT_JOB_TTL_MS,
      killGraceMs: DEFAULT_KILL_GRACE_MS,
      bodyLimitBytes: DEFAULT_BODY_LIMIT_BYTES,
      tlsCert: undefined,
      tlsKey: undefined,
      logLevel: 'warn',
    });
  });

  it.each([
    [['-a=:9000', '-s=supersecret']],
    [['-a', ':9000', '-s', 'supersecret']],
    [['--a=:9000', '--s', 'supersecret']],
    [['--addr', ':9000', '--secret=supersecret']],
    [['-addr=:9000', '-secret', 'supersecret']],
  ])('accepts Go flag spellings %j', (args) => {
    const parsed = settings(args);
    expect(parsed.port).toBe(9000);
    expect(parsed.host).toBeUndefined();
    expect(parsed.secret).toBe('supersecret');
  });

  it('keeps "=" inside a value', () => {
    expect(settings(['-s=a=b==']).secret).toBe('a=b==');
  });

  it('takes RTOT_ADDR and RTOT_SECRET from the environment, flags winning', () => {
    const environment = { ...env, RTOT_ADDR: '127.0.0.1:7000', RTOT_SECRET: 'fromenv' };
    expect(settings([], environment)).toMatchObject({
      host: '127.0.0.1',
      port: 7000,
      secret: 'fromenv',
    });
    expect(settings(['-s', 'fromflag', '-a', ':1'], environment)).toMatchObject({
      host: undefined,
      port: 1,
      secret: 'fromflag',
    });
  });

  it('treats an empty secret as none (one is generated)', () => {
    expect(settings(['-s='], { ...env, RTOT_SECRET: 'x' }).secret).toBeUndefined();
    expect(settings([], { ...env, RTOT_SECRET: '' }).secret).toBeUndefined();
  });

  it('reads the data dir, TTL, grace, body limit, TLS and log level', () => {
    const parsed = settings([
      '--data-dir',
      'relative/dir',
      '--job-ttl=1h30m',
      '--kill-grace',
      '250ms',
      '--body-limit=4096',
      '--tls-cert',
      'c.pem',
      '--tls-key=k.pem',
      '--log-level',
      'debug',
    ]);
    expect(parsed).toMatchObject({
      dataDir: path.resolve('relative/dir'),
      jobTtlMs: 5_400_000,
      killGraceMs: 250,
      bodyLimitBytes: 4096,
      tlsCert: 'c.pem',
      tlsKey: 'k.pem',
      logLevel: 'debug',
    });
  });

  it('accepts a TTL up to the longest timer Node has', () => {
    expect(settings(['--job-ttl', '596h']).jobTtlMs).toBe(596 * 3_600_000);
  });

  it('takes the data dir and TTL from RTOT_DATA_DIR and RTOT_JOB_TTL; 0 keeps jobs', () => {
    const parsed = settings([], { ...env, RTOT_DATA_DIR: '/srv/rtot', RTOT_JOB_TTL: '0' });
    expect(parsed.dataDir).toBe('/srv/rtot');
    expect(parsed.jobTtlMs).toBe(0);
  });

  it.each([
    [['--help'], 'help'],
    [['-h'], 'help'],
    [['-v'], 'version'],
    [['--version=true'], 'version'],
    [['-s', 'x', '-h'], 'help'],
  ])('%j asks for %s', (args, kind) => {
    expect(parseCommandLine(args, env).kind).toBe(kind);
  });

  it('lets -v=false switch a boolean off', () => {
    expect(parseCommandLine(['-v', '-v=false'], env).kind).toBe('serve');
  });

  it.each([
    [['-x'], /flag provided but not defined: -x/],
    [['-a'], /flag needs an argument: -a/],
    [['---a=1'], /bad flag syntax/],
    [['serve'], /unexpected argument: "serve"/],
    [['-s', 'x', 'extra'], /unexpected argument/],
    [['--', 'x'], /unexpected argument/],
    [['-a', '8457'], /invalid address "8457"/],
    [['-a', ':99999'], /invalid port/],
    [['--job-ttl', 'forever'], /--job-ttl: invalid duration/],
    [['--kill-grace', '5'], /--kill-grace: invalid duration/],
    [['--job-ttl', '597h'], /--job-ttl: 597h is too long/],
    [['--body-limit', '1k'], /--body-limit/],
    [['--tls-cert', 'c.pem'], /--tls-cert and --tls-key go together/],
    [['--log-level', 'loud'], /--log-level/],
    [['-v=maybe'], /invalid boolean value/],
  ])('rejects %j', (args, message) => {
    expect(() => parseCommandLine(args, env)).toThrow(UsageError);
    expect(() => parseCommandLine(args, env)).toThrow(message);
  });
});

describe('parseAddress', () => {
  it.each([
    [':8457', undefined, 8457],
    ['127.0.0.1:0', '127.0.0.1', 0],
    ['localhost:80', 'localhost', 80],
    ['[::1]:8457', '::1', 8457],
    ['[::]:1', '::', 1],
    ['0.0.0.0:8457', '0.0.0.0', 8457],
  ])('%s is host %s port %d', (address, host, port) => {
    expect(parseAddress(address)).toEqual({ host, port });
  });

  it.each(['', '8457', '::1:8457', 'host:', 'host:port', '[::1]8457'])('rejects %j', (text) => {
    expect(() => parseAddress(text)).toThrow(UsageError);
  });
});

describe('defaultDataDir', () => {
  it('uses $XDG_STATE_HOME when it is absolute', () => {
    expect(defaultDataDir({ HOME: '/h', XDG_STATE_HOME: '/state' })).toBe('/state/rtot');
  });

  it('falls back to ~/.local/state/rtot (a relative XDG_STATE_HOME is ignored, per the spec)', () => {
    expect(defaultDataDir({ HOME: '/h', XDG_STATE_HOME: 'rel' })).toBe('/h/.local/state/rtot');
    expect(defaultDataDir({ HOME: '/h' })).toBe('/h/.local/state/rtot');
  });
});

describe('usage', () => {
  it('lists every flag with its environment variable', () => {
    const text = usage();
    for (const needle of [
      '-a, --addr ADDR',
      '[RTOT_ADDR]',
      '-s, --secret SECRET',
      '[RTOT_SECRET]',
      '--data-dir DIR',
      '--job-ttl DURATION',
      '--tls-cert FILE',
      '-h, --help',
      '-v, --version',
    ]) {
      expect(text).toContain(needle);
    }
  });
});
