/**
 * Signalling process groups and sessions. Every task is started as the leader
 * of a new session (setsid), so its pid is also its process group id and its
 * session id.
 */
import { readFile, readdir } from 'node:fs/promises';
import { constants } from 'node:os';

/**
 * Send `signal` to the process group `pgid`. Returns false when the group no
 * longer exists (ESRCH); other errors are thrown.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  return signalPid(-pgid, signal);
}

/** Send `signal` to one pid (negative: a group). False when it no longer exists. */
export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ESRCH') return false;
    throw error;
  }
}

/**
 * SIGKILL every process whose session id is `sid` (Linux: read from /proc).
 * This reaches descendants that moved to another process group of the session
 * (a job-control shell in a terminal does that), which a group kill misses.
 * Without /proc it does nothing. Returns how many processes were signalled.
 */
export async function killSession(sid: number): Promise<number> {
  if (sid <= 1) return 0;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return 0;
  }
  let killed = 0;
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry)) return;
      const pid = Number(entry);
      if (pid === process.pid) return;
      let stat: string;
      try {
        stat = await readFile(`/proc/${entry}/stat`, 'latin1');
      } catch {
        return; // gone meanwhile
      }
      if (sessionOf(stat) !== sid) return;
      if (signalPid(pid, 'SIGKILL')) killed += 1;
    }),
  );
  return killed;
}

/** The session id field of a /proc/<pid>/stat line; the comm field may contain spaces and parens. */
export function sessionOf(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  // After "pid (comm) ": state ppid pgrp session ...
  const fields = stat.slice(close + 2).split(' ');
  const session = Number(fields[3]);
  return Number.isInteger(session) ? session : undefined;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, number]) => [number, name]),
);

/** The name of a signal number (`15` → `SIGTERM`); unknown numbers as `SIG<n>`. */
export function signalName(signal: number): string {
  return SIGNAL_NAMES.get(signal) ?? `SIG${signal}`;
}

/** The `code` of a Node system error, if any. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = error.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
