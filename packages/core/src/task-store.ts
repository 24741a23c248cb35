/**
 * TaskStore: durable task records. The supervisor saves a record on every state
 * change and loads them all once at start to recover.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OverthereError } from './errors.js';
import { datasync, FileCallMode, type FileCalls } from './file-calls.js';
import { noopLogger, type Logger } from './logger.js';
import type { TaskInfo } from './task.js';

/** Keeps task records, and says where a task's durable output goes. */
export interface TaskStore {
  /** Every stored record. Unreadable records are skipped (and logged), never fatal. */
  load(): Promise<TaskInfo[]>;
  /**
   * Insert or replace a record (atomically: a crash leaves the old or the new
   * one). The supervisor hands over a fresh snapshot: the store may keep it.
   */
  save(task: TaskInfo): Promise<void>;
  /** Remove a record and its output directory. Unknown ids are fine. */
  delete(id: string): Promise<void>;
  /** Directory for the task's durable OutputLog, or undefined to keep output in memory only. */
  outputDir(id: string): string | undefined;
  /** Wait for pending writes. */
  flush(): Promise<void>;
}

/** Options for {@link createFileTaskStore}. */
export interface FileTaskStoreOptions {
  /** Data directory; records go to `<dir>/tasks/<id>/task.json`, output to `<dir>/tasks/<id>/output/`. */
  dir: string;
  logger?: Logger;
}

/** Task ids double as directory names, so they are restricted to a safe alphabet. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** True when `id` is usable as a task id (and so as a file name). */
export function isValidTaskId(id: string): boolean {
  return SAFE_ID.test(id);
}

function assertValidId(id: string): void {
  if (!isValidTaskId(id)) {
    throw new OverthereError('INVALID_ARGUMENT', `invalid task id: ${JSON.stringify(id)}`);
  }
}

/**
 * A store of JSON files under a data directory, one directory per task.
 * Writes go to a temp file that is fsynced and renamed over the record, so a
 * crash leaves either the old or the new record. Saves for one task are
 * serialised and coalesced: only the newest pending version is written.
 */
export async function createFileTaskStore(options: FileTaskStoreOptions): Promise<TaskStore> {
  const logger = options.logger ?? noopLogger;
  const tasksDir = join(options.dir, 'tasks');
  await mkdir(tasksDir, { recursive: true });

  const latest = new Map<string, TaskInfo>();
  const writers = new Map<string, Promise<void>>();

  const taskDir = (id: string) => join(tasksDir, id);

  // Temp names: a random prefix per store and a counter, so no two writers share one.
  const tempPrefix = `${randomBytes(6).toString('hex')}.`;
  let tempCounter = 0;
  // Open, write, close and rename go synchronously while quick; only the fsync waits on the pool.
  const callMode = new FileCallMode();

  async function writeRecord(task: TaskInfo): Promise<void> {
    const dir = taskDir(task.id);
    const target = join(dir, 'task.json');
    const temp = `${target}.${tempPrefix}${(tempCounter += 1)}.tmp`;
    const data = Buffer.from(JSON.stringify(task));
    const { calls, end } = callMode.begin();
    try {
      let fd: number;
      // The task's directory usually exists already (its output log made it): only
      // make it when the open says it is missing.
      try {
        fd = await calls.open(temp, 'w', 0o600);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        await calls.mkdir(dir);
        fd = await calls.open(temp, 'w', 0o600);
      }
      try {
        await writeFully(calls, fd, data);
        await datasync(fd);
      } finally {
        await calls.close(fd);
      }
      await calls.rename(temp, target);
    } finally {
      end();
    }
  }

  // Writes the newest pending version of a task, if one is still pending.
  async function writeLatest(id: string): Promise<void> {
    const task = latest.get(id);
    if (task === undefined) return;
    latest.delete(id);
    await writeRecord(task);
  }

  return {
    async load() {
      const records: TaskInfo[] = [];
      for (const id of await readdir(tasksDir)) {
        if (!isValidTaskId(id)) continue;
        const file = join(taskDir(id), 'task.json');
        try {
          const record = JSON.parse(await readFile(file, 'utf8')) as TaskInfo;
          if (record.id !== id) throw new Error(`record id ${record.id} does not match ${id}`);
          records.push(record);
        } catch (error) {
          logger.warn({ err: error, file }, 'skipping unreadable task record');
        }
      }
      return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    },
    save(task) {
      assertValidId(task.id);
      const id = task.id;
      latest.set(id, task);
      // One chain per task keeps its writes in order; queued saves coalesce.
      const previous = writers.get(id) ?? Promise.resolve();
      const next = previous.catch(() => undefined).then(() => writeLatest(id));
      writers.set(id, next);
      const forget = () => {
        if (writers.get(id) === next) writers.delete(id);
      };
      next.then(forget, forget);
      return next;
    },
    async delete(id) {
      assertValidId(id);
      latest.delete(id);
      await writers.get(id)?.catch(() => undefined);
      await rm(taskDir(id), { recursive: true, force: true });
    },
    outputDir(id) {
      assertValidId(id);
      return join(taskDir(id), 'output');
    },
    async flush() {
      await Promise.allSettled(writers.values());
    },
  };
}

/** Writes all of `data` at the start of the file `fd`. */
async function writeFully(calls: FileCalls, fd: number, data: Buffer): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const count = await calls.writev(fd, [data.subarray(written)], written);
    if (count === 0) throw new Error('task record write made no progress');
    written += count;
  }
}

/** A store that keeps nothing across restarts; output stays in memory. */
export function createMemoryTaskStore(): TaskStore {
  const records = new Map<string, TaskInfo>();
  return {
    load: () => Promise.resolve([...records.values()].map((task) => structuredClone(task))),
    save(task) {
      records.set(task.id, task);
      return Promise.resolve();
    },
    delete(id) {
      records.delete(id);
      return Promise.resolve();
    },
    outputDir: () => undefined,
    flush: () => Promise.resolve(),
  };
}
