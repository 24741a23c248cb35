/**
 * TaskStore: durable task records. The supervisor saves a record on every state
 * change and loads them all once at start to recover.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './data-dir.js';
import { OverthereError } from './errors.js';
import { datasync, FileCallMode, syncPath, THREAD_POOL_CALLS, writeAll } from './file-calls.js';
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
  /** Wait for pending writes and let go of open files (a later save opens them again). */
  close?(): Promise<void>;
}

/** Options for {@link createFileTaskStore}. */
export interface FileTaskStoreOptions {
  /**
   * Data directory: records go to the journal `<dir>/tasks.jsonl`, output to
   * `<dir>/tasks/<id>/output/`.
   */
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

/** The journal's name in the data directory. */
const JOURNAL = 'tasks.jsonl';
/** The journal is rewritten with only the live records once it is this big ... */
const COMPACT_MIN_BYTES = 1024 * 1024;
/** ... and this many times their size. */
const COMPACT_FACTOR = 4;

/** One group commit: the newest version of each record saved meanwhile (null: deleted). */
interface Batch {
  lines: Map<string, string | null>;
  done: Promise<void>;
  settle: (error?: Error) => void;
}

/**
 * A journal of task records under a data directory: one JSON line per saved
 * version (or `{"deleted":id}`), appended and fsynced; loading keeps the last
 * line of each task. A torn last line (a crash mid-write) is ignored.
 *
 * Saves are group-committed: every save made while a write is in flight goes
 * into the next write, with one fsync for all of them. A record per file
 * (write a temp file, fsync, rename) cost an fsync per save and two
 * metadata changes, each of which waits for the file system's journal
 * commit; at a few hundred tasks a second the agent spent a quarter of its
 * time there. The journal is compacted (the live records written to a new
 * file that replaces it) when it opens, and once it has grown past 1 MiB and
 * four times what is live.
 *
 * Records of the earlier layout (`<dir>/tasks/<id>/task.json`) are read once
 * and moved into the journal.
 */
export async function createFileTaskStore(options: FileTaskStoreOptions): Promise<TaskStore> {
  const logger = options.logger ?? noopLogger;
  const tasksDir = join(options.dir, 'tasks');
  const journalPath = join(options.dir, JOURNAL);
  await mkdir(tasksDir, { recursive: true });
  const taskDir = (id: string) => join(tasksDir, id);

  /** The committed line of every live task. */
  const committed = new Map<string, string>();
  let liveBytes = 0;
  const setCommitted = (id: string, line: string | null): void => {
    liveBytes -= (committed.get(id)?.length ?? -1) + 1;
    if (line === null) committed.delete(id);
    else {
      committed.set(id, line);
      liveBytes += line.length + 1;
    }
  };

  const legacy = await loadLegacyRecords(tasksDir, logger);
  for (const [id, line] of legacy) setCommitted(id, line);
  for (const [id, line] of await readJournal(journalPath, logger)) setCommitted(id, line);

  // Appended at `position`, opened at the first write after a compaction.
  const callMode = new FileCallMode();
  let fd: number | undefined;
  let position = 0;

  /** Write every live record to a new journal, make it durable, and put it in place. */
  async function compact(): Promise<void> {
    const data = Buffer.from([...committed.values()].map((line) => `${line}\n`).join(''));
    await writeFileAtomic(journalPath, data);
    await syncPath(options.dir).catch(() => undefined); // not every platform syncs dirs
    // The old journal's descriptor: the next write opens the new one.
    if (fd !== undefined) await THREAD_POOL_CALLS.close(fd);
    fd = undefined;
    position = data.length;
  }

  await compact();
  // Moved into the journal, durably: the old files can go.
  await Promise.all(
    [...legacy.keys()].map((id) => rm(join(taskDir(id), 'task.json'), { force: true })),
  );

  let next: Batch | undefined;
  let writing: Promise<void> | undefined;

  async function flush(): Promise<void> {
    while (writing !== undefined) await writing;
  }

  function newBatch(): Batch {
    let settle!: (error?: Error) => void;
    const done = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error));
    });
    return { lines: new Map(), done, settle };
  }

  /** Adds a line to the next group commit; resolves once it is on disk. */
  function enqueue(id: string, line: string | null): Promise<void> {
    const batch = (next ??= newBatch());
    batch.lines.set(id, line);
    if (writing === undefined) writing = writeBatches();
    return batch.done;
  }

  // One writer at a time; it goes on while saves came in during its last write.
  async function writeBatches(): Promise<void> {
    await Promise.resolve(); // Saves of the same tick join the first batch.
    while (next !== undefined) {
      const batch = next;
      next = undefined;
      try {
        await writeBatch(batch);
        batch.settle();
      } catch (error) {
        batch.settle(error instanceof Error ? error : new Error('writing the task journal failed'));
      }
    }
    writing = undefined;
  }

  async function writeBatch(batch: Batch): Promise<void> {
    let text = '';
    for (const [id, line] of batch.lines) text += `${line ?? JSON.stringify({ deleted: id })}\n`;
    const data = Buffer.from(text);
    const { calls, end } = callMode.begin();
    try {
      fd ??= await calls.open(journalPath, 'r+');
      try {
        await writeAll(calls, fd, [data], position);
        await datasync(fd);
      } catch (error) {
        // Cut off whatever part made it, so the next line starts a line.
        await Promise.resolve(calls.truncate(fd, position)).catch(() => undefined);
        throw error;
      }
    } finally {
      end();
    }
    position += data.length;
    for (const [id, line] of batch.lines) setCommitted(id, line);
    if (position > COMPACT_MIN_BYTES && position > COMPACT_FACTOR * liveBytes) {
      await compact().catch((error: unknown) =>
        logger.warn({ err: error }, 'compacting the task journal failed'),
      );
    }
  }

  return {
    load() {
      const records: TaskInfo[] = [];
      for (const line of committed.values()) records.push(JSON.parse(line) as TaskInfo);
      return Promise.resolve(records.sort((a, b) => a.createdAt.localeCompare(b.createdAt)));
    },
    save(task) {
      assertValidId(task.id);
      return enqueue(task.id, JSON.stringify(task));
    },
    async delete(id) {
      assertValidId(id);
      await enqueue(id, null);
      await rm(taskDir(id), { recursive: true, force: true });
    },
    outputDir(id) {
      assertValidId(id);
      return join(taskDir(id), 'output');
    },
    flush,
    async close() {
      await flush();
      if (fd === undefined) return;
      const closing = fd;
      fd = undefined;
      await THREAD_POOL_CALLS.close(closing);
    },
  };
}

