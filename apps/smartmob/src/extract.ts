/**
 * Unpack an untrusted archive into a directory: zip, tar, tar.gz, tar.bz2,
 * tar.xz. Every entry must stay inside the target: no absolute names, no
 * `..`, nothing written through a symlink, symlinks and hardlinks may only
 * point inside. The number of entries and the bytes written are capped while
 * data streams, so a decompression bomb stops at the cap, not after it.
 * Any violation fails the whole extraction; the caller removes the target.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, readlink, realpath, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import yauzl from 'yauzl';
import type { ArchiveFormat } from './download.js';

/** Options for {@link extractArchive}. */
export interface ExtractOptions {
  /** The archive file. */
  file: string;
  format: ArchiveFormat;
  /** Directory to unpack into; created if missing; should be empty. */
  target: string;
  /** At most this many entries (files, directories, links). */
  maxEntries: number;
  /** At most this many bytes written, all files together. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** What was unpacked. */
export interface ExtractResult {
  entries: number;
  bytes: number;
}

/** An archive that was refused or could not be read; the message names the entry. */
export class ExtractError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ExtractError';
  }
}

/** Longest symlink target read from a zip entry. */
const MAX_LINK_TARGET_BYTES = 4096;

type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink';

/** Checks and writes entries for one extraction; the same rules for zip and tar. */
class EntryWriter {
  entries = 0;
  bytes = 0;
  private readonly root: string;
  /** Relative paths of symlinks (created at the end): nothing may be written through them. */
  private readonly symlinks = new Map<string, string>();
  /** Relative paths of regular files written, the only valid hardlink sources. */
  private readonly files = new Set<string>();

  constructor(
    root: string,
    private readonly options: ExtractOptions,
  ) {
    this.root = root;
  }

  /** The entry's path relative to the root, normalised; throws when it could escape. */
  relative(name: string): string {
    const display = JSON.stringify(name);
    if (name.includes('\0')) throw new ExtractError(`entry ${display} has a NUL in its name`);
    if (path.isAbsolute(name) || /^[A-Za-z]:/.test(name) || name.startsWith('\\')) {
      throw new ExtractError(`entry ${display} has an absolute path`);
    }
    const parts = name.split(/[/\\]+/).filter((part) => part !== '' && part !== '.');
    if (parts.includes('..')) throw new ExtractError(`entry ${display} escapes the target (..)`);
    const relative = parts.join('/');
    for (let index = 1; index <= parts.length; index += 1) {
      const prefix = parts.slice(0, index).join('/');
      if (this.symlinks.has(prefix) && prefix !== relative) {
        throw new ExtractError(`entry ${display} goes through the symlink ${prefix}`);
      }
    }
    return relative;
  }

  /** Count an entry against the cap. */
  count(name: string): void {
    this.entries += 1;
    if (this.entries > this.options.maxEntries) {
      throw new ExtractError(
        `archive has more than ${this.options.maxEntries} entries (at ${JSON.stringify(name)})`,
      );
    }
  }

  /** Throws when `declared` more bytes would pass the cap (a header that admits it is a bomb). */
  reserve(name: string, declared: number): void {
    if (this.bytes + declared > this.options.maxBytes) {
      throw new ExtractError(this.tooLarge(name));
    }
  }

  private tooLarge(name: string): string {
    return `archive unpacks to more than ${this.options.maxBytes} bytes (at ${JSON.stringify(name)})`;
  }

  private absolute(relative: string): string {
    return relative === '' ? this.root : path.join(this.root, relative);
  }

  async directory(name: string): Promise<void> {
    const relative = this.relative(name);
    if (this.symlinks.has(relative)) {
      throw new ExtractError(`entry ${JSON.stringify(name)} is already a symlink`);
    }
    await mkdir(this.absolute(relative), { recursive: true, mode: 0o755 });
  }

