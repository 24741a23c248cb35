/** A task's snapshot for a reader that may outlive it: waiting for its end, or just now. */
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

/** The task's snapshot now, or undefined when it is unknown (removed meanwhile). */
export function knownTask(supervisor: Supervisor, id: string): TaskInfo | undefined {
  try {
    return supervisor.get(id);
  } catch {
    return undefined;
  }
}
