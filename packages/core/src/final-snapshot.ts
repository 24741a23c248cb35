/** Waiting for a task's end on behalf of a reader that may go away first. */
import type { Supervisor } from './supervisor.js';
import { isFinalState, type TaskInfo } from './task.js';

/**
 * The task's final snapshot. Undefined when the task is unknown, is removed
 * before it ends, or `signal` aborts first: a stream that ends with the task
 * (output follow, attach, an SSH session) then simply stops waiting.
 */
export function finalSnapshot(
  supervisor: Supervisor,
  id: string,
  signal: AbortSignal,
): Promise<TaskInfo | undefined> {
  let waiting: Promise<TaskInfo>;
  try {
    const now = supervisor.get(id);
    if (isFinalState(now.state)) return Promise.resolve(now);
    if (signal.aborted) return Promise.resolve(undefined);
    waiting = supervisor.wait(id);
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = (task: TaskInfo | undefined): void => {
      signal.removeEventListener('abort', onAbort);
      resolve(task);
    };
    waiting.then(settle, () => settle(undefined));
  });
}