  async file(
    name: string,
    mode: number,
    open: () => Promise<Readable | AsyncIterable<Buffer>>,
  ): Promise<void> {
    const relative = this.relative(name);
    if (relative === '' || this.symlinks.has(relative)) {
      throw new ExtractError(`entry ${JSON.stringify(name)} cannot be written`);
    }
    const destination = this.absolute(relative);
    await mkdir(path.dirname(destination), { recursive: true, mode: 0o755 });
    const counter = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.bytes += chunk.length;
        if (this.bytes > this.options.maxBytes) {
          callback(new ExtractError(this.tooLarge(name)));
          return;
        }
        callback(null, chunk);
      },
    });
    // `wx` (O_EXCL) never follows a symlink and refuses a name given twice.
    const output = createWriteStream(destination, {
      flags: 'wx',
      mode: (mode & 0o111) !== 0 ? 0o755 : 0o644,
    });
    try {
      // Opened only now, with the pipeline ready to take its errors.
      await pipeline(
        await open(),
        counter,
        output,
        ...(this.options.signal ? [{ signal: this.options.signal }] : []),
      );
    } catch (error) {
      if (error instanceof ExtractError) throw error;
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ExtractError(`entry ${JSON.stringify(name)} appears twice`, { cause: error });
      }
      throw error;
    }
    this.files.add(relative);
  }

  /** Record a symlink; it is created by {@link finish}, after every file. */
  symlink(name: string, target: string): void {
    const relative = this.relative(name);
    const display = JSON.stringify(name);
    if (relative === '') throw new ExtractError(`entry ${display} cannot be a symlink`);
    if (target === '' || target.includes('\0')) {
      throw new ExtractError(`symlink ${display} has an invalid target`);
    }
    if (path.isAbsolute(target)) {
      throw new ExtractError(`symlink ${display} points outside the target (${target})`);
    }
    const resolved = path.resolve(path.dirname(this.absolute(relative)), target);
    if (!isInside(this.root, resolved)) {
      throw new ExtractError(`symlink ${display} points outside the target (${target})`);
    }
    if (this.symlinks.has(relative) || this.files.has(relative)) {
      throw new ExtractError(`entry ${display} appears twice`);
    }
    this.symlinks.set(relative, target);
  }

  async hardlink(name: string, target: string): Promise<void> {
    const relative = this.relative(name);
    const display = JSON.stringify(name);
    let source: string;
    try {
      source = this.relative(target);
    } catch (error) {
      throw new ExtractError(`hardlink ${display} points outside the target (${target})`, {
        cause: error,
      });
    }
    // Only to a regular file of this archive: never to something already on disk.
    if (!this.files.has(source)) {
      throw new ExtractError(`hardlink ${display} points to ${target}, not a file of the archive`);
    }
    const destination = this.absolute(relative);
    await mkdir(path.dirname(destination), { recursive: true, mode: 0o755 });
    await link(this.absolute(source), destination);
    this.files.add(relative);
  }

  /** Create the symlinks, then check where each one really leads. */
  async finish(): Promise<void> {
    // Parents before children, so a link to a link is created in a sensible order.
    const ordered = [...this.symlinks].sort(([a], [b]) => a.length - b.length);
    for (const [relative, target] of ordered) {
      const destination = this.absolute(relative);
      await mkdir(path.dirname(destination), { recursive: true, mode: 0o755 });
      await symlink(target, destination);
    }
    const realRoot = await realpath(this.root);
    for (const [relative] of ordered) {
      const destination = this.absolute(relative);
      let resolved: string;
      try {
        resolved = await realpath(destination);
      } catch {
        // Dangling: judge where it would lead once its target exists.
        const parent = await realpath(path.dirname(destination));
        resolved = path.resolve(parent, await readlink(destination));
      }
      if (!isInside(realRoot, resolved)) {
        throw new ExtractError(`symlink ${JSON.stringify(relative)} points outside the target`);
      }
    }
  }
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/** Unpack `options.file` into `options.target`. */
export async function extractArchive(options: ExtractOptions): Promise<ExtractResult> {
  await mkdir(options.target, { recursive: true, mode: 0o755 });
  const writer = new EntryWriter(path.resolve(options.target), options);
  if (options.format === 'zip') await extractZip(options, writer);
  else await extractTar(options, writer);
  await writer.finish();
  return { entries: writer.entries, bytes: writer.bytes };
}

// ---------------------------------------------------------------- zip

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(
      file,
      { lazyEntries: true, autoClose: true, decodeStrings: true, validateEntrySizes: true },
      (error, zip) => (error ? reject(error) : resolve(zip)),
    );
  });
}

function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (error, stream) => (error ? reject(error) : resolve(stream)));
  });
}

