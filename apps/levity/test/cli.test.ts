/**
 * The `levity` CLI as a user runs it: what it prints where, and its exit
 * codes, in the original's format and with `--json`.
 */
import { realpath } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { handle, levity, useLevityd, UUID, waitForState } from './helpers.js';

const fixture = useLevityd({ tempPrefix: 'levity-cli-', args: () => ['--grace', '1s'] });

/** One line on stderr, nothing on stdout, exit 1. */
function expectFailure(
  result: { code: number | null; stdout: string; stderr: string },
  pattern: RegExp,
) {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^[^\n]+\n$/);
  expect(result.stderr).toMatch(pattern);
}

describe.concurrent('levity CLI', () => {
  it('prints help and exits 0: bare, `help`, `help start`, `--help`', async () => {
    // (`help` and `start --help` print the same texts: see levity-cli.test.ts.)
    const [bare, helpStart] = await Promise.all([levity([]), levity(['help', 'start'])]);
    for (const result of [bare, helpStart]) {
      expect(result).toMatchObject({ code: 0, stderr: '' });
    }
    expect(bare.stdout).toContain('Usage:\n  levity [command]');
    expect(bare.stdout).toMatch(
      /Available Commands:\n {2}help .*\n {2}logs .*\n {2}query .*\n {2}signal .*\n {2}start /,
    );
    expect(helpStart.stdout).toContain('Usage:\n  levity start command [arg1...] [flags]');
  });

  it('fails with one line and exit 1 for usage errors', async () => {
    // (Every message is in levity-cli.test.ts; here: how the CLI reports them.)
    const [noAddress, badTimeout] = await Promise.all([
      levity(['query', 'x']),
      levity(['-a', fixture.daemon.address, '-t', '5', 'query', 'x']),
    ]);
    expectFailure(
      noAddress,
      /^levity: required flag\(s\) "address" not set \(see 'levity --help'\)$/m,
    );
    expectFailure(badTimeout, /missing unit in duration "5"/);
  });

  it('starts with -d and -D, prints the state and exit code, splits the logs', async () => {
    const started = await levity([
      '-a',
      fixture.daemon.address,
      'start',
      '-d',
      fixture.temp.dir,
      '-D',
      'GREETING=hello there',
      '-DEMPTY',
      'sh',
      '-c',
      'echo "$GREETING${EMPTY-unset}"; pwd; echo to-stderr >&2; exit 3',
    ]);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    const id = started.stdout.trim();
    expect(id).toMatch(UUID);
    await waitForState(fixture.client, id, ['Finished']);

    expect(await levity(['-a', fixture.daemon.address, 'query', id])).toMatchObject({
      code: 0,
      stdout: 'Finished\n3\n',
      stderr: '',
    });
    expect(await levity(['-a', fixture.daemon.address, 'logs', id])).toMatchObject({
      code: 0,
      stdout: `hello there\n${await realpath(fixture.temp.dir)}\n`,
      stderr: 'to-stderr\n',
    });
  });

  it('passes the task’s own flags through, with or without --', async () => {
    const results = await Promise.all([
      levity(['-a', fixture.daemon.address, 'start', '--', 'printf', '%s|', '-a', '-la', '--x']),
      levity(['-a', fixture.daemon.address, 'start', 'printf', '%s|', '-a', '-la', '--x']),
    ]);
    for (const started of results) {
      expect(started.code).toBe(0);
      const id = started.stdout.trim();
      await waitForState(fixture.client, id, ['Finished']);
      expect((await fixture.client.fetchLogs(handle(id))).stdout?.toString()).toBe('-a|-la|--x|');
    }
  });

  it('prints nothing for signal', async () => {
    const id = await fixture.start(['sleep', '30']);
    expect(await levity(['-a', fixture.daemon.address, 'signal', id])).toMatchObject({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect(await waitForState(fixture.client, id, ['Finished'])).toEqual({
      status_code: 'Finished',
      exit_code: -1,
    });
  });

  it('writes the task’s bytes as they are', async () => {
    const id = await fixture.start(['printf', '\\000\\377\\n\\303']);
    await waitForState(fixture.client, id, ['Finished']);
    const logs = await levity(['-a', fixture.daemon.address, 'logs', id]);
    expect(logs.stdoutBytes).toEqual(Buffer.from([0, 0xff, 0x0a, 0xc3]));
  });

  it('prints JSON with --json', async () => {
    const started = await levity([
      '--json',
      '-a',
      fixture.daemon.address,
      'start',
      'sh',
      '-c',
      'echo out; echo err >&2; exit 4',
    ]);
    expect(started.code).toBe(0);
    const { id } = JSON.parse(started.stdout) as { id: string };
    expect(id).toMatch(UUID);
    await waitForState(fixture.client, id, ['Finished']);

    const query = await levity(['-a', fixture.daemon.address, 'query', '--json', id]);
    expect(JSON.parse(query.stdout)).toEqual({ state: 'Finished', exit_code: 4 });
    const logs = await levity(['-a', fixture.daemon.address, 'logs', '--json', id]);
    expect(JSON.parse(logs.stdout)).toEqual({ stdout: 'out\n', stderr: 'err\n' });
    expect(logs.stderr).toBe('');
    const signal = await levity(['-a', fixture.daemon.address, 'signal', '--json', id]);
    expect(JSON.parse(signal.stdout)).toEqual({ id });

    const binaryId = await fixture.start(['printf', '\\377']);
    await waitForState(fixture.client, binaryId, ['Finished']);
    const binaryLogs = await levity(['-a', fixture.daemon.address, 'logs', '--json', binaryId]);
    expect(JSON.parse(binaryLogs.stdout)).toEqual({ stdout_base64: '/w==', stderr: '' });

    const missing = await levity(['--json', '-a', fixture.daemon.address, 'query', 'nope']);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr)).toEqual({
      error: {
        code: 'Unknown',
        message: 'GRPC request failed: rpc error: code = Unknown desc = No such task: nope',
      },
    });
  });
});
