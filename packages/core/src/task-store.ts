/**
 * TaskStore: durable task records. The supervisor saves a record on every state
 * change and loads them all once at start to recover.
 */
import type { TaskInfo } from './task.js';

/** Keeps task records, and says where a task's durable output goes. */
export interface TaskStore {
  /** Every stored record. */
  load(): Promise<TaskInfo[]>;
  /** Insert or replace a record (atomically: a crash leaves the old or the new one). */
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
}

export declare function createFileTaskStore(options: FileTaskStoreOptions): Promise<TaskStore>;
export declare function createMemoryTaskStore(): TaskStore;