async function readAll(stream: Readable, maxBytes: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > maxBytes) {
      stream.destroy();
      throw new ExtractError(`symlink ${JSON.stringify(name)} has a target that is too long`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

async function extractZip(options: ExtractOptions, writer: EntryWriter): Promise<void> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(options.file);
  } catch (error) {
    throw new ExtractError(`not a readable zip archive: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (error: unknown) => {
        zip.close();
        reject(
          error instanceof ExtractError
            ? error
            : new ExtractError(`zip: ${(error as Error).message}`, { cause: error }),
        );
      };
      zip.on('error', fail);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        void handleZipEntry(zip, entry, writer).then(() => {
          if (options.signal?.aborted) fail(new ExtractError('extraction cancelled'));
          else zip.readEntry();
        }, fail);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

async function handleZipEntry(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  writer: EntryWriter,
): Promise<void> {
  const name = entry.fileName;
  writer.count(name);
  const unixMode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const kind: EntryKind =
    (unixMode & S_IFMT) === S_IFLNK
      ? 'symlink'
      : name.endsWith('/') || (unixMode & S_IFMT) === S_IFDIR
        ? 'directory'
        : 'file';
  if (kind === 'directory') {
    await writer.directory(name);
    return;
  }
  if (kind === 'symlink') {
    const target = await readAll(await openEntry(zip, entry), MAX_LINK_TARGET_BYTES, name);
    writer.symlink(name, target.toString('utf8'));
    return;
  }
  // The declared size may lie; the streaming count below is what stops a bomb.
  writer.reserve(name, entry.uncompressedSize);
  await writer.file(name, unixMode & 0o777, () => openEntry(zip, entry));
}

// ---------------------------------------------------------------- tar

/** The decompressor for a compressed tar: zlib for gzip, the system's bzip2 and xz otherwise. */
function decompressor(
  format: ArchiveFormat,
  input: Readable,
): { output: Readable; done: Promise<void> } {
  if (format === 'tar') return { output: input, done: Promise.resolve() };
  if (format === 'tar.gz') {
    const gunzip = createGunzip();
    return { output: gunzip, done: pipeline(input, gunzip).catch(gzipError) };
  }
  const program = format === 'tar.bz2' ? 'bzip2' : 'xz';
  const child = spawn(program, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 1000) stderr += chunk;
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new ExtractError(
              `${format} archives need the ${program} program, which is not installed on the agent`,
              { cause: error },
            )
          : error,
      );
    });
    child.once('close', (code, signal) => {
      if (code === 0 || signal === 'SIGTERM') resolve();
      else reject(new ExtractError(`${program}: ${stderr.trim() || `exit status ${code}`}`));
    });
  });
  // Killed when the tar side stops early (cap reached, bad entry): no more work for it.
  child.stdout.once('close', () => child.kill('SIGTERM'));
  const fed = pipeline(input, child.stdin).catch((error: NodeJS.ErrnoException) => {
    // The reader went away first (EPIPE): its own error tells the story.
    if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error;
  });
  return { output: child.stdout, done: Promise.all([fed, exited]).then(() => undefined) };
}

function gzipError(error: NodeJS.ErrnoException): never {
  if (error.code === 'ERR_STREAM_PREMATURE_CLOSE') throw error;
  throw new ExtractError(`gzip: ${error.message}`, { cause: error });
}

async function extractTar(options: ExtractOptions, writer: EntryWriter): Promise<void> {
  const input = createReadStream(options.file);
  const { output, done } = decompressor(options.format, input);
  const extract = tarStream.extract();
  const fed = pipeline(output, extract);
  // Unhandled until awaited below; failures of the feeders surface there.
  done.catch(() => undefined);
  fed.catch(() => undefined);
  try {
    for await (const entry of extract) {
      if (options.signal?.aborted) throw new ExtractError('extraction cancelled');
      const header = entry.header;
      const name = header.name;
      writer.count(name);
      switch (header.type) {
        case 'file':
        case 'contiguous-file':
          writer.reserve(name, header.size ?? 0);
          await writer.file(name, header.mode ?? 0o644, () =>
            Promise.resolve(entry as AsyncIterable<Buffer>),
          );
          break;
        case 'directory':
          await writer.directory(name);
          entry.resume();
          break;
        case 'symlink':
          writer.symlink(name, header.linkname ?? '');
          entry.resume();
          break;
        case 'link':
          await writer.hardlink(name, header.linkname ?? '');
          entry.resume();
          break;
        default:
          throw new ExtractError(
            `entry ${JSON.stringify(name)} is a ${header.type ?? 'special file'}, which is not allowed`,
          );
      }
    }
    await fed;
    await done;
  } catch (error) {
    extract.destroy();
    input.destroy();
    output.destroy();
    if (error instanceof ExtractError) throw error;
    // The decompressor's own failure says more than tar's "unexpected end".
    const earlier = await done.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    if (earlier instanceof ExtractError) throw earlier;
    throw new ExtractError(
      `not a readable ${options.format} archive: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
