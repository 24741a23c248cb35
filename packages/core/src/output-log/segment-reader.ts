/**
 * Sequential reading of frames from one segment file, for a single reader.
 * A reader keeps one read buffer (a chunk of the file, or one frame when frames
 * are larger), never more, so a slow reader costs a bounded amount of memory.
 * The chunk grows while the reader keeps reading on (a reader catching up on a
 * long backlog), so large outputs take few reads.
 */

import { open, type FileHandle } from 'node:fs/promises';
import type { OutputFrame } from '../output-log.js';
import {
  FRAME_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  STREAMS,
  readFrameHeader,
  type StreamIndex,
} from './segment-format.js';

/** A segment file as the log tracks it. Shared (read-only) with readers. */
export interface Segment {
  /** Seq of its first frame; also its file name. */
  readonly firstSeq: number;
  /** Byte offset of each stream at the segment start. */
  readonly startOffsets: readonly [number, number];
  readonly path: string;
  /** Bytes of complete frames (plus the segment header) written so far. */
  size: number;
  /**
   * Bytes the file takes on disk: more than `size` while a recycled file still
   * holds stale bytes past the new frames (they are truncated away when it is done).
   */
  fileBytes: number;
  /** Seq after its last complete frame. */
  endSeq: number;
  /**
   * Set when retention dropped it, before its file is unlinked or recycled, so a
   * reader that sees it unset after an awaited read knows the bytes it got are valid.
   */
  deleted: boolean;
}

/** Bytes read from the file at once at first. */
const READ_CHUNK_BYTES = 128 * 1024;
/** The chunk doubles on every refill up to this. */
const MAX_READ_CHUNK_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Result of {@link SegmentReader.next}: a frame; the stream of a frame that was not
 * wanted; `'deleted'` when retention dropped the segment; `'corrupt'` when the
 * file does not hold the expected frame (damaged on disk).
 */
export type SegmentReadResult = OutputFrame | StreamIndex | 'deleted' | 'corrupt';

/** Reads the frames of one segment in seq order. */
export class SegmentReader {
  /** The segment being read. */
  readonly segment: Segment;
  /** Seq of the frame the next {@link next} call returns. */
  seq: number;
  private handle: FileHandle | undefined;
  private position = SEGMENT_HEADER_BYTES;
  private buffer: Buffer = EMPTY;
  private bufferStart = 0;
  private chunkBytes = READ_CHUNK_BYTES;

  private constructor(segment: Segment) {
    this.segment = segment;
    this.seq = segment.firstSeq;
  }

  /** Open `segment` for reading, or undefined when its file is gone (deleted by retention). */
  static async open(segment: Segment): Promise<SegmentReader | undefined> {
    const reader = new SegmentReader(segment);
    try {
      reader.handle = await open(segment.path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (segment.deleted) {
      await reader.close(); // The file may already be recycled for newer frames.
      return undefined;
    }
    return reader;
  }

  /**
   * Read the frame at {@link seq} (which must be below the segment's `endSeq`).
   * When `wanted` says its stream is not wanted, its data is skipped unread and
   * only the stream index is returned.
   */
  async next(wanted: readonly [boolean, boolean]): Promise<SegmentReadResult> {
    const hasHeader = await this.ensure(FRAME_HEADER_BYTES);
    if (this.segment.deleted) return 'deleted';
    if (!hasHeader) return 'corrupt';
    const at = this.position - this.bufferStart;
    const header = readFrameHeader(this.buffer, at);
    if (header?.seq !== this.seq) return 'corrupt';
    const total = FRAME_HEADER_BYTES + header.length;
    if (!wanted[header.stream]) {
      this.position += total;
      this.seq += 1;
      return header.stream;
    }
    const hasData = await this.ensure(total);
    if (this.segment.deleted) return 'deleted';
    if (!hasData) return 'corrupt';
    const start = this.position - this.bufferStart + FRAME_HEADER_BYTES;
    const frame: OutputFrame = {
      seq: header.seq,
      offset: header.offset,
      stream: STREAMS[header.stream],
      time: header.time,
      data: this.buffer.subarray(start, start + header.length),
    };
    this.position += total;
    this.seq += 1;
    return frame;
  }

  /** Release the file handle. */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    this.buffer = EMPTY;
    await handle?.close();
  }

  // Make bytes [position, position + count) available in the buffer; false if the file has fewer.
  private async ensure(count: number): Promise<boolean> {
    const offset = this.position - this.bufferStart;
    if (offset >= 0 && offset + count <= this.buffer.length) return true;
    const available = this.segment.size - this.position;
    if (available < count) return false;
    const handle = this.handle;
    if (handle === undefined) return false;
    // A fresh buffer each time: frames handed out earlier still point into the old one.
    const buffer = Buffer.allocUnsafe(Math.min(Math.max(count, this.chunkBytes), available));
    this.chunkBytes = Math.min(this.chunkBytes * 2, MAX_READ_CHUNK_BYTES);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(
        buffer,
        filled,
        buffer.length - filled,
        this.position + filled,
      );
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled < count) return false;
    this.buffer = filled === buffer.length ? buffer : buffer.subarray(0, filled);
    this.bufferStart = this.position;
    return true;
  }
}
