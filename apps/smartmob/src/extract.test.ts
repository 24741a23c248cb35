import { lstat, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildArchive, type TestEntry } from '../test/archives.js';
import type { ArchiveFormat } from './download.js';
import { detectArchiveFormat } from './download.js';
import { extractArchive, ExtractError } from './extract.js';

const FORMATS: readonly ArchiveFormat[] = ['zip', 'tar', 'tar.gz', 'tar.bz2', 'tar.xz'];
const TAR_FORMATS: readonly ArchiveFormat[] = ['tar', 'tar.gz', 'tar.bz2', 'tar.xz'];

let base: string;
let target: string;

beforeEach(async () => {
  // `outside/` is where an escape would land: base/outside next to base/target.
  base = await mkdtemp(path.join(os.tmpdir(), 'smartmob-extract-'));
  target = path.join(base, 'target');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function unpack(
  format: ArchiveFormat,
  entries: readonly TestEntry[],
  caps: { maxEntries?: number; maxBytes?: number } = {},
) {
  const file = path.join(base, `archive.${format}`);
  await writeFile(file, await buildArchive(format, entries));
  return extractArchive({
    file,
    format,
    target,
    maxEntries: caps.maxEntries ?? 100,
    maxBytes: caps.maxBytes ?? 10 * 1024 * 1024,
  });
}

async function refused(
  format: ArchiveFormat,
  entries: readonly TestEntry[],
  caps: { maxEntries?: number; maxBytes?: number } = {},
  alreadyThere: readonly string[] = [],
): Promise<string> {
  const error = await unpack(format, entries, caps).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ExtractError);
  // Nothing landed beside the target.
  expect((await readdir(base)).sort()).toEqual(
    [`archive.${format}`, ...alreadyThere, ...((await exists(target)) ? ['target'] : [])].sort(),
  );
  return (error as Error).message;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

describe('extractArchive', () => {
  it.each(FORMATS)('unpacks %s: files, directories, modes, symlinks inside', async (format) => {
    const result = await unpack(format, [
      { name: 'app/', directory: true },
      { name: 'app/Procfile', data: 'web: ./run.sh\n' },
      { name: 'app/run.sh', data: '#!/bin/sh\necho hi\n', mode: 0o755 },
      { name: 'app/lib/deep/data.txt', data: 'x'.repeat(1000) },
      { name: 'app/current', symlink: 'lib/deep' },
    ]);
    expect(result.bytes).toBe(14 + 18 + 1000);
    expect(await readFile(path.join(target, 'app/Procfile'), 'utf8')).toBe('web: ./run.sh\n');
    expect((await stat(path.join(target, 'app/run.sh'))).mode & 0o111).not.toBe(0);
    expect((await stat(path.join(target, 'app/Procfile'))).mode & 0o111).toBe(0);
    expect(await readlink(path.join(target, 'app/current'))).toBe('lib/deep');
    expect(await readFile(path.join(target, 'app/current/data.txt'), 'utf8')).toHaveLength(1000);
  });

  it('unpacks a tar hardlink to a file of the archive', async () => {
    await unpack('tar', [
      { name: 'a.txt', data: 'same' },
      { name: 'b.txt', hardlink: 'a.txt' },
    ]);
    expect(await readFile(path.join(target, 'b.txt'), 'utf8')).toBe('same');
  });

  it.each(FORMATS)('refuses %s entries with .. (zip-slip / tar-slip)', async (format) => {
    const message = await refused(format, [
      { name: 'ok.txt', data: 'fine' },
      { name: '../outside/evil.txt', data: 'pwned' },
    ]);
    expect(message).toMatch(/evil\.txt|relative path/);
  });

  it.each(TAR_FORMATS)('refuses %s entries with an absolute path', async (format) => {
    const message = await refused(format, [{ name: `${base}/outside-abs.txt`, data: 'pwned' }]);
    expect(message).toMatch(/absolute path/);
  });

  it.each(FORMATS)('refuses a %s symlink that points out of the target', async (format) => {
    const message = await refused(format, [{ name: 'escape', symlink: '../outside' }]);
    expect(message).toMatch(/symlink "escape" points outside/);
  });

  it.each(FORMATS)('refuses a %s symlink to an absolute path', async (format) => {
    const message = await refused(format, [{ name: 'etc', symlink: '/etc' }]);
    expect(message).toMatch(/points outside the target \(\/etc\)/);
  });

  it.each(FORMATS)(
    'refuses writing through a %s symlink, even one that points inside',
    async (format) => {
      const message = await refused(format, [
        { name: 'dir/', directory: true },
        { name: 'link', symlink: 'dir' },
        { name: 'link/file.txt', data: 'through the link' },
      ]);
      expect(message).toMatch(/goes through the symlink link/);
    },
  );

  it('refuses a symlink chain whose real target is outside though each link looks inside', async () => {
    // a -> . makes a/b/.. one level shallower than it looks.
    const message = await refused('tar', [
      { name: 'a', symlink: '.' },
      { name: 'b/', directory: true },
      { name: 'c', symlink: 'a/b/../..' },
    ]);
    expect(message).toMatch(/points outside/);
  });

  it('refuses a tar hardlink to a file outside the archive', async () => {
    await writeFile(path.join(base, 'secret'), 'secret');
    const message = await refused('tar', [{ name: 'stolen', hardlink: '../secret' }], {}, [
      'secret',
    ]);
    expect(message).toMatch(/hardlink "stolen" points outside/);
    expect(await exists(path.join(target, 'stolen'))).toBe(false);
    await rm(path.join(base, 'secret'));
  });

  it.each(FORMATS)(
    'stops a %s decompression bomb at the byte cap',
    async (format) => {
      // 64 MiB of zeros compress to a few KiB; the cap is 1 MiB.
      const zeros = Buffer.alloc(64 * 1024 * 1024);
      const started = Date.now();
      const message = await refused(format, [{ name: 'bomb.bin', data: zeros }], {
        maxBytes: 1024 * 1024,
      });
      expect(message).toMatch(/more than 1048576 bytes/);
      expect(Date.now() - started).toBeLessThan(15_000);
    },
    60_000,
  );

  it('stops a zip bomb that lies about its size while it streams', async () => {
    const message = await refused(
      'zip',
      [{ name: 'liar.bin', data: Buffer.alloc(8 * 1024 * 1024), declaredSize: 10 }],
      { maxBytes: 1024 * 1024 },
    );
    expect(message).toMatch(/more than 1048576 bytes|too many|size/);
  });

  it.each(['zip', 'tar.gz'] as const)('caps the number of %s entries', async (format) => {
    const entries = Array.from({ length: 20 }, (_, index) => ({ name: `f${index}`, data: 'x' }));
    const message = await refused(format, entries, { maxEntries: 10 });
    expect(message).toMatch(/more than 10 entries/);
  });

  it('refuses an entry given twice instead of overwriting', async () => {
    const message = await refused('tar', [
      { name: 'a.txt', data: 'one' },
      { name: 'a.txt', data: 'two' },
    ]);
    expect(message).toMatch(/appears twice/);
  });

  it('fails clearly on a corrupt archive', async () => {
    const file = path.join(base, 'archive.tar.gz');
    await writeFile(file, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(100, 7)]));
    await expect(
      extractArchive({ file, format: 'tar.gz', target, maxEntries: 10, maxBytes: 1000 }),
    ).rejects.toThrow(ExtractError);
  });
});

describe('detectArchiveFormat', () => {
  it.each(FORMATS)('recognises %s by its magic bytes whatever the content type', async (format) => {
    const archive = await buildArchive(format, [{ name: 'a', data: 'b' }]);
    expect(detectArchiveFormat(archive.subarray(0, 512), 'application/octet-stream')).toBe(format);
  });

  it('falls back to the content type, and gives up on neither', () => {
    const nothing = Buffer.alloc(512);
    expect(detectArchiveFormat(nothing, 'application/x-tar')).toBe('tar');
    expect(detectArchiveFormat(nothing, 'text/html')).toBeUndefined();
    expect(detectArchiveFormat(nothing, undefined)).toBeUndefined();
  });
});
