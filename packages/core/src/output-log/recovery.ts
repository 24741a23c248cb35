/**
 * Recovery of an OutputLog directory: find the segment files, check the newest
 * one frame by frame and cut off a torn trailing frame, so appending can go on
 * exactly where the previous writer stopped.
 */

import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FRAME_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  parseSegmentFileName,
  readFrameHeader,
  readSegmentHeader,
  type SegmentHeader,
} from './segment-format.js';
import type { Segment } from './segment-reader.js';

/** Where a recovered log stands. */
export interface RecoveredLog {
  /** Segments, oldest first; the last one is appended to. */
  segments: Segment[];
  nextSeq: number;
  /** Bytes written to each stream so far. */
  bytes: [number, number];
}

const SCAN_CHUNK_BYTES = 1024 * 1024;

/** Read the segments in `dir` (which must exist). */
export async function recoverSegments(dir: string): Promise<RecoveredLog> {
  const found: { firstSeq: number; path: string }[] = [];
  for (const name of await readdir(dir)) {
    const firstSeq = parseSegmentFileName(name);
    if (firstSeq !== undefined) found.push({ firstSeq, path: join(dir, name) });
  }
  found.sort((a, b) => a.firstSeq - b.firstSeq);

  const segments: Segment[] = [];
  for (const [index, { firstSeq, path }] of found.entries()) {
    const { header, size } = await readHeader(path);
    if (header?.firstSeq === firstSeq) {
      segments.push({
        firstSeq,
        startOffsets: header.startOffsets,
        path,
        size,
        fileBytes: size,
        endSeq: firstSeq,
        deleted: false,
      });
      continue;
    }
    // The newest file may be torn (a crash while it was started). An older one is damaged
    // (e.g. a rename that did not reach the disk): drop it and everything older, so the
    // segments left are contiguous; readers get a gap marker for what was lost.
    await rm(path, { force: true });
    if (index < found.length - 1) {
      await Promise.all(segments.map((segment) => rm(segment.path, { force: true })));
      segments.length = 0;
    }
  }

  // Each segment ends where the next begins; the newest one is scanned (and truncated if torn).
  segments.forEach((segment, index) => {
    segment.endSeq = segments[index + 1]?.firstSeq ?? segment.firstSeq;
  });
  const newest = segments.at(-1);
  if (newest === undefined) return { segments, nextSeq: 0, bytes: [0, 0] };
  const end = await scanSegment(newest);
  return { segments, nextSeq: end.nextSeq, bytes: end.bytes };
}

async function readHeader(
  path: string,
): Promise<{ header: SegmentHeader | undefined; size: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(SEGMENT_HEADER_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, SEGMENT_HEADER_BYTES, 0);
    return { header: readSegmentHeader(buffer.subarray(0, bytesRead)), size };
  } finally {
    await handle.close();
  }
}

// Walk the frame headers of `segment`, stop at the first one that is not the expected
// next frame or does not fit in the file, and truncate the file there.
async function scanSegment(
  segment: Segment,
): Promise<{ nextSeq: number; bytes: [number, number] }> {
  let seq = segment.firstSeq;
  const bytes: [number, number] = [segment.startOffsets[0], segment.startOffsets[1]];
  let position = SEGMENT_HEADER_BYTES;
  const handle = await open(segment.path, 'r+');
  try {
    let chunk = Buffer.alloc(0);
    let chunkStart = 0;
    while (position + FRAME_HEADER_BYTES <= segment.size) {
      let at = position - chunkStart;
      if (at < 0 || at + FRAME_HEADER_BYTES > chunk.length) {
        // Headers are read in large chunks so a file of small frames costs few reads.
        const length = Math.min(SCAN_CHUNK_BYTES, segment.size - position);
        const { buffer, bytesRead } = await handle.read(
          Buffer.allocUnsafe(length),
          0,
          length,
          position,
        );
        chunk = buffer.subarray(0, bytesRead);
        chunkStart = position;
        at = 0;
      }
      const frame = readFrameHeader(chunk, at);
      if (frame === undefined) break;
      if (
        frame.seq !== seq ||
        frame.offset !== bytes[frame.stream] ||
        frame.length === 0 ||
        position + FRAME_HEADER_BYTES + frame.length > segment.size
      ) {
        break;
      }
      position += FRAME_HEADER_BYTES + frame.length;
      bytes[frame.stream] += frame.length;
      seq += 1;
    }
    if (position !== segment.size) {
      await handle.truncate(position);
      segment.size = position;
      segment.fileBytes = position;
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
  segment.endSeq = seq;
  return { nextSeq: seq, bytes };
}
