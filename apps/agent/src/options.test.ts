import { describe, expect, it } from 'vitest';
import { parseAgentCommand, parseDuration, parseSize } from './options.js';

describe('parseAgentCommand', () => {
  it('defaults to loopback, port 7070 and a state dir', () => {
    const command = parseAgentCommand([], { HOME: '/home/u' });
    expect(command).toMatchObject({
      kind: 'run',
      options: { host: '127.0.0.1', port: 7070, token: undefined },
    });
  });

  it('takes flags over the environment', () => {
    const command = parseAgentCommand(['--port', '9000', '--ttl', '10m'], {
      OVERTHERE_PORT: '1',
      OVERTHERE_TOKEN: 't',
    });
    expect(command).toMatchObject({
      kind: 'run',
      options: { port: 9000, token: 't', ttlMs: 600_000 },
    });
  });

  it('rejects bad input with one-line messages', () => {
    expect(() => parseAgentCommand(['--port', 'x'], {})).toThrow(/invalid port/);
    expect(() => parseAgentCommand(['--ttl', '5 weeks'], {})).toThrow(/invalid duration/);
    expect(() => parseAgentCommand(['--tls-cert', 'a'], {})).toThrow(/go together/);
    expect(() => parseAgentCommand(['--nope'], {})).toThrow();
    expect(() => parseAgentCommand(['extra'], {})).toThrow(/unexpected argument/);
  });

  it('parses sizes', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('64M')).toBe(64 * 1024 ** 2);
    expect(parseSize('2GiB')).toBe(2 * 1024 ** 3);
    expect(() => parseSize('lots')).toThrow(/invalid size/);
  });

  it('parses durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('24h')).toBe(86_400_000);
  });
});
