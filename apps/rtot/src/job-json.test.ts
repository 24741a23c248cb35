import type { TaskInfo } from '@overthere/core';
import { describe, expect, it } from 'vitest';
import {
  LOST_EXIT_TEXT,
  exitTextOf,
  jobStateOf,
  renderJob,
  selectedFields,
  sourceOf,
} from './job-json.js';

function task(overrides: Partial<TaskInfo>): TaskInfo {
  return {
    id: '7',
    spec: { command: ['/bin/true'] },
    runtime: 'local',
    state: 'running',
    createdAt: '2014-01-12T03:42:32.314Z',
    startedAt: '2014-01-12T03:42:32.315Z',
    restarts: 0,
    stopRequested: false,
    ...overrides,
  };
}

const output = (texts: { stdout?: string; stderr?: string }) => (stream: 'stdout' | 'stderr') =>
  Promise.resolve(Buffer.from(texts[stream] ?? ''));

describe('jobStateOf', () => {
  it('maps live supervisor states to running and final ones to complete', () => {
    expect(['running', 'stopping', 'backoff'].map((state) => jobStateOf(state as never))).toEqual([
      'running',
      'running',
      'running',
    ]);
    expect(['exited', 'failed', 'lost'].map((state) => jobStateOf(state as never))).toEqual([
      'complete',
      'complete',
      'complete',
    ]);
  });
});

describe('exitTextOf', () => {
  it('is absent for status 0 and Go error text otherwise', () => {
    expect(exitTextOf({ code: 0, signal: null, reason: 'exited' })).toBeUndefined();
    expect(exitTextOf({ code: 3, signal: null, reason: 'exited' })).toBe('exit status 3');
    expect(exitTextOf({ code: null, signal: 'SIGKILL', reason: 'killed' })).toBe('signal: killed');
  });

  it('says when the job was lost to a server crash', () => {
    expect(exitTextOf({ code: null, signal: null, reason: 'lost' })).toBe(LOST_EXIT_TEXT);
  });
});

describe('selectedFields', () => {
  it('selects every field by default and the first ?fields= otherwise', () => {
    expect([...selectedFields(undefined)]).toEqual([
      'out',
      'err',
      'create',
      'start',
      'complete',
      'filename',
    ]);
    expect([...selectedFields('out,create')]).toEqual(['out', 'create']);
    expect([...selectedFields(['err', 'out'])]).toEqual(['err']);
  });
});

describe('renderJob', () => {
  it("renders a running job in the original's key order with the zero time for complete", async () => {
    const source = sourceOf(task({}), '/data/scripts/rtot-job-7', output({ stdout: 'ready\n' }));
    const job = await renderJob(source, selectedFields(undefined));
    expect(Object.keys(job)).toEqual([
      'id',
      'out',
      'state',
      'start',
      'complete',
      'create',
      'filename',
      'href',
    ]);
    expect(job).toEqual({
      id: 7,
      out: 'ready\n',
      state: 'running',
      start: '2014-01-12 03:42:32.315 +0000 UTC',
      complete: '0001-01-01 00:00:00 +0000 UTC',
      create: '2014-01-12 03:42:32.314 +0000 UTC',
      filename: '/data/scripts/rtot-job-7',
      href: '/jobs/7',
    });
  });

  it('shows exit whatever the fields, and only the fields asked for', async () => {
    const finished = task({
      state: 'exited',
      endedAt: '2014-01-12T03:42:33Z',
      exit: { code: 2, signal: null, reason: 'exited' },
    });
    const source = sourceOf(finished, '/f', output({ stdout: 'o', stderr: 'e' }));
    expect(await renderJob(source, selectedFields('err'))).toEqual({
      id: 7,
      err: 'e',
      state: 'complete',
      exit: 'exit status 2',
      href: '/jobs/7',
    });
    expect(await renderJob(source, selectedFields(''))).toEqual({
      id: 7,
      state: 'complete',
      exit: 'exit status 2',
      href: '/jobs/7',
    });
  });

  it('leaves out empty output and output that can no longer be read', async () => {
    const gone = () => Promise.reject(new Error('removed'));
    const job = await renderJob(sourceOf(task({}), '/f', gone), selectedFields('out,err'));
    expect(job).toEqual({ id: 7, state: 'running', href: '/jobs/7' });
  });
});
