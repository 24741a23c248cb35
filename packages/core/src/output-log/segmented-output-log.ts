/**
 * The OutputLog implementation. Frames live in a memory tail (contiguous seqs
 * `memoryFirstSeq..nextSeq`); with a dir they are also written, in order, to a
 * {@link SegmentStore}. A frame is never evicted before it is written, so the
 * memory tail doubles as the write queue and every seq is either in memory or on
 * disk until retention drops it.
 */

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { OverthereError } from '../errors.js';
import type {
  OutputEvent,
  OutputFrame,
  OutputLog,
  OutputLogOptions,
  OutputReadOptions,
  OutputStream,
} from '../output-log.js';
import { STREAMS, streamIndex, type StreamIndex } from './segment-format.js';
import { SegmentReader, type Segment, type SegmentReadResult } from './segment-reader.js';
import { SegmentStore, type WriteMode } from './segment-store.js';

const MIB = 1024 * 1024;
const DEFAULT_MEMORY_BYTES = MIB;
const DEFAULT_MAX_DISK_BYTES = 64 * MIB;
const DEFAULT_SEGMENT_BYTES = 8 * MIB;
const DEFAULT_HIGH_WATER_MARK_BYTES = MIB;
/** Bookkeeping cost per frame counted against `memoryBytes`, so tiny frames cannot pile up. */
const FRAME_OVERHEAD_BYTES = 128;
/** Queued bytes that start a write at once are half the high-water mark, but at most this. */
const MAX_BATCH_BYTES = 512 * 1024;
/** How long frames short of a batch wait before they are written anyway. */
const FLUSH_DELAY_MS = 1;
/**
 * Memory beyond `memoryBytes` (as a multiple of it, and at most) that frames a
 * reader has yet to read from memory may hold. A follower a little behind (a
 * socket that drained late) then stays in memory instead of falling to disk
 * reads, which are slower than the producer and from which it would not catch
 * up. Bounded: a reader further behind goes to disk as before.
 */
const READER_SLACK_FACTOR = 4;
const MAX_READER_SLACK_BYTES = 4 * MIB;
/**
 * A follower that reads nothing for this long while it holds the producer
 * back (a stalled client) is let go: the task runs on, and that follower
 * falls behind (to disk, then to a gap) until it catches up.
 */
const DEFAULT_FOLLOWER_STALL_MS = 10_000;
/** Frame lengths are u32 on disk; bigger appends are split. */
const MAX_FRAME_BYTES = 1024 * MIB;
const SKIP_ALL: readonly [boolean, boolean] = [false, false];

/** Knobs that are not part of the public options (tests use them). */
export interface InternalOutputLogOptions {
  writeMode?: WriteMode;
}

/** Validate the options and open the log (recovering `dir` when given). */
export async function openOutputLog(
  options: OutputLogOptions,
  internal: InternalOutputLogOptions = {},
): Promise<OutputLog> {
  const settings: Settings = {
    memoryBytes: sizeOption('memoryBytes', options.memoryBytes, DEFAULT_MEMORY_BYTES, 0),
    maxDiskBytes: sizeOption('maxDiskBytes', options.maxDiskBytes, DEFAULT_MAX_DISK_BYTES, 1),
    segmentBytes: sizeOption('segmentBytes', options.segmentBytes, DEFAULT_SEGMENT_BYTES, 1),
    highWaterMarkBytes: sizeOption(
      'highWaterMarkBytes',
      options.highWaterMarkBytes,
      DEFAULT_HIGH_WATER_MARK_BYTES,
      0,
    ),
    followerStallMs: sizeOption(
      'followerStallMs',
      options.followerStallMs,
      DEFAULT_FOLLOWER_STALL_MS,
      0,
    ),
  };
  if (options.dir === undefined) return new SegmentedOutputLog(settings, undefined);
  const dir = resolve(options.dir);
  // A new log's directory is made with its first segment: one that never
  // gets output costs no directory (a mkdir waits for the file system's journal).
  const missing = !existsSync(dir);
  const store = await SegmentStore.open(
    dir,
    {
      segmentBytes: settings.segmentBytes,
      maxDiskBytes: settings.maxDiskBytes,
      writeMode: internal.writeMode ?? 'adaptive',
    },
    missing,
  );
  return new SegmentedOutputLog(settings, store);
}

