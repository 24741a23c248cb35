import { describe, expect, it } from 'vitest';
import { UsageError } from './flags.js';
import { DEFAULT_GRACE_MS, DEFAULT_TASK_TTL_MS, parseLevitydCommandLine } from './levityd-cli.js';

const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseLevitydCommandLine(args, env);

function usageError(args: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parse(args, env);
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

describe('levityd command line', () => {
  it('takes the address as its one argument, like the original', () => {
    expect(parse(['127.0.0.1:4321'])).toEqual({
      kind: 'serve',
      settings: {
        address: '127.0.0.1:4321',
        token: undefined,
        tls: undefined,
        dataDir: undefined,
        graceMs: DEFAULT_GRACE_MS,
        taskTtlMs: DEFAULT_TASK_TTL_MS,
        logLevel: 'warn',
      },
    });
    expect(DEFAULT_GRACE_MS).toBe(5_000);
    expect(usageError([])).toBe('accepts 1 arg(s), received 0');
    expect(usageError(['a:1', 'b:2'])).toBe('accepts 1 arg(s), received 2');
    expect(usageError(['4321'])).toMatch(/invalid address "4321"/);
    expect(parse(['--help'])).toEqual({ kind: 'help' });
    expect(parse(['--version'])).toEqual({ kind: 'version' });
  });

  it('listens on loopback without a token, beyond it only with auth or --insecure', () => {
    for (const address of ['127.0.0.1:1', 'localhost:1', '[::1]:1', '127.3.4.5:0']) {
      expect(parse([address]).kind).toBe('serve');
    }
    for (const address of [
      '0.0.0.0:4321',
      ':4321',
      '[::]:4321',
      '192.168.1.2:4321',
      'example.com:1',
    ]) {
      expect(usageError([address])).toMatch(/^refusing to listen on .* without authentication/);
      expect(parse([address, '--insecure']).kind).toBe('serve');
      expect(parse([address, '--token', 't'])).toMatchObject({ settings: { token: 't' } });
      expect(parse([address], { LEVITY_TOKEN: 'e' })).toMatchObject({ settings: { token: 'e' } });
      expect(
        parse([address, '--tls-cert', 'c', '--tls-key', 'k', '--tls-client-ca', 'ca']).kind,
      ).toBe('serve');
    }
    expect(usageError([':4321'])).toMatch(/:4321 \(every interface\)/);
  });

  it('reads TLS files, with the original’s -c/--certificate and -k/--key too', () => {
    const tls = { cert: 'c.pem', key: 'k.pem', clientCa: undefined };
    expect(parse(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', 'localhost:1'])).toMatchObject({
      settings: { tls },
    });
    expect(parse(['-c', 'c.pem', '-k', 'k.pem', 'localhost:1'])).toMatchObject({
      settings: { tls },
    });
    expect(parse(['--certificate=c.pem', '--key', 'k.pem', 'localhost:1'])).toMatchObject({
      settings: { tls },
    });
    expect(usageError(['-c', 'c.pem', 'localhost:1'])).toBe('--tls-cert and --tls-key go together');
    expect(usageError(['--tls-client-ca', 'ca.pem', 'localhost:1'])).toMatch(/needs --tls-cert/);
  });

  it('parses durations, the data dir and the log level', () => {
    expect(
      parse([
        '--grace',
        '1.5s',
        '--task-ttl',
        '0',
        '--data-dir',
        'rel/dir',
        '--log-level',
        'debug',
        'localhost:1',
      ]),
    ).toMatchObject({
      settings: {
        graceMs: 1_500,
        taskTtlMs: 0,
        dataDir: `${process.cwd()}/rel/dir`,
        logLevel: 'debug',
      },
    });
    expect(usageError(['--grace', '5', 'localhost:1'])).toMatch(/missing unit/);
    expect(usageError(['--grace', '-1s', 'localhost:1'])).toMatch(/want 0 to 596h/);
    expect(usageError(['--log-level', 'loud', 'localhost:1'])).toMatch(/want one of/);
    expect(usageError(['--nope', 'localhost:1'])).toBe('unknown flag: --nope');
  });
});
