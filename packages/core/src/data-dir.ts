/**
 * Files in a data directory: atomic replacement, and a pid lock so two agents
 * never share one directory (their stores would overwrite each other).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { OverthereError } from './errors.js';

/**
 * Replace `file` with `data` atomically: a temp file beside it is written,
 * fsynced and renamed over it, so a crash leaves the old or the new content.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

/** Held while a process uses a data directory. */
export interface DataDirLock {
  /** Remove the lock file, if it is still ours. */
  release(): Promise<void>;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Create `dir` (mode 0700) and take its lock: `<dir>/<name>.pid` holding our
 * pid. A lock left by a process that is gone is taken over; one held by a
 * live process is `FAILED_PRECONDITION`.
 */
export async function lockDataDir(dir: string, name: string): Promise<DataDirLock> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${name}.pid`);
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
      throw new OverthereError(
        'FAILED_PRECONDITION',
        `data dir ${dir} is in use by ${name} pid ${holder}`,
      );
    }
    await rm(file, { force: true });
  }
  throw new OverthereError('UNAVAILABLE', `could not lock data dir ${dir}`);
}
