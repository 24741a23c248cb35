/**
 * Docker's multiplexed stream format (attach, exec and logs without a TTY):
 * frames of an 8-byte header — stream type, three zero bytes, payload size
 * (big-endian uint32) — then the payload. A parser that keeps partial headers
 * and payloads across chunks, so no byte is lost or misattributed.
 */

/** Where a frame's payload goes. */
export type DemuxStream = 'stdout' | 'stderr';

/** Feeds chunks of a multiplexed stream in; calls `onFrame` with each payload piece. */
export interface Demuxer {
  write(chunk: Buffer): void;
  /** Bytes of an unfinished header or payload left at the end (0 for a clean stream). */
  readonly pending: number;
}

const HEADER_BYTES = 8;

/** Create a parser that splits a multiplexed stream into stdout and stderr pieces. */
export function createDemuxer(onFrame: (stream: DemuxStream, data: Buffer) => void): Demuxer {
  let header = Buffer.alloc(0);
  let remaining = 0;
  let current: DemuxStream = 'stdout';
  return {
    get pending() {
      return header.length + remaining;
    },
    write(chunk) {
      let offset = 0;
      while (offset < chunk.length) {
        if (remaining > 0) {
          const take = Math.min(remaining, chunk.length - offset);
          onFrame(current, chunk.subarray(offset, offset + take));
          offset += take;
          remaining -= take;
          continue;
        }
        const need = HEADER_BYTES - header.length;
        const piece = chunk.subarray(offset, offset + need);
        header = header.length === 0 ? Buffer.from(piece) : Buffer.concat([header, piece]);
        offset += piece.length;
        if (header.length < HEADER_BYTES) return;
        // 0 is stdin (echoed back only with a TTY), 1 stdout, 2 stderr, 3 a daemon error.
        const type = header[0];
        current = type === 2 || type === 3 ? 'stderr' : 'stdout';
        remaining = header.readUInt32BE(4);
        header = Buffer.alloc(0);
      }
    },
  };
}
