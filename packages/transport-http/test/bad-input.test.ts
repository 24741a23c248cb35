// Bad input on every route, sent with curl: each is refused with the right
// status and code, and a task that was running all along is untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '@overthere/core';
import { curl, json, startAgent, type TestAgent } from './helpers.js';

let t: TestAgent;
/** Runs all along; every bad request must leave it alone. */
let canary: TaskInfo;
/** Finished: the target of requests that need a task. */
let target: TaskInfo;

beforeAll(async () => {
  t = await startAgent();
  canary = await t.client.create({ command: ['cat'], stdin: 'pipe' });
  await t.client.writeStdin(canary.id, 'before\n');
  target = await t.client.create({ command: ['sleep', '30'] });
});
afterAll(async () => {
  await t.close();
});

type Case = [name: string, args: string[], status: number, code: string];

const jsonPost = (path: string, body: string): string[] => [
  '-X',
  'POST',
  '-H',
  'Content-Type: application/json',
  '--data-binary',
  body,
  path,
];

async function expectRefused(cases: readonly Case[], auth: string[] = t.auth): Promise<void> {
  for (const [name, args, status, code] of cases) {
    const last = args.length - 1;
    const withUrl = args.map((arg, index) => (index === last ? `${t.url}${arg}` : arg));
    const result = await curl([...auth, ...withUrl]);
    expect(result.status, `${name}: ${result.body.toString()}`).toBe(status);
    const body = json(result);
    expect(body.code, name).toBe(code);
    expect(typeof body.message, name).toBe('string');
    expect(Object.keys(body).sort(), name).toEqual(['code', 'message']);
  }
}