/** The last valid line of each task in the journal (a deletion removes it). */
async function readJournal(path: string, logger: Logger): Promise<Map<string, string>> {
  const records = new Map<string, string>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return records;
    throw error;
  }
  const lines = text.split('\n');
  // The part after the last newline is a torn write (or nothing).
  if (lines.at(-1) !== '') logger.warn({ file: path }, 'ignoring a torn last task record');
  lines.pop();
  for (const line of lines) {
    try {
      const value = JSON.parse(line) as { id?: unknown; deleted?: unknown };
      if (typeof value.deleted === 'string') records.delete(value.deleted);
      else if (typeof value.id === 'string' && isValidTaskId(value.id)) records.set(value.id, line);
      else throw new Error('neither a record nor a deletion');
    } catch (error) {
      logger.warn({ err: error, file: path }, 'skipping an unreadable task record');
    }
  }
  return records;
}

/** Records of the layout before the journal: `<tasksDir>/<id>/task.json`. */
async function loadLegacyRecords(tasksDir: string, logger: Logger): Promise<Map<string, string>> {
  const records = new Map<string, string>();
  for (const id of await readdir(tasksDir)) {
    if (!isValidTaskId(id)) continue;
    const file = join(tasksDir, id, 'task.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue; // no record (just output), or not a directory
    }
    try {
      const record = JSON.parse(text) as TaskInfo;
      if (record.id !== id) throw new Error(`record id ${record.id} does not match ${id}`);
      records.set(id, JSON.stringify(record));
    } catch (error) {
      logger.warn({ err: error, file }, 'skipping unreadable task record');
    }
  }
  return records;
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
