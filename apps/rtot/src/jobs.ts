/**
 * rtot jobs on top of the supervisor: integer ids, a script file per job, and
 * the `new` state for a job whose process is still being started. Everything
 * else (running, killing, output, durability, GC) is the supervisor's.
 */
import { OverthereError, type Logger, type Supervisor, type TaskInfo } from '@overthere/core';
import type { JobIds, ScriptFiles } from './data-dir.js';
import { sourceOf, type JobSource, type JobState } from './job-json.js';

/** Prepended to a script that does not start with `#!`. */
export const DEFAULT_SHEBANG = '#!/bin/bash\n';

/** Options for {@link createJobs}. */
export interface JobsOptions {
  supervisor: Supervisor;
  ids: JobIds;
  scripts: ScriptFiles;
  /** Between SIGTERM and SIGKILL when a job is deleted or the server stops. */
  killGraceMs: number;
  logger?: Logger;
}

/** The job table the routes use. */
export interface Jobs {
  /** Write the script and start it; resolves with the job once its process started. */
  create(script: Buffer): Promise<JobSource>;
  /** The job, or undefined when there is none with that id. */
  get(id: bigint): JobSource | undefined;
  /** Jobs in id order, optionally only those in `state`. */
  list(state?: string): JobSource[];
  /** Kill (if running) and forget the job; false when there was none. */
  remove(id: bigint): Promise<boolean>;
}

interface PendingJob {
  source: JobSource;
  /** Settles once the start attempt is over, either way. */
  settled: Promise<void>;
}

/** The script as it is run: with `#!/bin/bash` in front unless it has its own `#!` line. */
export function withShebang(script: Buffer): Buffer {
  if (script.length >= 2 && script[0] === 0x23 && script[1] === 0x21) return script;
  return Buffer.concat([Buffer.from(DEFAULT_SHEBANG), script]);
}

/** The rtot id of a task, or undefined for a task that is not an rtot job. */
function jobIdOf(task: TaskInfo): number | undefined {
  if (!/^(0|[1-9]\d*)$/.test(task.id)) return undefined;
  const id = Number(task.id);
  return Number.isSafeInteger(id) ? id : undefined;
}

export function createJobs(options: JobsOptions): Jobs {
  const { supervisor, ids, scripts } = options;
  const pending = new Map<number, PendingJob>();

  const outputOf = (id: number) => (stream: 'stdout' | 'stderr') =>
    supervisor.output(String(id)).text(stream);

  function fromTask(task: TaskInfo): JobSource | undefined {
    const id = jobIdOf(task);
    if (id === undefined) return undefined;
    return sourceOf(task, scripts.pathOf(id), outputOf(id));
  }

  for (const task of supervisor.list()) {
    const id = jobIdOf(task);
    if (id !== undefined) ids.observe(id);
  }
  // Script files go with their job, whether deleted by a client or collected after the TTL.
  supervisor.on('task-remove', (taskId) => {
    if (/^\d+$/.test(taskId)) void scripts.remove(Number(taskId)).catch(() => undefined);
  });

  async function start(id: number, persisted: Promise<void>, script: Buffer): Promise<TaskInfo> {
    await persisted;
    const filename = await scripts.write(id, withShebang(script));
    try {
      // `exec` hands the file to the kernel, which honours its `#!` line. Through
      // `sh`, a missing interpreter is a job that failed (status 127, the reason
      // on stderr), as it was a job that failed in the original, not a refused request.
      return await supervisor.create(
        {
          command: ['/bin/sh', '-c', 'exec "$0"', filename],
          kill: { signal: 'SIGTERM', graceMs: options.killGraceMs },
          labels: { app: 'rtot' },
        },
        { id: String(id) },
      );
    } catch (error) {
      await scripts.remove(id).catch(() => undefined);
      throw error;
    }
  }

  function get(id: bigint): JobSource | undefined {
    if (id < 0n || id > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const waiting = pending.get(Number(id));
    if (waiting) return waiting.source;
    try {
      return fromTask(supervisor.get(String(id)));
    } catch (error) {
      if (OverthereError.hasCode(error, 'NOT_FOUND')) return undefined;
      throw error;
    }
  }

  return {
    async create(script) {
      const { id, persisted } = ids.allocate();
      const attempt = start(id, persisted, script);
      const source: JobSource = {
        id,
        state: 'new',
        createdAt: new Date().toISOString(),
        filename: scripts.pathOf(id),
      };
      pending.set(id, {
        source,
        settled: attempt.then(
          () => undefined,
          () => undefined,
        ),
      });
      let task: TaskInfo;
      try {
        task = await attempt;
      } finally {
        pending.delete(id);
      }
      // The newest state (it may have finished already), unless it was deleted meanwhile.
      return get(BigInt(id)) ?? (fromTask(task) as JobSource);
    },
    get,
    list(state) {
      const jobs: JobSource[] = [...pending.values()].map((waiting) => waiting.source);
      for (const task of supervisor.list()) {
        const job = fromTask(task);
        if (job !== undefined && !pending.has(job.id)) jobs.push(job);
      }
      jobs.sort((a, b) => a.id - b.id);
      if (state === undefined || state === '') return jobs;
      return jobs.filter((job) => job.state === (state as JobState));
    },
    async remove(id) {
      if (id < 0n || id > BigInt(Number.MAX_SAFE_INTEGER)) return false;
      const waiting = pending.get(Number(id));
      if (waiting) await waiting.settled;
      try {
        await supervisor.remove(String(id));
        // Gone with the job by the time the client hears of it (TTL removals do it on the event).
        await scripts.remove(Number(id));
        return true;
      } catch (error) {
        if (OverthereError.hasCode(error, 'NOT_FOUND')) return false;
        throw error;
      }
    },
  };
}