describe('malformed bodies', () => {
  it('malformed JSON is 400 INVALID_ARGUMENT on every JSON route', async () => {
    const id = target.id;
    await expectRefused([
      ['create', jsonPost('/v1/tasks', '{"command": ['), 400, 'INVALID_ARGUMENT'],
      ['signal', jsonPost(`/v1/tasks/${id}/signal`, '{signal:SIGTERM}'), 400, 'INVALID_ARGUMENT'],
      ['stop', jsonPost(`/v1/tasks/${id}/stop`, '{"wait": tru'), 400, 'INVALID_ARGUMENT'],
      ['resize', jsonPost(`/v1/tasks/${id}/resize`, 'cols=80'), 400, 'INVALID_ARGUMENT'],
      ['empty JSON body', jsonPost('/v1/tasks', ''), 400, 'INVALID_ARGUMENT'],
      ['array body', jsonPost('/v1/tasks', '[]'), 400, 'INVALID_ARGUMENT'],
      ['null body', jsonPost('/v1/tasks', 'null'), 400, 'INVALID_ARGUMENT'],
      [
        'prototype poisoning',
        jsonPost('/v1/tasks', '{"command":["true"],"__proto__":{"x":1}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['form-encoded body', ['--data', 'command=true', '/v1/tasks'], 400, 'INVALID_ARGUMENT'],
      [
        'text body',
        ['-H', 'Content-Type: text/plain', '--data', '{"command":["true"]}', '/v1/tasks'],
        400,
        'INVALID_ARGUMENT',
      ],
    ]);
  });

  it('wrong types are 400 INVALID_ARGUMENT, naming the field', async () => {
    const id = target.id;
    const cases: Case[] = [
      [
        'command as a string',
        jsonPost('/v1/tasks', '{"command":"echo hi"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['command of numbers', jsonPost('/v1/tasks', '{"command":[1]}'), 400, 'INVALID_ARGUMENT'],
      [
        'both command and script',
        jsonPost('/v1/tasks', '{"command":["true"],"script":"true"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['neither', jsonPost('/v1/tasks', '{}'), 400, 'INVALID_ARGUMENT'],
      [
        'env value',
        jsonPost('/v1/tasks', '{"command":["true"],"env":{"A":1}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'stdin value',
        jsonPost('/v1/tasks', '{"command":["true"],"stdin":"yes"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'tty size',
        jsonPost('/v1/tasks', '{"command":["true"],"tty":{"cols":0,"rows":1}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'timeout',
        jsonPost('/v1/tasks', '{"command":["true"],"timeoutMs":-1}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'restart mode',
        jsonPost('/v1/tasks', '{"command":["true"],"restart":{"mode":"sometimes"}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'kill signal',
        jsonPost('/v1/tasks', '{"command":["true"],"kill":{"signal":"SIGNOPE"}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'bad id',
        jsonPost('/v1/tasks', '{"command":["true"],"id":"../x"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'unknown runtime',
        jsonPost('/v1/tasks', '{"command":["true"],"runtime":"docker"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'signal as a number',
        jsonPost(`/v1/tasks/${id}/signal`, '{"signal":15}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'unknown signal',
        jsonPost(`/v1/tasks/${id}/signal`, '{"signal":"SIGNOPE"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['missing signal', jsonPost(`/v1/tasks/${id}/signal`, '{}'), 400, 'INVALID_ARGUMENT'],
      [
        'stop grace',
        jsonPost(`/v1/tasks/${id}/stop`, '{"graceMs":"soon"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['stop wait', jsonPost(`/v1/tasks/${id}/stop`, '{"wait":"yes"}'), 400, 'INVALID_ARGUMENT'],
      [
        'stop signal',
        jsonPost(`/v1/tasks/${id}/stop`, '{"signal":"SIGNOPE"}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'resize cols',
        jsonPost(`/v1/tasks/${id}/resize`, '{"cols":"80","rows":24}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'resize missing rows',
        jsonPost(`/v1/tasks/${id}/resize`, '{"cols":80}'),
        400,
        'INVALID_ARGUMENT',
      ],
    ];
    await expectRefused(cases);
    const result = await curl([
      ...t.auth,
      ...jsonPost(`${t.url}/v1/tasks`, '{"command":["true"],"tty":{"cols":"80","rows":24}}'),
    ]);
    expect(json(result).message).toContain('tty.cols');
  });

  it('unknown fields are 400 INVALID_ARGUMENT, at any depth', async () => {
    const id = target.id;
    await expectRefused([
      [
        'create',
        jsonPost('/v1/tasks', '{"command":["true"],"comand":["x"]}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'nested',
        jsonPost('/v1/tasks', '{"command":["true"],"limits":{"memory":1}}'),
        400,
        'INVALID_ARGUMENT',
      ],
      [
        'signal',
        jsonPost(`/v1/tasks/${id}/signal`, '{"signal":"SIGTERM","group":true}'),
        400,
        'INVALID_ARGUMENT',
      ],
      ['stop', jsonPost(`/v1/tasks/${id}/stop`, '{"force":true}'), 400, 'INVALID_ARGUMENT'],
      [
        'resize',
        jsonPost(`/v1/tasks/${id}/resize`, '{"cols":80,"rows":24,"x":1}'),
        400,
        'INVALID_ARGUMENT',
      ],
    ]);
    const result = await curl([
      ...t.auth,
      ...jsonPost(`${t.url}/v1/tasks`, '{"command":["true"],"comand":["x"]}'),
    ]);
    expect(json(result).message).toContain('comand');
  });

  it('a body over the limit is 413 PAYLOAD_TOO_LARGE', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 'a');
    const create = await curl(
      [
        ...t.auth,
        '-H',
        'Content-Type: application/json',
        '--data-binary',
        '@-',
        `${t.url}/v1/tasks`,
      ],
      `{"script":"${big.toString()}"}`,
    );
    expect(create.status).toBe(413);
    expect(json(create).code).toBe('PAYLOAD_TOO_LARGE');
    const stdin = await curl(
      [...t.auth, '--data-binary', '@-', `${t.url}/v1/tasks/${canary.id}/stdin`],
      big,
    );
    expect(stdin.status).toBe(413);
    expect(json(stdin).code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('queries', () => {
  it('unknown or malformed query parameters are 400', async () => {
    const id = target.id;
    await expectRefused([
      ['list unknown', ['/v1/tasks?stat=running'], 400, 'INVALID_ARGUMENT'],
      ['list state', ['/v1/tasks?state=sleeping'], 400, 'INVALID_ARGUMENT'],
      ['list label', ['/v1/tasks?label=novalue'], 400, 'INVALID_ARGUMENT'],
      ['get', [`/v1/tasks/${id}?verbose=1`], 400, 'INVALID_ARGUMENT'],
      ['wait timeout', [`/v1/tasks/${id}/wait?timeoutMs=soon`], 400, 'INVALID_ARGUMENT'],
      ['wait too long', [`/v1/tasks/${id}/wait?timeoutMs=300001`], 400, 'INVALID_ARGUMENT'],
      ['output cursor', [`/v1/tasks/${id}/output?cursor=-1`], 400, 'INVALID_ARGUMENT'],
      ['output stream', [`/v1/tasks/${id}/output?stream=stdin`], 400, 'INVALID_ARGUMENT'],
      ['output format', [`/v1/tasks/${id}/output?format=xml`], 400, 'INVALID_ARGUMENT'],
      ['output follow', [`/v1/tasks/${id}/output?follow=maybe`], 400, 'INVALID_ARGUMENT'],
      ['offset of both', [`/v1/tasks/${id}/output?offset=3`], 400, 'INVALID_ARGUMENT'],
      [
        'offset and cursor',
        [`/v1/tasks/${id}/output?stream=stdout&offset=3&cursor=1`],
        400,
        'INVALID_ARGUMENT',
      ],
      ['repeated cursor', [`/v1/tasks/${id}/output?cursor=1&cursor=2`], 400, 'INVALID_ARGUMENT'],
      [
        'stdin eof',
        ['--data-binary', 'x', `/v1/tasks/${id}/stdin?eof=perhaps`],
        400,
        'INVALID_ARGUMENT',
      ],
      ['attach cursor', [`/v1/tasks/${id}/attach?cursor=x`], 400, 'INVALID_ARGUMENT'],
    ]);
  });
});

describe('unknown things', () => {
  it('an unknown task id is 404 NOT_FOUND on every task route', async () => {
    const id = 'no-such-task';
    await expectRefused([
      ['get', [`/v1/tasks/${id}`], 404, 'NOT_FOUND'],
      ['delete', ['-X', 'DELETE', `/v1/tasks/${id}`], 404, 'NOT_FOUND'],
      ['wait', [`/v1/tasks/${id}/wait`], 404, 'NOT_FOUND'],
      ['signal', jsonPost(`/v1/tasks/${id}/signal`, '{"signal":"SIGTERM"}'), 404, 'NOT_FOUND'],
      ['stop', jsonPost(`/v1/tasks/${id}/stop`, '{}'), 404, 'NOT_FOUND'],
      ['stdin', ['--data-binary', 'x', `/v1/tasks/${id}/stdin`], 404, 'NOT_FOUND'],
      ['resize', jsonPost(`/v1/tasks/${id}/resize`, '{"cols":80,"rows":24}'), 404, 'NOT_FOUND'],
      ['output', [`/v1/tasks/${id}/output?follow=1`], 404, 'NOT_FOUND'],
      ['attach', [`/v1/tasks/${id}/attach`], 404, 'NOT_FOUND'],
      ['unknown route', ['/v1/jobs'], 404, 'NOT_FOUND'],
      ['unknown nested route', [`/v1/tasks/${canary.id}/logs`], 404, 'NOT_FOUND'],
    ]);
  });

  it('a spawn failure is 422 SPAWN_FAILED and registers nothing', async () => {
    const before = t.supervisor.list().length;
    await expectRefused([
      [
        'missing binary',
        jsonPost('/v1/tasks', '{"command":["no-such-binary-here"]}'),
        422,
        'SPAWN_FAILED',
      ],
      ['empty command', jsonPost('/v1/tasks', '{"command":[]}'), 422, 'SPAWN_FAILED'],
      [
        'missing cwd',
        jsonPost('/v1/tasks', '{"command":["true"],"cwd":"/no/such/dir"}'),
        422,
        'SPAWN_FAILED',
      ],
    ]);
    expect(t.supervisor.list().length).toBe(before);
  });

  it('a taken id is 409 CONFLICT', async () => {
    await expectRefused([
      [
        'duplicate',
        jsonPost('/v1/tasks', `{"command":["true"],"id":"${canary.id}"}`),
        409,
        'CONFLICT',
      ],
    ]);
  });

  it('a GET to attach without an upgrade is 426', async () => {
    const result = await curl([...t.auth, `${t.url}/v1/tasks/${canary.id}/attach`]);
    expect(result.status).toBe(426);
  });
});

describe('auth', () => {
  const routes: [string, string[]][] = [
    ['list', ['/v1/tasks']],
    ['create', jsonPost('/v1/tasks', '{"command":["touch","/tmp/overthere-should-not-exist"]}')],
    ['get', ['/v1/tasks/ID']],
    ['delete', ['-X', 'DELETE', '/v1/tasks/ID']],
    ['wait', ['/v1/tasks/ID/wait?timeoutMs=1']],
    ['signal', jsonPost('/v1/tasks/ID/signal', '{"signal":"SIGKILL"}')],
    ['stop', jsonPost('/v1/tasks/ID/stop', '{"signal":"SIGKILL"}')],
    ['stdin', ['--data-binary', 'injected\n', '/v1/tasks/ID/stdin?eof=1']],
    ['resize', jsonPost('/v1/tasks/ID/resize', '{"cols":1,"rows":1}')],
    ['output', ['/v1/tasks/ID/output']],
    ['attach', ['/v1/tasks/ID/attach']],
    ['capacity', ['/v1/capacity']],
    ['runtime', ['/v1/runtime']],
    ['openapi', ['/v1/openapi.json']],
    ['metrics', ['/metrics']],
    ['405 route', ['-X', 'PUT', '/v1/tasks']],
  ];
  const withId = (args: string[]) => args.map((arg) => arg.replace('ID', canary.id));

  for (const [label, auth] of [
    ['missing', []],
    ['wrong', ['-H', 'Authorization: Bearer not-the-token']],
    ['wrong scheme', ['-H', `Authorization: Basic ${Buffer.from(`x:test`).toString('base64')}`]],
    ['token as query on a JSON route', []],
  ] as const) {
    it(`a ${label} token is 401 UNAUTHENTICATED with WWW-Authenticate on every route`, async () => {
      for (const [name, args] of routes) {
        const parts = withId(args);
        const last = parts.length - 1;
        const query = label.startsWith('token as query')
          ? `${parts[last]!.includes('?') ? '&' : '?'}access_token=${'test-token-0123456789'}`
          : '';
        const url = `${t.url}${parts[last]}${name === 'output' || name === 'attach' ? '' : query}`;
        const result = await curl([...auth, ...parts.slice(0, last), url]);
        expect(result.status, `${name}: ${result.body.toString()}`).toBe(401);
        expect(result.headers['www-authenticate'], name).toMatch(/^Bearer/);
        expect(json(result).code, name).toBe('UNAUTHENTICATED');
      }
    });
  }

  it('the token is accepted as ?access_token= on output (for EventSource)', async () => {
    const result = await curl([
      `${t.url}/v1/tasks/${canary.id}/output?access_token=${'test-token-0123456789'}`,
      '--max-time',
      '2',
    ]);
    // Not following: the retained output, then the response ends.
    expect(result.status).toBe(200);
    expect(result.body.toString()).toBe('before\n');
  });
});

describe('afterwards', () => {
  it('the canary task was never disturbed', async () => {
    expect(t.supervisor.get(canary.id).state).toBe('running');
    await t.client.writeStdin(canary.id, 'after\n');
    await t.client.closeStdin(canary.id);
    const final = await t.client.wait(canary.id);
    expect(final.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
    expect((await t.supervisor.output(canary.id).text('stdout')).toString()).toBe(
      'before\nafter\n',
    );
    expect(t.supervisor.get(target.id).state).toBe('running');
  });
});