interface Settings {
  memoryBytes: number;
  maxDiskBytes: number;
  segmentBytes: number;
  highWaterMarkBytes: number;
  followerStallMs: number;
}

interface ReadRequest {
  wanted: readonly [boolean, boolean];
  /** Fixed when read() is called, so frames appended before the first next() are not missed. */
  startSeq: number;
  /** The start is behind retention: a gap marker comes first. */
  startGap: boolean;
  fromOffset: { stream: StreamIndex; offset: number } | undefined;
  follow: boolean;
  signal: AbortSignal | undefined;
}

function sizeOption(name: string, value: number | undefined, fallback: number, minimum: number) {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < minimum) {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be an integer >= ${minimum}`);
  }
  return value;
}

function checkStream(stream: unknown): StreamIndex {
  if (stream === 'stdout') return 0;
  if (stream === 'stderr') return 1;
  throw new OverthereError('INVALID_ARGUMENT', `unknown output stream ${String(stream)}`);
}

function checkPosition(name: string, value: number | undefined): number | undefined {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be a non-negative integer`);
  }
  return value;
}

class SegmentedOutputLog implements OutputLog {
  private readonly settings: Settings;
  /** Undefined for a memory-only log, and after a write failed. */
  /** Readers iterating right now (the supervisor's GC waits for them). */
  private activeReaders = 0;
  /** The next seq of each reader iterating right now. */
  private readonly readerPositions = new Set<ReaderPosition>();
  /**
   * A follower holds the producer back while it reads from disk, or once its
   * unread frames fill memory up to this mark (half the slack): like a pipe,
   * a fast task waits for its watchers instead of outrunning them into a gap.
   */
  private readonly followerHoldBytes: number;
  /** The producer waits for the follower `position`, until it catches up or stalls. */
  private hold:
    | {
        promise: Promise<void>;
        resolve: () => void;
        position: ReaderPosition;
        timer: NodeJS.Timeout;
      }
    | undefined;
  private store: SegmentStore | undefined;
  /** Kept after a failure: what was written stays readable. */
  private readonly disk: SegmentStore | undefined;
  private seqCounter: number;
  private readonly streamBytes: [number, number];
  private isEnded = false;
  private closed = false;
  private destroyed = false;
  private failure: unknown = undefined;
  /** Followers waiting for the next append or the end; all woken together. */
  private waiters = new Set<() => void>();

  // Memory tail: memory[memoryHead] has seq memoryFirstSeq.
  private memory: (OutputFrame | undefined)[] = [];
  private memoryHead = 0;
  private memoryFirstSeq: number;
  private memoryUsed = 0;
  private readonly memoryStreamBytes: [number, number] = [0, 0];

  // Writing: bytes appended but not yet written, and the writer loop.
  private queuedBytes = 0;
  /** Queued bytes that start a write at once: the producer can fill the next batch meanwhile. */
  private readonly batchBytes: number;
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();
  /** Write what is queued even if it is less than a batch (a timer fired, or a flush). */
  private flushAll = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private drain: { promise: Promise<void>; resolve: () => void } | undefined;
  private lifecycle: Promise<unknown> = Promise.resolve();

