/**
 * The start pipeline against a real file server: every archive format, the
 * environment a process gets, and each failure state — hostile archives
 * rejected with nothing written outside the target.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArchiveFormat } from '../src/download.js';
import { buildArchive, type TestEntry } from './archives.js';
import {
  createProcess,
  curl,
  openConsole,
  startAgent,
  startFileServer,
  tempDir,
  waitForStatus,
  type FileServer,
  type RunningAgent,
  type StatusDocument,
} from './helpers.js';

let files: FileServer;
let agent: RunningAgent;
let data: { dir: string; remove(): Promise<void> };
let counter = 0;

beforeAll(async () => {
  files = await startFileServer();
  data = await tempDir('smartmob-pipeline-');
  agent = await startAgent(
    data.dir,
    [
      '--max-archive-size',
      '256k',
      '--max-unpacked-size',
      '1M',
      '--max-files',
      '50',
      '--download-timeout',
      '1s',
    ],
    { SMARTMOB_TEST_BASE: 'from the agent' },
  );
});

afterAll(async () => {
  await agent?.stop();
  await files?.close();
  await data?.remove();
});

/** Every path under `dir`, relative. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

/** Create a process from an archive served under a fresh name; returns its slug. */
async function launch(
  body: Buffer,
  options: {
    contentType?: string;
    processType?: string;
    env?: Record<string, string>;
    status?: number;
    delayMs?: number;
  } = {},
): Promise<string> {
  counter += 1;
  const node = `n${counter}`;
  const url = files.serve(`archive-${counter}`, {
    body,
    ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
    ...(options.status === undefined ? {} : { status: options.status }),
    ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }),
  });
  const response = await createProcess(agent, {
    app: 'pipe',
    node,
    process_type: options.processType ?? 'web',
    source_url: url,
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  expect(response.status).toBe(201);
  return `pipe.${node}`;
}

async function settled(slug: string): Promise<StatusDocument> {
  return waitForStatus(
    agent,
    slug,
    (status) => !['pending', 'downloading', 'unpacking'].includes(status.state),
  );
}

async function remove(slug: string): Promise<void> {
  expect((await curl(`${agent.url}/delete-process/${slug}`, { data: '{}' })).status).toBe(200);
}

describe('formats', () => {
  it.each(['zip', 'tar', 'tar.gz', 'tar.bz2', 'tar.xz'] as ArchiveFormat[])(
    'runs the Procfile of a %s archive, known by its bytes alone',
    async (format) => {
      const slug = await launch(
        await buildArchive(format, [
          { name: 'Procfile', data: 'web: ./serve.sh\n' },
          {
            name: 'serve.sh',
            data: `#!/bin/sh\necho "${format} ok"\nexec sleep 60\n`,
            mode: 0o755,
          },
        ]),
        { contentType: 'application/octet-stream' },
      );
      const console = await openConsole(
        `${agent.url.replace('http', 'ws')}/attach-console/${slug}`,
      );
      expect(await console.waitForLines(1)).toEqual([`${format} ok`]);
      expect((await settled(slug)).state).toBe('processing');
      await console.close();
      await remove(slug);
    },
  );

  it('gives the process the agent env, PORT, the Procfile env and the request env (request wins), in the source dir', async () => {
    const procfile =
      'web: env FROM_PROCFILE=procfile SHARED=procfile sh -c \'echo "$SMARTMOB_TEST_BASE|$FROM_PROCFILE|$SHARED|$FROM_REQUEST|$PORT|$(cat marker.txt)"; exec sleep 60\'\n';
    const slug = await launch(
      await buildArchive('tar.gz', [
        { name: 'Procfile', data: procfile },
        { name: 'marker.txt', data: 'in the source dir' },
      ]),
      { env: { SHARED: 'request', FROM_REQUEST: 'request' } },
    );
    const console = await openConsole(`${agent.url.replace('http', 'ws')}/attach-console/${slug}`);
    const [line] = await console.waitForLines(1);
    const parts = (line as string).split('|');
    expect(parts.slice(0, 4)).toEqual(['from the agent', 'procfile', 'request', 'request']);
    expect(Number(parts[4])).toBeGreaterThan(0);
    expect(parts[5]).toBe('in the source dir');
    await console.close();
    await remove(slug);
  });
});

describe('failure states', () => {
  it('download failure: a 404, a refused connection, a body past the cap, a server too slow', async () => {
    const notFound = await launch(Buffer.from('gone'), { status: 404 });
    const big = await launch(Buffer.alloc(300 * 1024, 1));
    const slow = await launch(
      await buildArchive('tar', [{ name: 'Procfile', data: 'web: true' }]),
      {
        delayMs: 5_000,
      },
    );
    const refused = await createProcess(agent, {
      app: 'pipe',
      node: 'refused',
      process_type: 'web',
      source_url: 'http://127.0.0.1:9/nothing.zip',
    });
    expect(refused.status).toBe(201);
    const results = await Promise.all([notFound, big, slow, 'pipe.refused'].map(settled));
    expect(results.map((result) => result.state)).toEqual(Array(4).fill('download failure'));
    expect(results[0]?.error).toMatch(/HTTP 404/);
    expect(results[1]?.error).toMatch(/262144/);
    expect(results[2]?.error).toMatch(/longer than 1000 ms/);
    expect(results[3]?.error).toMatch(/download failed/);
    for (const result of results) await remove(result.slug);
  });

  it('no procfile, invalid procfile, unknown process type', async () => {
    const none = await launch(await buildArchive('zip', [{ name: 'README', data: 'hi' }]));
    const invalid = await launch(
      await buildArchive('zip', [{ name: 'Procfile', data: 'web: a\nweb: b\n' }]),
    );
    const unknown = await launch(
      await buildArchive('zip', [{ name: 'Procfile', data: 'worker: sleep 1\n' }]),
    );
    const [noneStatus, invalidStatus, unknownStatus] = await Promise.all(
      [none, invalid, unknown].map(settled),
    );
    expect(noneStatus).toMatchObject({ state: 'no procfile' });
    expect(invalidStatus).toMatchObject({
      state: 'invalid procfile',
      error: 'Line 2: duplicate process type "web": already appears on line 1.',
    });
    expect(unknownStatus).toMatchObject({ state: 'unknown process type' });
    expect(unknownStatus?.error).toMatch(/"web"/);
    // A failed process still answers on its console: it closes, saying why.
    const console = await openConsole(`${agent.url.replace('http', 'ws')}/attach-console/${none}`);
    expect(await console.closed).toEqual({ code: 1000, reason: 'no procfile' });
    for (const slug of [none, invalid, unknown]) await remove(slug);
  });

  it('unpack failure for something that is no archive', async () => {
    const slug = await launch(Buffer.from('<html>hello</html>'), { contentType: 'text/html' });
    const status = await settled(slug);
    expect(status).toMatchObject({ state: 'unpack failure' });
    expect(status.error).toMatch(/not an archive.*text\/html/);
    await remove(slug);
  });

  const hostile: [string, ArchiveFormat, TestEntry[], RegExp][] = [
    [
      'zip-slip',
      'zip',
      [
        { name: 'Procfile', data: 'web: true' },
        { name: '../../../escaped-zip', data: 'x' },
      ],
      /relative path|escapes/,
    ],
    [
      'tar-slip',
      'tar.gz',
      [
        { name: 'Procfile', data: 'web: true' },
        { name: '../../../escaped-tar', data: 'x' },
      ],
      /escapes the target/,
    ],
    [
      'an absolute tar path',
      'tar',
      [{ name: '/tmp/escaped-absolute', data: 'x' }],
      /absolute path/,
    ],
    [
      'a symlink escape',
      'tar.xz',
      [
        { name: 'out', symlink: '../../..' },
        { name: 'out/escaped-link', data: 'x' },
      ],
      /symlink "out" points outside/,
    ],
    ['a zip symlink escape', 'zip', [{ name: 'out', symlink: '/tmp' }], /points outside/],
    [
      'a hardlink escape',
      'tar',
      [{ name: 'passwd', hardlink: '/etc/passwd' }],
      /absolute path|points outside/,
    ],
    [
      'a decompression bomb',
      'tar.bz2',
      [
        { name: 'Procfile', data: 'web: true' },
        { name: 'bomb', data: Buffer.alloc(32 * 1024 * 1024) },
      ],
      /more than 1048576 bytes/,
    ],
    [
      'a zip bomb',
      'zip',
      [{ name: 'bomb', data: Buffer.alloc(32 * 1024 * 1024) }],
      /more than 1048576 bytes/,
    ],
    [
      'too many files',
      'tar.gz',
      Array.from({ length: 60 }, (_, index) => ({ name: `f${index}`, data: 'x' })),
      /more than 50 entries/,
    ],
  ];

  it.each(hostile)(
    'unpack failure for %s, nothing written outside',
    async (_what, format, entries, message) => {
      const before = await tree(data.dir);
      const slug = await launch(await buildArchive(format, entries));
      const status = await settled(slug);
      expect(status.state).toBe('unpack failure');
      expect(status.error).toMatch(message);
      // Not in the data dir (the archive and sources are gone too), not beside it.
      const after = await tree(data.dir);
      expect(
        after.filter((entry) => !before.includes(entry) && !entry.startsWith('tasks')),
      ).toEqual(expect.not.arrayContaining([expect.stringMatching(/escaped|passwd|bomb/)]));
      expect(after.some((entry) => /escaped|passwd|bomb/.test(entry))).toBe(false);
      // Beside it (one level more than ../../.. from the source reaches), and /tmp itself.
      const beside = await readdir(path.dirname(data.dir));
      expect(beside.filter((entry) => entry.startsWith('escaped-'))).toEqual([]);
      expect(existsSync('/tmp/escaped-absolute')).toBe(false);
      await remove(slug);
    },
    30_000,
  );
});
