import type { ExitStatus, TaskInfo, TaskState } from '@overthere/core';
import { describe, expect, it } from 'vitest';
import { taskStatus } from './task-status.js';

function task(state: TaskState, exit?: ExitStatus): TaskInfo {
  return {
    id: 'f257cd86-8ec6-4688-b902-2a118e0a3035',
    spec: { command: ['true'] },
    runtime: 'local',
    state,
    createdAt: new Date(0).toISOString(),
    restarts: 0,
    stopRequested: false,
    ...(exit === undefined ? {} : { exit }),
  };
}

describe('task status', () => {
  it('maps supervisor states to the levity states, with an exit code exactly when Finished', () => {
    expect(taskStatus(task('running'))).toEqual({ status_code: 'Running' });
    expect(taskStatus(task('stopping'))).toEqual({ status_code: 'Signalled' });
    expect(taskStatus(task('exited', { code: 0, signal: null, reason: 'exited' }))).toEqual({
      status_code: 'Finished',
      exit_code: 0,
    });
    expect(taskStatus(task('exited', { code: 2, signal: null, reason: 'exited' }))).toEqual({
      status_code: 'Finished',
      exit_code: 2,
    });
    expect(
      taskStatus(task('exited', { code: null, signal: 'SIGTERM', reason: 'signalled' })),
    ).toEqual({
      status_code: 'Finished',
      exit_code: -1,
    });
    expect(taskStatus(task('exited', { code: null, signal: 'SIGKILL', reason: 'killed' }))).toEqual(
      {
        status_code: 'BrutallyKilled',
      },
    );
    expect(taskStatus(task('lost', { code: null, signal: null, reason: 'lost' }))).toEqual({
      status_code: 'InternalServerError',
    });
    expect(taskStatus(task('failed'))).toEqual({ status_code: 'InternalServerError' });
  });
});
