/**
 * The data directory's own files (the task store keeps `tasks/`, core's
 * lockDataDir the pid lock): the job id counter, and the scripts jobs run.
 */
import { chmod, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '@overthere/core';

/**
 * Job ids: integers from 0, never reused, across restarts too. The next id is
 * kept in `next-id` and is on disk before a job with a smaller id is created.
 */
export interface JobIds {
  /** Take the next id; `persisted` resolves once the counter on disk is past it. */
  allocate(): { id: number; persisted: Promise<void> };
  /** Make sure future ids are above `id` (ids found in the task store). */
  observe(id: number): void;
}

export async function openJobIds(dir: string): Promise<JobIds> {
  const file = path.join(dir, 'next-id');
  const stored = Number((await readFile(file, 'utf8').catch(() => '0')).trim());
  let next = Number.isSafeInteger(stored) && stored >= 0 ? stored : 0;
  let written = next;
  let chain: Promise<void> = Promise.resolve();

  // Writes are chained and each writes the newest value, so the file only grows.
  function persist(): Promise<void> {
    chain = chain
      .catch(() => undefined)
      .then(async () => {
        const value = next;
        if (value <= written) return;
        await writeFileAtomic(file, `${value}\n`);
        written = value;
      });
    return chain;
  }

  return {
    allocate() {
      const id = next;
      next += 1;
      return { id, persisted: persist() };
    },
    observe(id) {
      if (id >= next) next = id + 1;
    },
  };
}

/** Where job scripts live: `<dir>/scripts/rtot-job-<id>`, mode 0700. */
export interface ScriptFiles {
  pathOf(id: number): string;
  /** Write a job's script (it must not exist yet). */
  write(id: number, script: Buffer): Promise<string>;
  remove(id: number): Promise<void>;
  /** Remove scripts of jobs that are not in `keep` (left by a crash between write and create). */
  prune(keep: ReadonlySet<number>): Promise<void>;
}

const SCRIPT_PREFIX = 'rtot-job-';

export async function openScriptFiles(dir: string): Promise<ScriptFiles> {
  const scripts = path.join(dir, 'scripts');
  await mkdir(scripts, { recursive: true, mode: 0o700 });
  await chmod(scripts, 0o700);
  const pathOf = (id: number) => path.join(scripts, `${SCRIPT_PREFIX}${id}`);
  return {
    pathOf,
    async write(id, script) {
      const file = pathOf(id);
      await writeFile(file, script, { flag: 'wx', mode: 0o700 });
      // The umask may have taken the execute bit; the kernel needs it to run the file.
      await chmod(file, 0o700);
      return file;
    },
    async remove(id) {
      await rm(pathOf(id), { force: true });
    },
    async prune(keep) {
      for (const name of await readdir(scripts)) {
        const id = Number(name.slice(SCRIPT_PREFIX.length));
        if (!name.startsWith(SCRIPT_PREFIX) || !Number.isSafeInteger(id) || keep.has(id)) continue;
        await rm(path.join(scripts, name), { force: true });
      }
    },
  };
}
