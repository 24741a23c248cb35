/** Resolving `spec.user` (a name or a numeric uid) to credentials. */
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { OverthereError } from '@overthere/core';

/** Who a task runs as. */
export interface Credentials {
  uid: number;
  gid: number;
  /** Login name, when known. */
  name: string | undefined;
  /** Home directory, when known. */
  home: string | undefined;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/**
 * Resolve a user name or uid. Names are looked up in /etc/passwd, then with
 * `getent passwd` (NSS: LDAP, systemd-homed, …). A numeric uid needs no entry;
 * without one its gid is the same number.
 */
export async function resolveUser(user: string | number): Promise<Credentials> {
  if (typeof user === 'number' || /^\d+$/.test(user)) {
    const uid = Number(user);
    if (!Number.isSafeInteger(uid) || uid < 0) {
      throw new OverthereError('INVALID_ARGUMENT', `user must be a name or a uid: ${String(user)}`);
    }
    const entry = (await fromPasswdFile((e) => e.uid === uid)) ?? (await fromGetent(String(uid)));
    return entry
      ? { uid, gid: entry.gid, name: entry.name, home: entry.home }
      : { uid, gid: uid, name: undefined, home: undefined };
  }
  if (user === '' || /[:\s/]/.test(user)) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `user must be a name or a uid: ${JSON.stringify(user)}`,
    );
  }
  const entry = (await fromPasswdFile((e) => e.name === user)) ?? (await fromGetent(user));
  if (entry === undefined) throw new OverthereError('SPAWN_FAILED', `unknown user ${user}`);
  return { uid: entry.uid, gid: entry.gid, name: entry.name, home: entry.home };
}

async function fromPasswdFile(
  match: (entry: PasswdEntry) => boolean,
): Promise<PasswdEntry | undefined> {
  let text: string;
  try {
    text = await readFile('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const entry = parsePasswdLine(line);
    if (entry && match(entry)) return entry;
  }
  return undefined;
}

function fromGetent(key: string): Promise<PasswdEntry | undefined> {
  return new Promise((resolve) => {
    execFile('getent', ['passwd', key], { timeout: 5_000 }, (error, stdout) => {
      // Exit status 2 = not found; ENOENT = no getent. Either way: unknown.
      resolve(error ? undefined : parsePasswdLine(stdout.split('\n')[0] ?? ''));
    });
  });
}

/** `name:password:uid:gid:gecos:home:shell` */
export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const fields = line.split(':');
  if (fields.length < 7) return undefined;
  const [name, , uid, gid, , home] = fields;
  if (!name || !uid || !gid || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return undefined;
  return { name, uid: Number(uid), gid: Number(gid), home: home ?? '/' };
}
