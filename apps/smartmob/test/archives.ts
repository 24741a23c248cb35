/**
 * Archives built in the tests, hostile ones included: a small zip writer (any
 * name, symlink entries, deflated bombs), tar through tar-stream's packer
 * (which writes names as given), compressed with zlib or the system's bzip2/xz.
 */
import { execFileSync } from 'node:child_process';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import type { ArchiveFormat } from '../src/download.js';

/** One entry of a test archive. */
export interface TestEntry {
  name: string;
  /** File content (default empty). */
  data?: string | Buffer;
  /** Unix permission bits (default 0o644, 0o755 for directories). */
  mode?: number;
  /** Make it a directory. */
  directory?: boolean;
  /** Make it a symlink to this target. */
  symlink?: string;
  /** tar only: a hardlink to this archive path. */
  hardlink?: string;
  /** zip only: claim this uncompressed size in the headers. */
  declaredSize?: number;
}

/** A zip archive, entries deflated. */
export function zipArchive(entries: readonly TestEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const content = entry.symlink !== undefined ? Buffer.from(entry.symlink) : toBuffer(entry.data);
    const compressed = deflateRawSync(content);
    const crc = crc32(content);
    const type = entry.symlink !== undefined ? 0o120000 : entry.directory ? 0o040000 : 0o100000;
    const mode = entry.mode ?? (entry.directory ? 0o755 : 0o644);
    const size = entry.declaredSize ?? content.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(compressed.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(compressed.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((type | mode) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, compressed);
    centrals.push(central, name);
    offset += local.length + name.length + compressed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

function toBuffer(data: string | Buffer | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** A plain tar archive. */
export async function tarArchive(entries: readonly TestEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const collected = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const entry of entries) {
    if (entry.directory) {
      pack.entry({ name: entry.name, type: 'directory', mode: entry.mode ?? 0o755 });
    } else if (entry.symlink !== undefined) {
      pack.entry({ name: entry.name, type: 'symlink', linkname: entry.symlink });
    } else if (entry.hardlink !== undefined) {
      pack.entry({ name: entry.name, type: 'link', linkname: entry.hardlink });
    } else {
      pack.entry({ name: entry.name, mode: entry.mode ?? 0o644 }, toBuffer(entry.data));
    }
  }
  pack.finalize();
  return collected;
}

/** An archive of `format` with `entries`. */
export async function buildArchive(
  format: ArchiveFormat,
  entries: readonly TestEntry[],
): Promise<Buffer> {
  if (format === 'zip') return zipArchive(entries);
  const tar = await tarArchive(entries);
  switch (format) {
    case 'tar':
      return tar;
    case 'tar.gz':
      return gzipSync(tar);
    case 'tar.bz2':
      return execFileSync('bzip2', ['-c'], { input: tar, maxBuffer: 1 << 30 });
    default:
      return execFileSync('xz', ['-c'], { input: tar, maxBuffer: 1 << 30 });
  }
}

/** Content type servers commonly send for each format. */
export const CONTENT_TYPES: Readonly<Record<ArchiveFormat, string>> = {
  zip: 'application/zip',
  tar: 'application/x-tar',
  'tar.gz': 'application/gzip',
  'tar.bz2': 'application/x-bzip2',
  'tar.xz': 'application/x-xz',
};
