/**
 * A supervisor task as the levity protocol reports it.
 *
 * | supervisor                                   | levity                        |
 * | -------------------------------------------- | ----------------------------- |
 * | `running` (`backoff` cannot happen here)     | Running                       |
 * | `stopping` (after SignalTask)                | Signalled                     |
 * | `exited`, reason `killed` (SIGKILL at grace) | BrutallyKilled                |
 * | `exited`, any other reason                   | Finished, exit code or -1     |
 * | `failed`, `lost`                             | InternalServerError           |
 */
import type { TaskInfo } from '@overthere/core';
import type { QueryTaskResponse } from './proto.js';

/** The QueryTask answer for a task: `exit_code` is set exactly when it is Finished. */
export function taskStatus(task: TaskInfo): QueryTaskResponse {
  switch (task.state) {
    case 'running':
    case 'backoff':
      return { status_code: 'Running' };
    case 'stopping':
      return { status_code: 'Signalled' };
    case 'exited': {
      if (task.exit?.reason === 'killed') return { status_code: 'BrutallyKilled' };
      // A process a signal ended has no exit code: the original reported -1.
      const code = task.exit?.reason === 'exited' ? task.exit.code : null;
      return { status_code: 'Finished', exit_code: code ?? -1 };
    }
    case 'failed':
    case 'lost':
      return { status_code: 'InternalServerError' };
  }
}
