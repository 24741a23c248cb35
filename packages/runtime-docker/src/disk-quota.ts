/**
 * A real per-container disk quota where the storage driver has none
 * (overlay2 without project quotas): a sparse ext4 image of the quota's size,
 * loop-mounted on the host and bound into the container as its writable areas.
 * Writes past the size fail with ENOSPC inside the container.
 */
import { execFile } from 'node:child_process';
import { mkdir, open, readdir, rm, chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { OverthereError } from '@overthere/core';

const run = promisify(execFile);

/** A mounted quota filesystem. */
export interface QuotaVolume {
  /** Host directory bound into the container as its working area. */
  readonly workPath: string;
  /** Host directory bound into the container as `/tmp`. */
  readonly tmpPath: string;
  /** Unmount and delete the image. Idempotent. */
  release(): Promise<void>;
}

/** Smallest quota accepted: ext4 needs some room for itself. */
export const MIN_QUOTA_BYTES = 64 * 1024;

/** Image size for a quota: the usable space plus room for ext4's own metadata. */
function imageBytes(quotaBytes: number): number {
  return Math.ceil((quotaBytes + 48 * 1024 + quotaBytes / 32) / 4096) * 4096;
}

function paths(dir: string, name: string) {
  return { image: join(dir, `${name}.img`), mount: join(dir, name) };
}

async function isMounted(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return mounts.split('\n').some((line) => line.split(' ')[1] === path);
}

async function unmount(path: string): Promise<void> {
  if (!(await isMounted(path))) return;
  // Lazy: a container being torn down may still hold it for a moment.
  await run('umount', ['-l', path]);
}

/** Create, format and mount a quota filesystem of `quotaBytes` named `name` under `dir`. */
export async function createQuotaVolume(
  dir: string,
  name: string,
  quotaBytes: number,
): Promise<QuotaVolume> {
  if (!Number.isFinite(quotaBytes) || quotaBytes < MIN_QUOTA_BYTES) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `limits.diskBytes must be at least ${MIN_QUOTA_BYTES} bytes, got ${quotaBytes}`,
    );
  }
  const { image, mount } = paths(dir, name);
  const release = () => releaseQuotaVolume(dir, name);
  try {
    await mkdir(mount, { recursive: true });
    const file = await open(image, 'w', 0o600);
    try {
      await file.truncate(imageBytes(quotaBytes));
    } finally {
      await file.close();
    }
    const inodes = Math.max(64, Math.floor(quotaBytes / 16_384));
    await run('mkfs.ext4', [
      '-q',
      '-F',
      '-m',
      '0',
      '-N',
      String(inodes),
      '-O',
      '^has_journal,^resize_inode',
      image,
    ]);
    await run('mount', ['-o', 'loop,nosuid,nodev', image, mount]);
    const workPath = join(mount, 'work');
    const tmpPath = join(mount, 'tmp');
    await mkdir(workPath);
    await mkdir(tmpPath);
    // Any user the task runs as may write there, as in a fresh /tmp.
    await chmod(workPath, 0o1777);
    await chmod(tmpPath, 0o1777);
    return { workPath, tmpPath, release };
  } catch (error) {
    await release().catch(() => undefined);
    if (OverthereError.is(error)) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new OverthereError(
      'SPAWN_FAILED',
      `cannot set up a ${quotaBytes}-byte disk quota (loop-mounted ext4 under ${dir}; needs root, mkfs.ext4 and loop devices): ${reason}`,
      { cause: error },
    );
  }
}

/** Unmount and delete the quota filesystem `name` under `dir`, whatever state it is in. */
export async function releaseQuotaVolume(dir: string, name: string): Promise<void> {
  const { image, mount } = paths(dir, name);
  await unmount(mount);
  await rm(mount, { recursive: true, force: true });
  await rm(image, { force: true });
}

/** Names of the quota filesystems under `dir` (mounted or not). */
export async function listQuotaVolumes(dir: string): Promise<string[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.filter((entry) => entry.endsWith('.img')).map((entry) => entry.slice(0, -4));
}
