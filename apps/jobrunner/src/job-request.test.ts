import { describe, expect, it } from 'vitest';
import { MAX_COMMANDS, parseJobRequest, parseJobRequestBody } from './job-request.js';

describe('parseJobRequest', () => {
  it('turns the original body into a one-command job', () => {
    expect(parseJobRequest({ CommandLine: 'echo hi', Environment: { A: '1' } })).toEqual({
      commands: [{ commandLine: 'echo hi', environment: { A: '1' } }],
    });
  });

  it('matches field names case-insensitively and treats null as absent, as Go did', () => {
    expect(
      parseJobRequest({ commandline: 'true', ENVIRONMENT: null, workingdirectory: null }),
    ).toEqual({ commands: [{ commandLine: 'true', environment: {} }] });
  });

  it('applies job-wide Environment and WorkingDirectory to every command of Commands', () => {
    const request = parseJobRequest({
      Environment: { A: 'a', B: 'b' },
      WorkingDirectory: '/tmp',
      Commands: [
        { CommandLine: 'one' },
        { CommandLine: 'two', Environment: { B: 'B' }, WorkingDirectory: '/' },
        { CommandLine: 'three', Container: { Image: 'debian:12' } },
      ],
    });
    expect(request.commands).toEqual([
      { commandLine: 'one', environment: { A: 'a', B: 'b' }, workingDirectory: '/tmp' },
      { commandLine: 'two', environment: { A: 'a', B: 'B' }, workingDirectory: '/' },
      {
        commandLine: 'three',
        environment: { A: 'a', B: 'b' },
        workingDirectory: '/tmp',
        container: { image: 'debian:12' },
      },
    ]);
  });

  it('keeps a variable called __proto__ as a variable', () => {
    const request = parseJobRequestBody('{"CommandLine":"true","Environment":{"__proto__":"x"}}');
    const environment = request.commands[0]!.environment;
    expect(Object.getPrototypeOf(environment)).toBe(Object.prototype);
    expect(Object.entries(environment)).toEqual([['__proto__', 'x']]);
  });

  it.each([
    [{ CommandLine: 'a\0b' }, /NUL/],
    [{ CommandLine: 'true', Environment: { A: 'a\0' } }, /NUL/],
    [{ CommandLine: 'true', Environment: { '': 'x' } }, /empty variable name/],
    [{ CommandLine: 'true', WorkingDirectory: '' }, /WorkingDirectory must not be empty/],
    [
      { Commands: [{ CommandLine: 'x' }], Container: { Image: 'a' } },
      /Container goes on each command/,
    ],
    [
      { Commands: Array.from({ length: MAX_COMMANDS + 1 }, () => ({ CommandLine: 'x' })) },
      /more than/,
    ],
    [{ CommandLine: 'true', Container: 'debian' }, /Container must be a JSON object/],
  ])('rejects %j', (body, message) => {
    expect(() => parseJobRequest(body)).toThrow(message);
  });

  it('rejects bodies that are not JSON with INVALID_ARGUMENT', () => {
    let thrown: unknown;
    try {
      parseJobRequestBody('CommandLine=echo');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'INVALID_ARGUMENT', message: /not valid JSON/ });
    expect(() => parseJobRequestBody(undefined)).toThrow(/empty/);
  });
});
