/**
 * Encodings shared by the server and the client: output events as NDJSON and
 * SSE, and the 9-byte header of binary WebSocket output messages.
 */
import type { OutputEvent, OutputStream, TaskInfo } from '@overthere/core';

/** A frame of output as the HTTP client delivers it. */
export interface HttpOutputFrame {
  type: 'frame';
  /** Position in the task's log across both streams; resume with `cursor: seq + 1`. */
  seq: number;
  /** Byte offset of `data` within its stream. */
  offset: number;
  stream: OutputStream;
  /** Capture time, ms since the epoch. */
  time: number;
  data: Buffer;
}

/** Output before `toSeq` is no longer retained; reading goes on at `toSeq`. */
export interface HttpOutputGap {
  type: 'gap';
  fromSeq: number;
  toSeq: number;
}

/** The last event: the task is final (with `follow`), or the retained output was all sent. */
export interface HttpOutputEnd {
  type: 'end';
  task: TaskInfo;
}

/** What `GET /v1/tasks/:id/output` carries, decoded. */
export type HttpOutputEvent = HttpOutputFrame | HttpOutputGap | HttpOutputEnd;

/** The JSON object of an output event (frame data as base64). */
export function outputEventJson(event: OutputEvent | HttpOutputEnd): string {
  if (event.type === 'frame') {
    return JSON.stringify({
      type: 'frame',
      seq: event.seq,
      offset: event.offset,
      stream: event.stream,
      time: event.time,
      data: event.data.toString('base64'),
    });
  }
  if (event.type === 'gap') {
    return JSON.stringify({ type: 'gap', fromSeq: event.fromSeq, toSeq: event.toSeq });
  }
  return JSON.stringify({ type: 'end', task: event.task });
}

/** One SSE message: `event:` name, `id:` (frames only) and the JSON as `data:`. */
export function sseMessage(event: OutputEvent | HttpOutputEnd): string {
  const id = event.type === 'frame' ? `id: ${event.seq}\n` : '';
  return `event: ${event.type}\n${id}data: ${outputEventJson(event)}\n\n`;
}

/** Decode one NDJSON line (or SSE `data:`) of the output route; throws on anything malformed. */
export function parseOutputEvent(line: string): HttpOutputEvent {
  const value = JSON.parse(line) as Record<string, unknown>;
  switch (value.type) {
    case 'frame':
      if (
        typeof value.seq !== 'number' ||
        typeof value.offset !== 'number' ||
        (value.stream !== 'stdout' && value.stream !== 'stderr') ||
        typeof value.data !== 'string'
      ) {
        break;
      }
      return {
        type: 'frame',
        seq: value.seq,
        offset: value.offset,
        stream: value.stream,
        time: typeof value.time === 'number' ? value.time : 0,
        data: Buffer.from(value.data, 'base64'),
      };
    case 'gap':
      if (typeof value.fromSeq !== 'number' || typeof value.toSeq !== 'number') break;
      return { type: 'gap', fromSeq: value.fromSeq, toSeq: value.toSeq };
    case 'end':
      if (typeof value.task !== 'object' || value.task === null) break;
      return { type: 'end', task: value.task as TaskInfo };
    default:
      break;
  }
  throw new Error(`malformed output event: ${line.slice(0, 200)}`);
}

/** Size of the header of a binary attach message: stream byte + u64 seq. */
export const ATTACH_HEADER_BYTES = 9;

/** Stream byte of a binary attach message. */
export const ATTACH_STREAM_BYTE: Readonly<Record<OutputStream, number>> = { stdout: 1, stderr: 2 };

/** `[stream][seq u64 BE][data]`. */
export function encodeAttachFrame(stream: OutputStream, seq: number, data: Uint8Array): Buffer {
  const message = Buffer.allocUnsafe(ATTACH_HEADER_BYTES + data.byteLength);
  message[0] = ATTACH_STREAM_BYTE[stream];
  // Two u32 halves: seqs stay far below 2^53, and this avoids BigInt per frame.
  message.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 1);
  message.writeUInt32BE(seq >>> 0, 5);
  message.set(data, ATTACH_HEADER_BYTES);
  return message;
}

/** Decode a binary attach message; undefined when it is not one. */
export function decodeAttachFrame(
  message: Buffer,
): { stream: OutputStream; seq: number; data: Buffer } | undefined {
  if (message.length < ATTACH_HEADER_BYTES) return undefined;
  const streamByte = message[0];
  const stream = streamByte === 1 ? 'stdout' : streamByte === 2 ? 'stderr' : undefined;
  if (stream === undefined) return undefined;
  const seq = message.readUInt32BE(1) * 0x1_0000_0000 + message.readUInt32BE(5);
  return { stream, seq, data: message.subarray(ATTACH_HEADER_BYTES) };
}
