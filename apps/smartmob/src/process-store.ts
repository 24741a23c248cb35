/**
 * The agent's own records, one per process (slug): what was asked for and
 * where the start pipeline is. The supervisor keeps the task records; this
 * file says which task belongs to which slug. Kept in `<data dir>/processes.json`,
 * replaced atomically on every change.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '@overthere/core';

/** Where a process is: the start pipeline's steps, running, or why it failed. */
export type ProcessState =
  | 'pending'
  | 'downloading'
  | 'unpacking'
  | 'processing'
  | 'download failure'
  | 'unpack failure'
  | 'no procfile'
  | 'invalid procfile'
  | 'unknown process type'
  | 'start failure';

/** States the pipeline is still working in (restarted from scratch after an agent restart). */
export const PIPELINE_STATES: ReadonlySet<ProcessState> = new Set([
  'pending',
  'downloading',
  'unpacking',
]);

/** One process as the agent remembers it. */
export interface ProcessRecord {
  slug: string;
  app: string;
  node: string;
  processType: string;
  sourceUrl: string;
  /** Variables from the create request (they win over the Procfile's). */
  env: Record<string, string>;
  state: ProcessState;
  /** Why it failed, for the failure states. */
  error?: string;
  /** Directory name under `<data dir>/processes/` (archive and unpacked source). */
  dirName: string;
  /** `PORT` of the process, the same across restarts. */
  port: number;
  /** Supervisor task running the command, once started. */
  taskId?: string;
  createdAt: string;
}

/** The records, loaded once and saved on every change. */
export interface ProcessStore {
  list(): ProcessRecord[];
  get(slug: string): ProcessRecord | undefined;
  /** Insert or replace, then write the file. */
  put(record: ProcessRecord): Promise<void>;
  delete(slug: string): Promise<void>;
}

const FILE_NAME = 'processes.json';

/** Open (or create) the store in `dir`. A damaged file is an error: the agent would lose processes. */
export async function openProcessStore(dir: string): Promise<ProcessStore> {
  const file = path.join(dir, FILE_NAME);
  const records = new Map<string, ProcessRecord>();
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (text !== undefined) {
    const parsed = JSON.parse(text) as { processes?: ProcessRecord[] };
    for (const record of parsed.processes ?? []) records.set(record.slug, record);
  }

  // Writes are chained; each writes the newest state, so the last one wins.
  let chain: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    chain = chain
      .catch(() => undefined)
      .then(() =>
        writeFileAtomic(
          file,
          `${JSON.stringify({ version: 1, processes: [...records.values()] }, null, 2)}\n`,
        ),
      );
    return chain;
  };

  return {
    list: () => [...records.values()],
    get: (slug) => records.get(slug),
    put(record) {
      records.set(record.slug, record);
      return save();
    },
    delete(slug) {
      records.delete(slug);
      return save();
    },
  };
}
