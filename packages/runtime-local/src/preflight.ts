/**
 * Checks made before starting a process, so that failures the OS would only
 * report after a wrapper or a pty child has already started still reject
 * `spawn` with SPAWN_FAILED and a clear reason.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { OverthereError } from '@overthere/core';
import { errorCode } from './process-group.js';

/** What execvp searches when the environment has no PATH (glibc, libuv). */
export const DEFAULT_PATH = '/usr/bin:/bin';

/** Rejects with SPAWN_FAILED unless `cwd` is an existing, searchable directory. */
export async function checkCwd(cwd: string): Promise<void> {
  try {
    const stats = await stat(cwd);
    if (!stats.isDirectory()) throw spawnFailed(`cwd ${cwd} is not a directory (ENOTDIR)`);
    await access(cwd, constants.X_OK);
  } catch (error) {
    if (OverthereError.is(error)) throw error;
    const code = errorCode(error);
    if (code === 'ENOENT') throw spawnFailed(`cwd ${cwd} does not exist (ENOENT)`, error);
    if (code === 'ENOTDIR') throw spawnFailed(`cwd ${cwd} is not a directory (ENOTDIR)`, error);
    throw spawnFailed(`cwd ${cwd} is not usable (${code ?? String(error)})`, error);
  }
}

/**
 * Finds `command` like execvp does: as a path when it contains a slash (relative
 * to the task's cwd), else in the PATH of the task's environment. Rejects with
 * SPAWN_FAILED `spawn <command> ENOENT` (or EACCES) when it is not there.
 */
export async function checkExecutable(
  command: string,
  env: Readonly<Record<string, string>>,
  cwd: string,
): Promise<void> {
  const candidates = command.includes('/')
    ? [path.resolve(cwd, command)]
    : (env.PATH ?? DEFAULT_PATH).split(':').map((dir) => path.resolve(cwd, dir || '.', command));
  let denied = false;
  for (const candidate of candidates) {
    const verdict = await executable(candidate);
    if (verdict === 'ok') return;
    if (verdict === 'denied') denied = true;
  }
  throw spawnFailed(`spawn ${command} ${denied ? 'EACCES' : 'ENOENT'}`);
}

async function executable(file: string): Promise<'ok' | 'denied' | 'missing'> {
  try {
    const stats = await stat(file);
    if (!stats.isFile()) return 'denied';
    await access(file, constants.X_OK);
    return 'ok';
  } catch (error) {
    return errorCode(error) === 'EACCES' ? 'denied' : 'missing';
  }
}

/**
 * The argv the kernel would build for a script starting with `#!`: the
 * interpreter, then the rest of the line as one optional argument (Linux
 * semantics). Undefined without a shebang.
 */
export function shebangArgv(script: string): string[] | undefined {
  if (!script.startsWith('#!')) return undefined;
  const end = script.indexOf('\n');
  const line = (end < 0 ? script.slice(2) : script.slice(2, end)).replace(/\r$/, '').trim();
  if (line === '') return [];
  const match = /^(\S+)(?:[ \t]+(.*))?$/.exec(line);
  if (!match?.[1]) return [];
  const argument = match[2]?.trim();
  return argument ? [match[1], argument] : [match[1]];
}

export function spawnFailed(message: string, cause?: unknown): OverthereError {
  return new OverthereError('SPAWN_FAILED', message, cause === undefined ? {} : { cause });
}
