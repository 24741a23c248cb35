/**
 * The durable half of an OutputLog: segment files in one dir. Frames are
 * written in seq order, in batches; a segment is rotated once it reaches
 * `segmentBytes`; past `maxDiskBytes` the oldest segments are dropped (their
 * files recycled for new segments).
 *
 * Writes use synchronous file calls while those are quick, and the thread pool
 * otherwise (see file-calls.ts). Handing each batch to the thread pool costs
 * more CPU than copying it into the page cache: on a two-core machine that cut
 * the rate of a task streaming to a log to about two thirds of a bare pipe,
 * against nine tenths with synchronous writes.
 */

import { rm as rmFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  datasync,
  FileCallMode,
  syncPath,
  THREAD_POOL_CALLS,
  writeAll,
  type FileCalls,
} from '../file-calls.js';
import type { OutputFrame } from '../output-log.js';
import { recoverSegments } from './recovery.js';
import {
  FRAME_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
  streamIndex,
  writeFrameHeader,
  writeSegmentHeader,
  type StreamIndex,
} from './segment-format.js';
import type { Segment } from './segment-reader.js';

/** How the store writes. */
export type WriteMode = 'adaptive' | 'thread-pool';

/** Settings of a {@link SegmentStore}. */
export interface SegmentStoreSettings {
  segmentBytes: number;
  maxDiskBytes: number;
  /** `adaptive`: synchronous calls while they are quick; `thread-pool`: always asynchronous. */
  writeMode: WriteMode;
}

/** Gives the frame with a seq that is queued for writing. */
export type FrameSource = (seq: number) => OutputFrame;

/** Limits of one write: keeps each writev under IOV_MAX and each batch short. */
const MAX_BATCH_FRAMES = 500;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Smaller frames are copied into the batch buffer; larger ones get their own iovec. */
const COPY_BELOW_BYTES = 4096;

/** The segment files of one log. */
export class SegmentStore {
  /** Segments, oldest first; the last one is written to. Shared (read-only) with readers. */
  readonly segments: Segment[];
  /** Bytes the segment files take. */
  diskBytes: number;
  /** Seq after the last frame written. */
  writtenSeq: number;
  /** Stream offsets after the last frame written. */
  readonly writtenOffsets: [number, number];
  private readonly dir: string;
  private readonly settings: SegmentStoreSettings;
  private fd: number | undefined;
  private readonly unsynced = new Set<Segment>();
  private dirUnsynced = false;
  /** `dir` is made with the first segment. */
  private dirMissing = false;
  private readonly callMode: FileCallMode;

  private constructor(
    dir: string,
    settings: SegmentStoreSettings,
    segments: Segment[],
    nextSeq: number,
    offsets: [number, number],
  ) {
    this.dir = dir;
    this.settings = settings;
    this.callMode = new FileCallMode(settings.writeMode === 'adaptive');
    this.segments = segments;
    this.diskBytes = segments.reduce((total, segment) => total + segment.fileBytes, 0);
    this.writtenSeq = nextSeq;
    this.writtenOffsets = offsets;
  }

  /**
   * Open the store in `dir`, recovering the segments already there; `missing`
   * says `dir` does not exist yet: nothing to recover, and it is made with
   * the first segment (a task that writes nothing costs no directory).
   */
  static async open(
    dir: string,
    settings: SegmentStoreSettings,
    missing = false,
  ): Promise<SegmentStore> {
    if (missing) {
      const store = new SegmentStore(dir, settings, [], 0, [0, 0]);
      store.dirMissing = true;
      return store;
    }
    const recovered = await recoverSegments(dir);
    const store = new SegmentStore(
      dir,
      settings,
      recovered.segments,
      recovered.nextSeq,
      recovered.bytes,
    );
    await store.enforceCap(THREAD_POOL_CALLS);
    return store;
  }

  /**
   * Write the frames from {@link writtenSeq} on, up to `endSeq` but at most one
   * batch and never past the end of a segment. Returns the data bytes written.
   */
  async write(frameAt: FrameSource, endSeq: number): Promise<number> {
    const { calls: operations, end } = this.callMode.begin();
    try {
      return await this.writeBatch(operations, frameAt, endSeq);
    } finally {
      end();
    }
  }

