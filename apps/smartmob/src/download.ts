/**
 * Fetch a source archive: http and https only, a time limit for the whole
 * download, a size cap enforced while the body streams in (a lying or absent
 * Content-Length changes nothing), written to a file.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { open, rm } from 'node:fs/promises';

/** Archive formats the agent unpacks. */
export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz' | 'tar.bz2' | 'tar.xz';

/** Options for {@link downloadArchive}. */
export interface DownloadOptions {
  url: string;
  /** Where the body is written (replaced). */
  file: string;
  /** Limit for the whole download, headers and body. */
  timeoutMs: number;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Aborts the download (the process was deleted). */
  signal?: AbortSignal;
}

/** What was downloaded. */
export interface DownloadResult {
  bytes: number;
  /** The media type without parameters, lower case; undefined when absent. */
  contentType: string | undefined;
}

/** A download that failed; `message` says why in words a client can act on. */
export class DownloadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DownloadError';
  }
}

/**
 * Check that `url` is an absolute http or https URL.
 *
 * @throws DownloadError otherwise.
 */
export function parseSourceUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new DownloadError(`source_url ${JSON.stringify(url)} is not a URL`, { cause: error });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new DownloadError(
      `source_url must be http or https, not ${JSON.stringify(parsed.protocol.slice(0, -1))}`,
    );
  }
  return parsed;
}

/** Download `options.url` to `options.file`. */
export async function downloadArchive(options: DownloadOptions): Promise<DownloadResult> {
  const url = parseSourceUrl(options.url);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal =
    options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
  const describe = (error: unknown): DownloadError => {
    if (timeout.aborted) {
      return new DownloadError(`download took longer than ${options.timeoutMs} ms`, {
        cause: error,
      });
    }
    if (options.signal?.aborted) return new DownloadError('download cancelled', { cause: error });
    if (error instanceof DownloadError) return error;
    const cause = (error as { cause?: { message?: string } }).cause;
    return new DownloadError(
      `download failed: ${cause?.message ?? (error as Error).message ?? String(error)}`,
      { cause: error },
    );
  };

  let response: Response;
  try {
    // Redirects are followed by fetch, which only ever speaks http and https.
    response = await fetch(url, { signal, redirect: 'follow' });
  } catch (error) {
    throw describe(error);
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel().catch(() => undefined);
    throw new DownloadError(`download failed: HTTP ${response.status} from ${url.href}`);
  }
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    await response.body.cancel().catch(() => undefined);
    throw new DownloadError(
      `archive is ${declared} bytes, more than the ${options.maxBytes} allowed`,
    );
  }
  const contentType =
    response.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() || undefined;

  const output = createWriteStream(options.file, { mode: 0o600 });
  let bytes = 0;
  try {
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      if (bytes > options.maxBytes) {
        throw new DownloadError(`archive is more than the ${options.maxBytes} bytes allowed`);
      }
      if (!output.write(chunk)) await once(output, 'drain', { signal });
    }
    output.end();
    await once(output, 'close');
  } catch (error) {
    output.destroy();
    await rm(options.file, { force: true });
    throw describe(error);
  }
  return { bytes, contentType };
}

const CONTENT_TYPES: Readonly<Record<string, ArchiveFormat>> = {
  'application/zip': 'zip',
  'application/x-zip-compressed': 'zip',
  'application/x-tar': 'tar',
  'application/x-gtar': 'tar.gz',
  'application/gzip': 'tar.gz',
  'application/x-gzip': 'tar.gz',
  'application/x-tgz': 'tar.gz',
  'application/x-compressed-tar': 'tar.gz',
  'application/x-bzip2': 'tar.bz2',
  'application/x-bzip': 'tar.bz2',
  'application/x-bzip2-compressed-tar': 'tar.bz2',
  'application/x-xz': 'tar.xz',
  'application/x-xz-compressed-tar': 'tar.xz',
};

/**
 * The archive's format from its first bytes (at least 262 for plain tar), or
 * from its Content-Type when the bytes say nothing (a pre-POSIX tar has no
 * magic). The bytes win: servers often send `application/octet-stream`.
 */
export function detectArchiveFormat(
  head: Uint8Array,
  contentType: string | undefined,
): ArchiveFormat | undefined {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const starts = (magic: readonly number[], at = 0) =>
    bytes.length >= at + magic.length && magic.every((value, index) => bytes[at + index] === value);
  // Local file header, or the end record of an empty archive.
  if (starts([0x50, 0x4b, 0x03, 0x04]) || starts([0x50, 0x4b, 0x05, 0x06])) return 'zip';
  if (starts([0x1f, 0x8b])) return 'tar.gz';
  if (starts([0x42, 0x5a, 0x68])) return 'tar.bz2';
  if (starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'tar.xz';
  if (starts([0x75, 0x73, 0x74, 0x61, 0x72], 257)) return 'tar';
  return contentType === undefined ? undefined : CONTENT_TYPES[contentType];
}

/** The first `length` bytes of `file`. */
export async function readHead(file: string, length = 512): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
