/**
 * The on-disk format of OutputLog segment files.
 *
 * A segment file is named `<firstSeq as 16 decimal digits>.seg` and holds:
 *
 * - a 32-byte segment header: magic `OTLG`, u32 version, u64 first seq,
 *   u64 stdout byte offset and u64 stderr byte offset at the segment start
 *   (so the log's position is known even when every frame of a stream is gone);
 * - frames, each a 32-byte frame header followed by the data:
 *   u32 data length, u8 stream (0 stdout, 1 stderr), u8 version, u16 magic
 *   `0x4f54`, u64 seq, u64 stream offset, u64 time (ms since the epoch).
 *
 * All integers are little-endian. u64 values are limited to safe integers.
 */

import type { OutputStream } from '../output-log.js';

/** Bytes of the header at the start of every segment file. */
export const SEGMENT_HEADER_BYTES = 32;
/** Bytes of the header in front of every frame's data. */
export const FRAME_HEADER_BYTES = 32;
/** Format version written into segment and frame headers. */
export const FORMAT_VERSION = 1;

const SEGMENT_MAGIC = 0x474c544f; // 'OTLG' read as a little-endian u32
const FRAME_MAGIC = 0x4f54;
const TWO_TO_32 = 0x1_0000_0000;
const SEGMENT_NAME = /^(\d{16})\.seg$/;

/** Index of a stream in per-stream arrays and in frame headers. */
export type StreamIndex = 0 | 1;

/** The streams in index order. */
export const STREAMS: readonly [OutputStream, OutputStream] = ['stdout', 'stderr'];

/** Index of `stream` in per-stream arrays. */
export function streamIndex(stream: OutputStream): StreamIndex {
  return stream === 'stdout' ? 0 : 1;
}

/** What a segment header says. */
export interface SegmentHeader {
  firstSeq: number;
  /** Byte offset of each stream (by {@link StreamIndex}) at the segment start. */
  startOffsets: readonly [number, number];
}

/** What a frame header says. */
export interface FrameHeader {
  length: number;
  stream: StreamIndex;
  seq: number;
  offset: number;
  time: number;
}

/** File name of the segment whose first frame has seq `firstSeq`. */
export function segmentFileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.seg`;
}

/** First seq encoded in a segment file name, or undefined when `name` is not a segment file. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

// u64 as two u32 halves: exact for safe integers and cheaper than BigInt.
function writeU64(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32LE(value >>> 0, at);
  buffer.writeUInt32LE(Math.floor(value / TWO_TO_32), at + 4);
}

function readU64(buffer: Buffer, at: number): number {
  return buffer.readUInt32LE(at) + buffer.readUInt32LE(at + 4) * TWO_TO_32;
}

/** Write a segment header into `buffer` at `at`. */
export function writeSegmentHeader(buffer: Buffer, at: number, header: SegmentHeader): void {
  buffer.writeUInt32LE(SEGMENT_MAGIC, at);
  buffer.writeUInt32LE(FORMAT_VERSION, at + 4);
  writeU64(buffer, header.firstSeq, at + 8);
  writeU64(buffer, header.startOffsets[0], at + 16);
  writeU64(buffer, header.startOffsets[1], at + 24);
}

/** Parse a segment header, or undefined when the bytes are not one. */
export function readSegmentHeader(buffer: Buffer, at = 0): SegmentHeader | undefined {
  if (buffer.length - at < SEGMENT_HEADER_BYTES) return undefined;
  if (buffer.readUInt32LE(at) !== SEGMENT_MAGIC) return undefined;
  if (buffer.readUInt32LE(at + 4) !== FORMAT_VERSION) return undefined;
  return {
    firstSeq: readU64(buffer, at + 8),
    startOffsets: [readU64(buffer, at + 16), readU64(buffer, at + 24)],
  };
}

/** Write a frame header into `buffer` at `at`. */
export function writeFrameHeader(
  buffer: Buffer,
  at: number,
  length: number,
  stream: StreamIndex,
  seq: number,
  offset: number,
  time: number,
): void {
  buffer.writeUInt32LE(length, at);
  buffer[at + 4] = stream;
  buffer[at + 5] = FORMAT_VERSION;
  buffer.writeUInt16LE(FRAME_MAGIC, at + 6);
  writeU64(buffer, seq, at + 8);
  writeU64(buffer, offset, at + 16);
  writeU64(buffer, time, at + 24);
}

/** Parse a frame header, or undefined when the bytes are not one (a torn or foreign write). */
export function readFrameHeader(buffer: Buffer, at: number): FrameHeader | undefined {
  if (buffer.length - at < FRAME_HEADER_BYTES) return undefined;
  const stream = buffer[at + 4];
  if (stream !== 0 && stream !== 1) return undefined;
  if (buffer[at + 5] !== FORMAT_VERSION || buffer.readUInt16LE(at + 6) !== FRAME_MAGIC) {
    return undefined;
  }
  return {
    length: buffer.readUInt32LE(at),
    stream,
    seq: readU64(buffer, at + 8),
    offset: readU64(buffer, at + 16),
    time: readU64(buffer, at + 24),
  };
}
