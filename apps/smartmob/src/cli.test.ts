import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseDuration, parseSize, UsageError } from './cli.js';

describe('parseCommandLine', () => {
  it('defaults to 127.0.0.1:8080 and the XDG state dir', () => {
    const command = parseCommandLine([], { HOME: '/home/me' });
    expect(command.kind).toBe('serve');
    if (command.kind !== 'serve') return;
    expect(command.settings).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      dataDir: '/home/me/.local/state/smartmob-agent',
      token: undefined,
      insecure: false,
      logOutput: true,
    });
  });

  it('takes flags over SMARTMOB_* variables', () => {
    const command = parseCommandLine(['--port', '9000', '--restart-initial-delay', '250ms'], {
      SMARTMOB_PORT: '7000',
      SMARTMOB_HOST: '::1',
      SMARTMOB_TOKEN: 'abc',
      SMARTMOB_MAX_ARCHIVE_SIZE: '10M',
      HOME: '/h',
    });
    if (command.kind !== 'serve') throw new Error('expected serve');
    expect(command.settings).toMatchObject({ host: '::1', port: 9000, token: 'abc' });
    expect(command.settings.policy.restartInitialDelayMs).toBe(250);
    expect(command.settings.limits.maxArchiveBytes).toBe(10 * 1024 * 1024);
  });

  it('--help and --version win', () => {
    expect(parseCommandLine(['--port', '1', '--help'], {})).toEqual({ kind: 'help' });
    expect(parseCommandLine(['--version'], {})).toEqual({ kind: 'version' });
  });

  it.each([
    [['--nope']],
    [['stray']],
    [['--port', '70000']],
    [['--port', 'http']],
    [['--log-level', 'loud']],
    [['--token', 'has space']],
    [['--max-files', '0']],
  ])('refuses %j', (args) => {
    expect(() => parseCommandLine(args, {})).toThrow(UsageError);
  });
});

describe('durations and sizes', () => {
  it('reads units', () => {
    expect(parseDuration('x', '1500')).toBe(1500);
    expect(parseDuration('x', '2s')).toBe(2000);
    expect(parseDuration('x', '1.5m')).toBe(90_000);
    expect(parseSize('x', '64k')).toBe(65_536);
    expect(parseSize('x', '2MiB')).toBe(2 * 1024 * 1024);
    expect(() => parseDuration('x', 'soon')).toThrow(/want a duration/);
    expect(() => parseDuration('x', '900h')).toThrow(/too long/);
    expect(() => parseSize('x', '0')).toThrow(/want a size/);
  });
});
