/**
 * Find a program as the original levityd did (Go's `exec.Command`, which
 * calls `exec.LookPath`): a name without a slash is searched in the
 * *server's* PATH, whatever environment the task gets; a name with a slash is
 * used as it is.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { OverthereError } from '@overthere/core';

async function isExecutable(file: string): Promise<boolean> {
  try {
    const stats = await stat(file);
    if (stats.isDirectory()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The path to run for `binary`. Relative PATH entries (and empty ones, which
 * mean the current directory) are skipped, as Go refuses them too.
 *
 * @throws OverthereError `SPAWN_FAILED` with Go's message,
 *   `exec: "name": executable file not found in $PATH`.
 */
export async function lookPath(binary: string, searchPath: string | undefined): Promise<string> {
  if (binary.includes('/')) return binary;
  if (binary !== '' && !binary.includes('\0')) {
    for (const dir of (searchPath ?? '').split(':')) {
      if (!path.isAbsolute(dir)) continue;
      const candidate = path.join(dir, binary);
      if (await isExecutable(candidate)) return candidate;
    }
  }
  throw new OverthereError(
    'SPAWN_FAILED',
    `exec: ${JSON.stringify(binary)}: executable file not found in $PATH`,
  );
}
