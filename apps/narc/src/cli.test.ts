import { describe, expect, it } from 'vitest';
import { DEFAULT_NATS_URL, DEFAULT_SSH_PORT, parseCommandLine, usage, UsageError } from './cli.js';

const noConfig = (file: string): string => {
  throw new Error(`unexpected read of ${file}`);
};

function settings(argv: string[], env: NodeJS.ProcessEnv = {}, config?: string) {
  const command = parseCommandLine(argv, { HOME: '/home/u', ...env }, (file) =>
    config === undefined ? noConfig(file) : config,
  );
  if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`);
  return command.settings;
}

describe('narc command line', () => {
  it('has defaults', () => {
    const result = settings([]);
    expect(result).toMatchObject({
      natsServers: [DEFAULT_NATS_URL],
      sshHost: '127.0.0.1',
      sshPort: DEFAULT_SSH_PORT,
      dataDir: '/home/u/.local/state/narc',
      agentId: undefined,
      image: 'busybox:latest',
      shell: ['/bin/sh'],
      advertiseIntervalMs: 10_000,
      pool: 'narc',
      logLevel: 'info',
    });
  });

  it('takes flags over environment over the config file', () => {
    const config = JSON.stringify({
      nats: ['nats://a:4222', 'nats://b:4222'],
      sshPort: 2000,
      image: 'from-file',
      memoryMegabytes: 512,
    });
    const result = settings(
      ['--ssh-port', '3000', '--agent-id=flag-agent'],
      { NARC_CONFIG: '/etc/narc.json', NARC_SSH_PORT: '2500', NARC_IMAGE: 'from-env' },
      config,
    );
    expect(result).toMatchObject({
      natsServers: ['nats://a:4222', 'nats://b:4222'],
      sshPort: 3000,
      image: 'from-env',
      agentId: 'flag-agent',
      memoryMegabytes: 512,
    });
    expect(settings([], { NARC_NATS_URL: 'nats://x:1, nats://y:2' }).natsServers).toEqual([
      'nats://x:1',
      'nats://y:2',
    ]);
  });

  it('answers --help and --version', () => {
    expect(parseCommandLine(['--help'], {}, noConfig)).toEqual({ kind: 'help' });
    expect(parseCommandLine(['--version'], {}, noConfig)).toEqual({ kind: 'version' });
    expect(usage()).toContain('NARC_SSH_PORT');
  });

  it.each([
    [['--bogus'], {}, /unknown argument/],
    [['--ssh-port'], {}, /needs a value/],
    [['--ssh-port', 'x'], {}, /whole number/],
    [['--ssh-port', '70000'], {}, /65535/],
    [[], { NARC_MEMORY_MB: '0' }, /at least 1/],
    [[], { NARC_ADVERTISE_INTERVAL_MS: '5' }, /at least 100/],
    [[], { NARC_LOG_LEVEL: 'loud' }, /one of/],
    [['--agent-id', 'a b'], {}, /agentId/],
    [['--pool', 'a.b'], {}, /pool/],
  ])('refuses %j %j', (argv, env, message) => {
    expect(() => settings(argv, env)).toThrow(UsageError);
    expect(() => settings(argv, env)).toThrow(message);
  });

  it('refuses a config file that is not JSON, or has unknown keys', () => {
    expect(() => settings(['--config', 'c.json'], {}, '{')).toThrow(/config file c\.json/);
    expect(() => settings(['--config', 'c.json'], {}, '{"sshPrt": 1}')).toThrow(/unknown setting/);
    expect(() => settings(['--config', 'c.json'], {}, '{"sshPort": "x"}')).toThrow(/whole number/);
  });
});
