import { describe, expect, it } from 'vitest';
import { UsageError } from './flags.js';
import { commandHelp, parseLevityCommandLine, rootHelp } from './levity-cli.js';

const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseLevityCommandLine(args, env);

function usageError(args: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parse(args, env);
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

describe('levity command line', () => {
  it('prints the root help for no command, `help` and --help', () => {
    for (const args of [[], ['help'], ['--help'], ['-h'], ['-a', 'host:1']]) {
      expect(parse(args)).toEqual({ kind: 'help', text: rootHelp() });
    }
    expect(rootHelp()).toContain('Usage:\n  levity [command]\n');
    expect(rootHelp()).toMatch(/-a, --address string +The server address and port/);
    expect(rootHelp()).toMatch(/-t, --timeout duration +.*\(default 5s\)/);
  });

  it('prints a command’s help for `help CMD` and `CMD --help`', () => {
    for (const name of ['start', 'query', 'signal', 'logs', 'help']) {
      expect(parse(['help', name])).toEqual({ kind: 'help', text: commandHelp(name) });
    }
    expect(parse(['start', '--help'])).toEqual({ kind: 'help', text: commandHelp('start') });
    expect(parse(['-a', 'h:1', 'logs', '-h'])).toEqual({ kind: 'help', text: commandHelp('logs') });
    expect(commandHelp('start')).toContain('Usage:\n  levity start command [arg1...] [flags]');
    expect(commandHelp('start')).toMatch(/-D, --define stringArray/);
    expect(usageError(['help', 'nope'])).toBe('unknown help topic [`nope`]');
  });

  it('parses start with its flags; everything from the command on goes to the task', () => {
    const expected = {
      kind: 'start',
      binary: 'ls',
      args: ['-la', '-a', 'x', '--', '/home'],
      workingDir: undefined,
      environment: {},
    };
    expect(
      parse(['-a', 'h:1', 'start', '--', 'ls', '-la', '-a', 'x', '--', '/home']),
    ).toMatchObject(expected);
    expect(parse(['-a', 'h:1', 'start', 'ls', '-la', '-a', 'x', '--', '/home'])).toMatchObject(
      expected,
    );
    expect(
      parse([
        'start',
        '-a',
        'h:1',
        '-d',
        '/tmp',
        '-D',
        'A=1',
        '-DB=2',
        '--define=C=x=y',
        '--define',
        'E',
        '-D',
        'A=again',
        'sh',
        '-c',
        'echo $A',
      ]),
    ).toMatchObject({
      kind: 'start',
      binary: 'sh',
      args: ['-c', 'echo $A'],
      workingDir: '/tmp',
      environment: { A: 'again', B: '2', C: 'x=y', E: '' },
      connection: {
        address: 'h:1',
        timeoutMs: 5_000,
        token: undefined,
        tls: undefined,
        json: false,
      },
    });
  });

  it('takes global flags before or after the command, pflag style', () => {
    const connection = { address: 'h:1', timeoutMs: 500 };
    for (const args of [
      ['-a', 'h:1', '-t', '500ms', 'query', 'ID'],
      ['query', 'ID', '-a', 'h:1', '--timeout=500ms'],
      ['-a=h:1', '-t500ms', 'query', 'ID'],
      ['--address', 'h:1', 'query', '-t', '0.5s', 'ID'],
      ['-a', 'h:1', 'query', '-t', '500ms', '--', 'ID'],
    ]) {
      expect(parse(args)).toMatchObject({ kind: 'query', id: 'ID', connection });
    }
    expect(parse(['-a', 'h:1', 'signal', 'ID'])).toMatchObject({ kind: 'signal', id: 'ID' });
    expect(parse(['-a', 'h:1', 'logs', 'ID'])).toMatchObject({
      kind: 'logs',
      id: 'ID',
      follow: false,
    });
    expect(parse(['-a', 'h:1', 'logs', '-f', 'ID', '--json'])).toMatchObject({
      kind: 'logs',
      follow: true,
      connection: { json: true },
    });
    expect(parse(['-a', 'h:1', 'logs', '--follow=false', 'ID'])).toMatchObject({ follow: false });
  });

  it('reads the token from --token, else LEVITY_TOKEN; TLS from --tls, --ca, --cert/--key', () => {
    expect(parse(['-a', 'h:1', 'query', 'x'], { LEVITY_TOKEN: 'env' })).toMatchObject({
      connection: { token: 'env', tls: undefined },
    });
    expect(
      parse(['-a', 'h:1', '--token', 'flag', 'query', 'x'], { LEVITY_TOKEN: 'env' }),
    ).toMatchObject({
      connection: { token: 'flag' },
    });
    expect(parse(['-a', 'h:1', '--tls', 'query', 'x'])).toMatchObject({ connection: { tls: {} } });
    expect(parse(['-a', 'h:1', '--ca', 'ca.pem', 'query', 'x'])).toMatchObject({
      connection: { tls: { ca: 'ca.pem' } },
    });
    expect(parse(['-a', 'h:1', '--cert', 'c.pem', '--key', 'k.pem', 'query', 'x'])).toMatchObject({
      connection: { tls: { cert: 'c.pem', key: 'k.pem' } },
    });
    expect(parse(['-a', 'h:1', '--insecure', 'query', 'x'])).toMatchObject({
      connection: { tls: undefined },
    });
  });

  it('refuses what the original refused, with cobra’s words', () => {
    expect(usageError(['query', 'x'])).toBe('required flag(s) "address" not set');
    expect(usageError(['-a', 'h:1', 'query'])).toBe('accepts 1 arg(s), received 0');
    expect(usageError(['-a', 'h:1', 'signal', 'a', 'b'])).toBe('accepts 1 arg(s), received 2');
    expect(usageError(['-a', 'h:1', 'start'])).toBe('requires at least 1 arg(s), only received 0');
    expect(usageError(['-a', 'h:1', 'bogus'])).toBe('unknown command "bogus" for "levity"');
    expect(usageError(['-x'])).toBe("unknown shorthand flag: 'x' in -x");
    expect(usageError(['--bogus'])).toBe('unknown flag: --bogus');
    expect(usageError(['-a'])).toBe("flag needs an argument: 'a' in -a");
    expect(usageError(['--address'])).toBe('flag needs an argument: --address');
    expect(usageError(['-a', 'h:1', '-t', '5', 'query', 'x'])).toBe(
      'invalid argument "5" for "-t, --timeout" flag: time: missing unit in duration "5"',
    );
    expect(usageError(['-a', 'h:1', '-t', 'soon', 'query', 'x'])).toBe(
      'invalid argument "soon" for "-t, --timeout" flag: time: invalid duration "soon"',
    );
    // A flag of another command.
    expect(usageError(['-a', 'h:1', 'query', '-d', '/', 'x'])).toBe(
      "unknown shorthand flag: 'd' in -d",
    );
  });

  it('refuses contradictory or incomplete extras', () => {
    expect(usageError(['-a', 'h:1', '--insecure', '--ca', 'x', 'query', 'x'])).toMatch(
      /--insecure cannot/,
    );
    expect(usageError(['-a', 'h:1', '--cert', 'c', 'query', 'x'])).toBe(
      '--cert and --key go together',
    );
    expect(usageError(['-a', 'h:1', 'start', '-D', '=x', 'ls'])).toMatch(/want NAME=VALUE/);
  });
});
