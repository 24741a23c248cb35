/**
 * levityd's data directory (`--data-dir`): task records and output live under
 * `tasks/` (the core file task store); `levityd.pid` locks the directory so
 * two servers never share it.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Held while a server uses the directory. */
export interface DataDirLock {
  /** Remove the lock file (if it is still ours). */
  release(): Promise<void>;
}

/**
 * Create the directory (mode 0700) and take its lock. A lock left by a
 * process that is gone is taken over; one held by a live process is an error.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'levityd.pid');
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return {
        async release() {
          const holder = await readFile(file, 'utf8').catch(() => '');
          if (Number(holder.trim()) === process.pid) await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new Error(`data dir ${dir} is in use by levityd pid ${holder}`);
    }
    await rm(file, { force: true });
  }
  throw new Error(`could not lock data dir ${dir}`);
}