  private async writeBatch(
    operations: FileCalls,
    frameAt: FrameSource,
    endSeq: number,
  ): Promise<number> {
    const segment = await this.prepareSegment(operations);
    const fd = this.fd;
    if (fd === undefined) throw new Error('output log segment is not open');
    const batch = encodeBatch(
      segment,
      frameAt,
      this.writtenSeq,
      endSeq,
      this.settings.segmentBytes,
      this.writtenOffsets,
    );
    await writeAll(operations, fd, batch.buffers, segment.size);

    segment.size += batch.bytes;
    segment.endSeq = batch.endSeq;
    if (segment.size > segment.fileBytes) {
      this.diskBytes += segment.size - segment.fileBytes;
      segment.fileBytes = segment.size;
    }
    this.writtenSeq = batch.endSeq;
    this.writtenOffsets[0] = batch.offsets[0];
    this.writtenOffsets[1] = batch.offsets[1];
    await this.enforceCap(operations);
    return batch.dataBytes;
  }

  /** fsync what was written: the open segment, rotated ones not synced yet, and the dir. */
  async sync(): Promise<void> {
    const current = this.segments.at(-1);
    const fd = this.fd;
    if (fd !== undefined && current !== undefined) {
      await this.truncateStale(THREAD_POOL_CALLS, current, fd);
      await datasync(fd);
    }
    for (const segment of [...this.unsynced]) {
      this.unsynced.delete(segment);
      if (!segment.deleted) await syncPath(segment.path);
    }
    if (this.dirUnsynced) {
      this.dirUnsynced = false;
      await syncPath(this.dir).catch(() => undefined); // Not every platform syncs dirs.
    }
  }

  /** Close the open segment file. */
  async close(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) await THREAD_POOL_CALLS.close(fd);
  }

  /** Close and delete every segment file, and the dir when nothing else is in it. */
  async destroy(): Promise<void> {
    await this.close().catch(() => undefined);
    const segments = this.segments.splice(0);
    this.diskBytes = 0;
    for (const segment of segments) segment.deleted = true;
    await Promise.all(segments.map((segment) => rmFile(segment.path, { force: true })));
    await rmdir(this.dir).catch(() => undefined);
  }

  /** The segment holding `seq` (binary search; segments are contiguous). */
  segmentFor(seq: number): Segment | undefined {
    let low = 0;
    let high = this.segments.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const segment = this.segments[middle];
      if (segment === undefined) break;
      if (seq < segment.firstSeq) high = middle - 1;
      else if (seq >= segment.endSeq) low = middle + 1;
      else return segment;
    }
    return undefined;
  }

  /** The first seq of the last segment that starts at or before byte `offset` of `stream`. */
  segmentStartFor(stream: StreamIndex, offset: number): number | undefined {
    for (let index = this.segments.length - 1; index >= 0; index -= 1) {
      const segment = this.segments[index];
      if (segment !== undefined && segment.startOffsets[stream] <= offset) return segment.firstSeq;
    }
    return undefined;
  }

  // Rotate once the segment is full; an empty one (recovered) is reused, so names stay unique.
  private async prepareSegment(operations: FileCalls): Promise<Segment> {
    let segment = this.segments.at(-1);
    if (
      segment === undefined ||
      (segment.size >= this.settings.segmentBytes && segment.endSeq > segment.firstSeq)
    ) {
      if (segment !== undefined && this.fd !== undefined) {
        const fd = this.fd;
        this.fd = undefined;
        await this.truncateStale(operations, segment, fd);
        this.unsynced.add(segment);
        await operations.close(fd);
      }
      segment = await this.startSegment(operations);
    }
    this.fd ??= await operations.open(segment.path, 'r+');
    return segment;
  }

  /**
   * Open the segment for the next frames. When the cap is about to drop the oldest
   * segment anyway, its file is renamed and overwritten instead: rewriting cached
   * pages costs the kernel about half as much as freeing them and allocating new ones.
   */
  private async startSegment(operations: FileCalls): Promise<Segment> {
    if (this.dirMissing) {
      await operations.mkdir(this.dir);
      this.dirMissing = false;
    }
    const path = join(this.dir, segmentFileName(this.writtenSeq));
    const oldest = this.segments[0];
    let fileBytes = 0;
    if (
      oldest !== undefined &&
      this.segments.length > 1 &&
      this.diskBytes + this.settings.segmentBytes > this.settings.maxDiskBytes
    ) {
      this.segments.shift();
      oldest.deleted = true; // Before the rename: readers must not trust bytes read from now on.
      this.diskBytes -= oldest.fileBytes;
      this.unsynced.delete(oldest);
      await operations.rename(oldest.path, path);
      this.fd = await operations.open(path, 'r+');
      fileBytes = oldest.fileBytes;
    } else {
      this.fd = await operations.open(path, 'w');
    }
    const segment: Segment = {
      firstSeq: this.writtenSeq,
      startOffsets: [this.writtenOffsets[0], this.writtenOffsets[1]],
      path,
      size: 0,
      fileBytes,
      endSeq: this.writtenSeq,
      deleted: false,
    };
    this.segments.push(segment);
    this.diskBytes += fileBytes;
    this.dirUnsynced = true;
    return segment;
  }

  // A recycled file may still hold stale bytes past the new frames.
  private async truncateStale(operations: FileCalls, segment: Segment, fd: number): Promise<void> {
    if (segment.fileBytes <= segment.size) return;
    await operations.truncate(fd, segment.size);
    this.diskBytes -= segment.fileBytes - segment.size;
    segment.fileBytes = segment.size;
  }

  /** Delete the oldest segments while the cap is exceeded (never the one being written). */
  private async enforceCap(operations: FileCalls): Promise<void> {
    while (this.diskBytes > this.settings.maxDiskBytes && this.segments.length > 1) {
      const oldest = this.segments.shift();
      if (oldest === undefined) break;
      // Marked first: a reader on it notices and reports a gap instead of reading on.
      oldest.deleted = true;
      this.diskBytes -= oldest.fileBytes;
      this.unsynced.delete(oldest);
      await operations.unlink(oldest.path);
    }
  }
}

