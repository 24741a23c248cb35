/**
 * OutputLog: every byte a task writes, as numbered frames. Replay from any
 * cursor, follow live, stdout and stderr kept apart (a merged view is just both
 * streams in seq order). Recent frames stay in a bounded memory tail; with a
 * `dir` every frame is also written to size-capped, rotated segment files.
 */

import { openOutputLog } from './output-log/segmented-output-log.js';

/** Which output stream a frame came from. */
export type OutputStream = 'stdout' | 'stderr';

/** One chunk of output as the task wrote it. */
export interface OutputFrame {
  /** Position in the log, across both streams, from 0, without gaps. */
  seq: number;
  /** Byte offset of `data` within its own stream. */
  offset: number;
  stream: OutputStream;
  /** When it was captured, in ms since the epoch. */
  time: number;
  data: Buffer;
}

/** What a reader receives: frames, or a marker that frames it wanted are no longer retained. */
export type OutputEvent =
  | ({ type: 'frame' } & OutputFrame)
  | {
      type: 'gap';
      /**
       * First seq that was skipped. 0 when reading started at a `fromOffset` whose
       * bytes are gone: the seq of the frame that held them is not known any more.
       */
      fromSeq: number;
      /** First seq still available (reading goes on from here). */
      toSeq: number;
    };

/** Where and how to read. */
export interface OutputReadOptions {
  /** Start at this seq. Default: the oldest retained frame. */
  fromSeq?: number;
  /**
   * Start at this byte offset of the single stream in `streams`; the first
   * frame is sliced so exactly the bytes from this offset on are delivered.
   */
  fromOffset?: number;
  /** Streams to deliver. Default both. */
  streams?: readonly OutputStream[];
  /** Keep waiting for new frames until the log ends. Default false. */
  follow?: boolean;
  /** Stop iterating (without an error) when aborted. */
  signal?: AbortSignal;
}

/** Options for {@link createOutputLog}. */
export interface OutputLogOptions {
  /** Directory for durable segment files; made with the first segment if missing; existing segments are recovered and appended to. Without it the log is memory-only. */
  dir?: string;
  /**
   * Bytes of recent frames kept in memory. Default 1 MiB. Frames a reader has
   * yet to read may hold up to four times as much more (at most 4 MiB more),
   * so a follower a little behind keeps reading from memory.
   */
  memoryBytes?: number;
  /** Cap on the bytes kept on disk; the oldest segments are deleted past it. Default 64 MiB. */
  maxDiskBytes?: number;
  /** A segment file is rotated when it reaches this size. Default 8 MiB. */
  segmentBytes?: number;
  /** Bytes waiting to be written to disk before `append` asks the writer to wait. Default 1 MiB. */
  highWaterMarkBytes?: number;
  /**
   * How long a follower that reads nothing may hold the producer back (see
   * `append`) before the producer goes on without it; that follower then falls
   * behind, to a gap once retention runs out, until it catches up. Default 10 000.
   */
  followerStallMs?: number;
}

/** A task's output. One writer (the supervisor), any number of readers. */
export interface OutputLog {
  /** Seq the next frame will get (= number of frames ever appended). */
  readonly nextSeq: number;
  /** Seq of the oldest frame still retained (memory or disk). */
  readonly firstSeq: number;
  /** True once `end()` was called: no more frames will come. */
  readonly ended: boolean;
  /** Readers iterating right now (from their first `next()` until they finish). */
  readonly readers: number;
  /** Total bytes ever written to `stream` (= the offset its next byte will get). */
  bytes(stream: OutputStream): number;
  /**
   * Add a frame. Returns a promise when the caller should wait before appending
   * more (backpressure): while the disk writer is behind by more than the
   * high-water mark, and while a follower (`read` with `follow`) is too far
   * behind — reading from disk, or with half its memory slack unread — so a
   * fast producer waits for its watchers, as a pipe would, rather than drop
   * output they have yet to read (up to `followerStallMs` for one that reads
   * nothing).
   * Empty data is ignored. Throws after `end()`.
   * The log keeps `data` itself, without a copy: do not modify it afterwards.
   */
  append(stream: OutputStream, data: Uint8Array): void | Promise<void>;
  /**
   * Mark the log complete: flush and fsync to disk, wake followers so they
   * finish. A durable log then holds no file descriptor and no memory tail
   * (reads go to disk). Idempotent.
   */
  end(): Promise<void>;
  /** Reopen an ended log for appending (a restarted task continues its log). */
  reopen(): void;
  /** Read frames in seq order; with `follow`, waits for new frames until the log ends. */
  read(options?: OutputReadOptions): AsyncIterableIterator<OutputEvent>;
  /** All retained bytes of one stream, concatenated (for small outputs and tests). */
  text(stream: OutputStream): Promise<Buffer>;
  /** Flush, release file handles and wake followers. The files stay. */
  close(): Promise<void>;
  /** Close and delete the files. */
  destroy(): Promise<void>;
}

/**
 * Create an output log. With `dir`, segments already in it are recovered (a
 * torn trailing frame is cut off) and new frames are appended after them.
 *
 * Frames are written in batches of up to half the high-water mark (at most
 * 512 KiB; a smaller remainder after 1 ms), with synchronous writes while those
 * are quick and on the thread pool after one was slow; see `output-log/segment-store.ts`.
 *
 * Segment files whose header is damaged are dropped (with every older one), so a
 * crash never makes the log unreadable; what is left reads on with a gap marker.
 *
 * @throws OverthereError `INVALID_ARGUMENT` for a bad option; the file system's
 * error when the dir cannot be created or read.
 */
export async function createOutputLog(options: OutputLogOptions = {}): Promise<OutputLog> {
  return openOutputLog(options);
}