  constructor(settings: Settings, store: SegmentStore | undefined) {
    this.settings = settings;
    this.store = store;
    this.disk = store;
    this.seqCounter = store?.writtenSeq ?? 0;
    this.memoryFirstSeq = this.seqCounter;
    this.streamBytes = [store?.writtenOffsets[0] ?? 0, store?.writtenOffsets[1] ?? 0];
    this.batchBytes = Math.min(Math.floor(settings.highWaterMarkBytes / 2), MAX_BATCH_BYTES);
    // Below the point where eviction would drop a follower's unread frames.
    this.followerHoldBytes =
      settings.memoryBytes + Math.floor(slackBytes(settings.memoryBytes) / 2);
  }

  get nextSeq(): number {
    return this.seqCounter;
  }

  get firstSeq(): number {
    const diskFirst = this.disk?.segments[0]?.firstSeq ?? Number.POSITIVE_INFINITY;
    return Math.min(diskFirst, this.memoryFirstSeq);
  }

  get ended(): boolean {
    return this.isEnded;
  }

  get readers(): number {
    return this.activeReaders;
  }

  bytes(stream: OutputStream): number {
    return this.streamBytes[checkStream(stream)];
  }

  append(stream: OutputStream, data: Uint8Array): void | Promise<void> {
    const index = checkStream(stream);
    if (this.isEnded) {
      throw new OverthereError(
        'FAILED_PRECONDITION',
        this.closed ? 'output log is closed' : 'output log has ended; reopen() it first',
      );
    }
    if (data.byteLength === 0) return;
    // No copy: the log keeps the caller's bytes (stream chunks are never reused).
    const buffer = Buffer.isBuffer(data)
      ? data
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let start = 0; start < buffer.length; start += MAX_FRAME_BYTES) {
      const part =
        buffer.length <= MAX_FRAME_BYTES ? buffer : buffer.subarray(start, start + MAX_FRAME_BYTES);
      this.addFrame(index, stream, part);
    }
    this.notify();
    const held = this.holdForFollower();
    if (this.store === undefined) return held;
    this.schedule();
    if (this.queuedBytes <= this.settings.highWaterMarkBytes) return held;
    if (this.drain === undefined) {
      let resolveDrain = (): void => undefined;
      const promise = new Promise<void>((resolvePromise) => (resolveDrain = resolvePromise));
      this.drain = { promise, resolve: resolveDrain };
    }
    return held === undefined
      ? this.drain.promise
      : Promise.all([held, this.drain.promise]).then(() => undefined);
  }

  /**
   * The slowest follower that is too far behind, if any: one reading from disk
   * (the producer would soon drop what it has yet to read), or one whose unread
   * frames fill the memory up to the hold mark.
   */
  private laggingFollower(): ReaderPosition | undefined {
    let slowest: ReaderPosition | undefined;
    for (const position of this.readerPositions) {
      if (!position.follow || position.released || position.seq >= this.seqCounter) continue;
      if (slowest === undefined || position.seq < slowest.seq) slowest = position;
    }
    if (slowest === undefined) return undefined;
    return slowest.seq < this.memoryFirstSeq || this.memoryUsed >= this.followerHoldBytes
      ? slowest
      : undefined;
  }

  /** A promise to wait on while a live follower is too far behind. */
  private holdForFollower(): Promise<void> | undefined {
    if (this.hold !== undefined) return this.hold.promise;
    const position = this.laggingFollower();
    if (position === undefined) return undefined;
    let resolveHold = (): void => undefined;
    const promise = new Promise<void>((resolvePromise) => (resolveHold = resolvePromise));
    let watched = position;
    let seenSeq = position.seq;
    const check = (): void => {
      const hold = this.hold;
      if (hold === undefined) return;
      if (hold.position === watched && hold.position.seq === seenSeq) {
        // Read nothing in all that time: let the task go on without it.
        hold.position.released = true;
        this.releaseHold();
        if (this.hold !== hold) return;
      }
      // Still held (by this follower, moving, or by another one): watch again.
      watched = hold.position;
      seenSeq = hold.position.seq;
      hold.timer = setTimeout(check, this.settings.followerStallMs);
    };
    this.hold = {
      promise,
      resolve: resolveHold,
      position,
      timer: setTimeout(check, this.settings.followerStallMs),
    };
    return promise;
  }

  /** Ends the hold once no live follower is too far behind (or the log is done). */
  private releaseHold(): void {
    const hold = this.hold;
    if (hold === undefined) return;
    if (!this.isEnded && !this.destroyed) {
      this.evict(); // What the follower has read since no longer counts.
      const position = this.laggingFollower();
      if (position !== undefined) {
        hold.position = position;
        return;
      }
    }
    this.hold = undefined;
    clearTimeout(hold.timer);
    hold.resolve();
  }

  async end(): Promise<void> {
    if (!this.isEnded) {
      this.isEnded = true;
      this.notify();
      this.releaseHold();
    }
    await this.serialize(async () => {
      await this.flush();
      await this.syncStore();
      // A finished task may be kept for long: hold no descriptor and no memory
      // tail for it. Readers go to disk; a reopen() reopens the file lazily.
      if (this.store !== undefined && this.isEnded) {
        await this.disk?.close();
        this.evict(true);
      }
    });
    this.throwIfFailed();
  }

  reopen(): void {
    if (this.closed) throw new OverthereError('FAILED_PRECONDITION', 'output log is closed');
    this.isEnded = false;
  }

  read(options: OutputReadOptions = {}): AsyncIterableIterator<OutputEvent> {
    // Checked here, not in the generator, so a bad request throws at the call.
    const streams = options.streams ?? STREAMS;
    const wanted: [boolean, boolean] = [false, false];
    for (const stream of streams) wanted[checkStream(stream)] = true;
    if (!wanted[0] && !wanted[1]) {
      throw new OverthereError('INVALID_ARGUMENT', 'streams must name at least one stream');
    }
    const fromSeq = checkPosition('fromSeq', options.fromSeq);
    const offset = checkPosition('fromOffset', options.fromOffset);
    let fromOffset: ReadRequest['fromOffset'];
    let startSeq = fromSeq ?? this.firstSeq;
    let startGap = false;
    if (offset !== undefined) {
      if (wanted[0] === wanted[1] || fromSeq !== undefined) {
        throw new OverthereError(
          'INVALID_ARGUMENT',
          'fromOffset needs exactly one stream in streams and no fromSeq',
        );
      }
      fromOffset = { stream: wanted[0] ? 0 : 1, offset };
      const start = this.offsetStart(fromOffset.stream, offset);
      startGap = start === undefined;
      startSeq = start ?? this.firstSeq;
    }
    return this.events({
      wanted,
      startSeq,
      startGap,
      fromOffset,
      follow: options.follow ?? false,
      signal: options.signal,
    });
  }

  async text(stream: OutputStream): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const event of this.read({ streams: [stream] })) {
      if (event.type === 'frame') parts.push(event.data);
    }
    return Buffer.concat(parts);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (!this.isEnded) {
      this.isEnded = true;
      this.notify();
      this.releaseHold();
    }
    await this.serialize(async () => {
      await this.flush();
      await this.syncStore();
      if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      await this.disk?.close();
    });
    this.throwIfFailed();
  }

  async destroy(): Promise<void> {
    await this.close().catch(() => undefined);
    await this.serialize(async () => {
      this.destroyed = true;
      this.notify();
      this.memory = [];
      this.memoryHead = 0;
      this.memoryFirstSeq = this.seqCounter;
      this.memoryUsed = 0;
      this.memoryStreamBytes[0] = 0;
      this.memoryStreamBytes[1] = 0;
      await this.disk?.destroy();
    });
  }

  // --- appending and memory ---

  private addFrame(index: StreamIndex, stream: OutputStream, data: Buffer): void {
    const frame: OutputFrame = {
      seq: this.seqCounter,
      offset: this.streamBytes[index],
      stream,
      time: Date.now(),
      data,
    };
    this.memory.push(frame);
    this.seqCounter += 1;
    this.streamBytes[index] += data.length;
    this.memoryStreamBytes[index] += data.length;
    this.memoryUsed += data.length + FRAME_OVERHEAD_BYTES;
    if (this.store !== undefined) this.queuedBytes += data.length;
    this.evict();
  }

  /**
   * Drop the oldest frames past `memoryBytes`, but never an unwritten one, nor
   * the newest — unless `all` (an ended durable log, everything on disk).
   */
  private evict(all = false): void {
    const budgetBytes = all ? 0 : this.settings.memoryBytes;
    const written = this.store === undefined ? this.seqCounter : this.store.writtenSeq;
    const limit = all ? written : Math.min(written, this.seqCounter - 1);
    // Frames from the slowest reader still in memory on are kept up to the slack.
    let readFrom = limit;
    if (!all) {
      for (const position of this.readerPositions) {
        if (position.seq >= this.memoryFirstSeq && position.seq < readFrom) readFrom = position.seq;
      }
    }
    const slackBudgetBytes = budgetBytes + slackBytes(budgetBytes);
    while (
      this.memoryFirstSeq < limit &&
      this.memoryUsed > (this.memoryFirstSeq < readFrom ? budgetBytes : slackBudgetBytes)
    ) {
      const frame = this.memory[this.memoryHead];
      if (frame === undefined) break;
      this.memory[this.memoryHead] = undefined;
      this.memoryHead += 1;
      this.memoryFirstSeq += 1;
      this.memoryUsed -= frame.data.length + FRAME_OVERHEAD_BYTES;
      this.memoryStreamBytes[streamIndex(frame.stream)] -= frame.data.length;
    }
    // Compact now and then instead of shifting per frame.
    if (this.memoryHead > 1024 && this.memoryHead * 2 > this.memory.length) {
      this.memory = this.memory.slice(this.memoryHead);
      this.memoryHead = 0;
    }
  }

  private readonly frameAt = (seq: number): OutputFrame => {
    const frame = this.memory[this.memoryHead + seq - this.memoryFirstSeq];
    if (frame?.seq !== seq) throw new OverthereError('INTERNAL', `output frame ${seq} missing`);
    return frame;
  };

  private notify(): void {
    if (this.waiters.size === 0) return;
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  // --- writing ---

  /**
   * Start the writer when a batch is queued; a smaller remainder is written after
   * {@link FLUSH_DELAY_MS}. Few, large writes keep the cost per byte down.
   */
  private schedule(): void {
    const store = this.store;
    if (this.pumping || store === undefined || store.writtenSeq >= this.seqCounter) return;
    if (this.flushAll || this.queuedBytes >= this.batchBytes) {
      if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      this.pumping = true;
      this.pumpDone = this.pump(store);
    } else {
      this.flushTimer ??= setTimeout(this.onFlushTimer, FLUSH_DELAY_MS);
    }
  }

  private readonly onFlushTimer = (): void => {
    this.flushTimer = undefined;
    this.flushAll = true;
    this.schedule();
  };

  // One writer loop at a time; it goes on while a batch (or a requested flush) is queued.
  private async pump(store: SegmentStore): Promise<void> {
    await Promise.resolve(); // Let appends of the same tick join the first batch.
    try {
      while (
        this.store !== undefined &&
        store.writtenSeq < this.seqCounter &&
        (this.flushAll || this.queuedBytes >= this.batchBytes)
      ) {
        // Not `queuedBytes -= await …`: that would drop the bytes appended during the write.
        const written = await store.write(this.frameAt, this.seqCounter);
        this.queuedBytes -= written;
        this.evict();
        this.releaseDrain();
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.pumping = false;
      this.flushAll = false;
      this.releaseDrain();
      this.schedule();
    }
  }

  private releaseDrain(): void {
    if (this.drain === undefined) return;
    if (this.store !== undefined && this.queuedBytes > this.settings.highWaterMarkBytes) return;
    const { resolve: resolveDrain } = this.drain;
    this.drain = undefined;
    resolveDrain();
  }

  /** Write everything queued. */
  private async flush(): Promise<void> {
    while (this.pumping || (this.store !== undefined && this.store.writtenSeq < this.seqCounter)) {
      this.flushAll = true;
      this.schedule();
      await this.pumpDone;
    }
  }

  private async syncStore(): Promise<void> {
    if (this.store === undefined) return;
    try {
      await this.store.sync();
    } catch (error) {
      this.fail(error);
    }
  }

  // A write failed: go on memory-only (what was written stays readable) and report
  // the failure from end()/close() rather than from every append.
  private fail(error: unknown): void {
    this.failure ??= error;
    const store = this.store;
    this.store = undefined;
    this.queuedBytes = 0;
    store?.close().catch(() => undefined);
    this.evict();
    this.releaseDrain();
  }

  private throwIfFailed(): void {
    if (this.failure === undefined) return;
    throw new OverthereError('INTERNAL', 'writing the output log to disk failed', {
      cause: this.failure,
    });
  }

  // end/close/destroy run one after another so they never race on the open file.
  private serialize(action: () => Promise<void>): Promise<void> {
    const run = this.lifecycle.then(action);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }

  // --- reading ---

  private async *events(request: ReadRequest): AsyncGenerator<OutputEvent, void, undefined> {
    const { wanted, fromOffset, follow, signal } = request;
    let reader: SegmentReader | undefined;
    let wake: (() => void) | undefined;
    const onAbort = (): void => wake?.();
    signal?.addEventListener('abort', onAbort);
    this.activeReaders += 1;
    const position: ReaderPosition = { seq: request.startSeq, follow, released: false };
    this.readerPositions.add(position);
    try {
      let cursor = request.startSeq;
      if (request.startGap) {
        // The bytes at fromOffset are gone, and so is the seq of the frame that held them.
        yield { type: 'gap', fromSeq: 0, toSeq: cursor };
      }
      while (signal?.aborted !== true && !this.destroyed) {
        position.seq = cursor;
        if (this.hold !== undefined) this.releaseHold();
        if (cursor >= this.seqCounter) {
          // Caught up: a follower let go after a stall holds the producer again.
          position.released = false;
          if (!follow || this.isEnded) return;
          await new Promise<void>((resolveWait) => {
            wake = resolveWait;
            this.waiters.add(resolveWait);
          });
          if (wake !== undefined) this.waiters.delete(wake);
          wake = undefined;
          continue;
        }

        let frame: OutputFrame;
        if (cursor >= this.memoryFirstSeq) {
          if (reader !== undefined) {
            await reader.close(); // Back in memory: do not hold a file open.
            reader = undefined;
            continue;
          }
          frame = this.frameAt(cursor);
          if (!wanted[streamIndex(frame.stream)]) {
            cursor += 1;
            continue;
          }
        } else if (this.onDisk(cursor)) {
          if (
            reader === undefined ||
            reader.segment.deleted ||
            reader.seq > cursor ||
            cursor >= reader.segment.endSeq
          ) {
            await reader?.close();
            reader = undefined;
            const segment = this.disk?.segmentFor(cursor);
            if (segment === undefined) {
              // Cannot happen while segments are contiguous; never spin if it does.
              yield { type: 'gap', fromSeq: cursor, toSeq: this.memoryFirstSeq };
              cursor = this.memoryFirstSeq;
              continue;
            }
            reader = await SegmentReader.open(segment);
            if (reader === undefined) {
              if (!segment.deleted) {
                // Removed behind our back: skip what it held.
                const toSeq = Math.min(segment.endSeq, this.memoryFirstSeq);
                yield { type: 'gap', fromSeq: cursor, toSeq };
                cursor = toSeq;
              }
              continue;
            }
          }
          const result = await readFrameAt(reader, cursor, wanted);
          if (typeof result === 'number') {
            cursor += 1;
            continue;
          }
          if (typeof result === 'string') {
            const segment: Segment = reader.segment;
            await reader.close();
            reader = undefined;
            // Deleted: go round again, which finds the cursor behind retention (a gap).
            if (result === 'deleted') continue;
            // Damaged on disk: skip what is left of this segment, with a marker.
            const toSeq = Math.min(segment.endSeq, this.memoryFirstSeq);
            yield { type: 'gap', fromSeq: cursor, toSeq };
            cursor = toSeq;
            continue;
          }
          frame = result;
        } else {
          // Behind retention: one marker, then on from the oldest frame still kept.
          const toSeq = this.nextRetained(cursor);
          yield { type: 'gap', fromSeq: cursor, toSeq };
          cursor = toSeq;
          continue;
        }

        cursor = frame.seq + 1;
        if (fromOffset !== undefined && frame.offset < fromOffset.offset) {
          const skip = fromOffset.offset - frame.offset;
          if (skip >= frame.data.length) continue;
          yield {
            type: 'frame',
            seq: frame.seq,
            offset: fromOffset.offset,
            stream: frame.stream,
            time: frame.time,
            data: frame.data.subarray(skip),
          };
          continue;
        }
        yield {
          type: 'frame',
          seq: frame.seq,
          offset: frame.offset,
          stream: frame.stream,
          time: frame.time,
          data: frame.data,
        };
      }
    } finally {
      this.activeReaders -= 1;
      this.readerPositions.delete(position);
      if (this.hold !== undefined) this.releaseHold();
      signal?.removeEventListener('abort', onAbort);
      if (wake !== undefined) this.waiters.delete(wake);
      await reader?.close();
    }
  }

  private onDisk(seq: number): boolean {
    const first = this.disk?.segments[0];
    return first !== undefined && seq >= first.firstSeq && seq < (this.disk?.writtenSeq ?? 0);
  }

  /** The first retained seq after `seq` (which is not retained). */
  private nextRetained(seq: number): number {
    const diskFirst = this.disk?.segments[0]?.firstSeq;
    if (diskFirst !== undefined && diskFirst > seq && diskFirst < (this.disk?.writtenSeq ?? 0)) {
      return Math.min(diskFirst, this.memoryFirstSeq);
    }
    return this.memoryFirstSeq;
  }

  /** Seq to start scanning from for byte `offset` of a stream; undefined if those bytes are gone. */
  private offsetStart(stream: StreamIndex, offset: number): number | undefined {
    if (offset >= this.streamBytes[stream]) return this.seqCounter;
    if (offset >= this.streamBytes[stream] - this.memoryStreamBytes[stream]) {
      return this.memoryFirstSeq;
    }
    return this.disk?.segmentStartFor(stream, offset);
  }
}

/** Read the frame at `seq` of the reader's segment, skipping the frames before it. */
async function readFrameAt(
  reader: SegmentReader,
  seq: number,
  wanted: readonly [boolean, boolean],
): Promise<SegmentReadResult> {
  while (reader.seq < seq) {
    const skipped = await reader.next(SKIP_ALL);
    if (typeof skipped === 'string') return skipped;
  }
  return reader.next(wanted);
}

/** Where a reader is, for eviction (its unread frames) and for holding the producer back. */
interface ReaderPosition {
  /** The next seq it reads. */
  seq: number;
  /** It follows the log live. */
  follow: boolean;
  /** Let go after a stall: it does not hold the producer back until it catches up. */
  released: boolean;
}

/** Memory beyond `memoryBytes` that frames a reader has yet to read may hold. */
function slackBytes(memoryBytes: number): number {
  return Math.min(memoryBytes * READER_SLACK_FACTOR, MAX_READER_SLACK_BYTES);
}