interface Batch {
  buffers: Buffer[];
  /** Bytes to write (headers included). */
  bytes: number;
  dataBytes: number;
  endSeq: number;
  /** Stream offsets after the batch. */
  offsets: [number, number];
}

/**
 * Encode frames `startSeq..` (up to `endSeq`, the batch limits and the segment's
 * end) for one writev. One buffer holds the headers and the small frames; large
 * frames are written from their own buffers, so the bulk of the data is not copied.
 */
function encodeBatch(
  segment: Segment,
  frameAt: FrameSource,
  startSeq: number,
  endSeq: number,
  segmentBytes: number,
  offsets: readonly [number, number],
): Batch {
  const segmentHeader = segment.size === 0 ? SEGMENT_HEADER_BYTES : 0;
  let end = startSeq;
  let bytes = segmentHeader;
  let copied = segmentHeader;
  let dataBytes = 0;
  while (end < endSeq && end - startSeq < MAX_BATCH_FRAMES && bytes < MAX_BATCH_BYTES) {
    const length = frameAt(end).data.length;
    end += 1;
    bytes += FRAME_HEADER_BYTES + length;
    copied += FRAME_HEADER_BYTES + (length < COPY_BELOW_BYTES ? length : 0);
    dataBytes += length;
    if (segment.size + bytes >= segmentBytes) break;
  }

  const scratch = Buffer.allocUnsafe(copied);
  const buffers: Buffer[] = [];
  let position = 0;
  let pending = 0;
  if (segmentHeader > 0) {
    writeSegmentHeader(scratch, 0, segment);
    position = SEGMENT_HEADER_BYTES;
  }
  const after: [number, number] = [offsets[0], offsets[1]];
  for (let seq = startSeq; seq < end; seq += 1) {
    const frame = frameAt(seq);
    const index = streamIndex(frame.stream);
    const length = frame.data.length;
    writeFrameHeader(scratch, position, length, index, seq, frame.offset, frame.time);
    position += FRAME_HEADER_BYTES;
    after[index] = frame.offset + length;
    if (length < COPY_BELOW_BYTES) {
      frame.data.copy(scratch, position);
      position += length;
    } else {
      buffers.push(scratch.subarray(pending, position), frame.data);
      pending = position;
    }
  }
  if (position > pending) buffers.push(scratch.subarray(pending, position));
  return { buffers, bytes, dataBytes, endSeq: end, offsets: after };
}
