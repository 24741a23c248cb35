/**
 * Serving one output request: read the task's log from the cursor and answer
 * with at most `maxBytes` of frames in one message. A follow request with
 * nothing new waits (long-poll) up to `waitMs`. The client asks for the next
 * batch only after it has this one, so a slow reader never makes the agent
 * buffer: flow control by pull.
 */
import {
  OverthereError,
  type OutputStream,
  type Supervisor,
  finalSnapshot,
  knownTask,
} from '@overthere/core';
import {
  checkFields,
  encodeBatch,
  integerField,
  stringField,
  type BatchEvent,
  type BatchHeader,
} from './wire.js';

/** Bytes counted per event for its share of the JSON header. */
const EVENT_OVERHEAD_BYTES = 128;
/** Most events in one batch (keeps the header small for many tiny frames). */
const MAX_EVENTS = 4096;

const OUTPUT_FIELDS = [
  'id',
  'cursor',
  'skipBytes',
  'offset',
  'stream',
  'follow',
  'waitMs',
  'maxBytes',
] as const;

function nextTick(): Promise<'tick'> {
  return new Promise((resolve) => setImmediate(() => resolve('tick')));
}

/** Options of {@link serveOutputBatch} that the agent fixes. */
export interface OutputBatchLimits {
  /** Largest batch (frame data plus header allowance). */
  maxBytes: number;
  /** Longest long-poll. */
  maxWaitMs: number;
  /** Aborted when the agent closes. */
  closing: AbortSignal;
}

/** Answer an output request (already decoded JSON) with a batch. */
export async function serveOutputBatch(
  supervisor: Supervisor,
  body: unknown,
  limits: OutputBatchLimits,
): Promise<Uint8Array> {
  const request = checkFields(body, OUTPUT_FIELDS, 'an output request');
  const id = stringField(request, 'id');
  const cursor = integerField(request, 'cursor');
  const skipBytes = integerField(request, 'skipBytes') ?? 0;
  const offset = integerField(request, 'offset');
  const waitMs = Math.min(integerField(request, 'waitMs') ?? limits.maxWaitMs, limits.maxWaitMs);
  const budget = Math.max(
    1024,
    Math.min(integerField(request, 'maxBytes') ?? limits.maxBytes, limits.maxBytes),
  );
  const follow = request.follow ?? false;
  if (typeof follow !== 'boolean') {
    throw new OverthereError('INVALID_ARGUMENT', 'follow must be a boolean');
  }
  const stream = request.stream ?? 'both';
  if (stream !== 'stdout' && stream !== 'stderr' && stream !== 'both') {
    throw new OverthereError('INVALID_ARGUMENT', 'stream must be stdout, stderr or both');
  }
  const streams: OutputStream[] = stream === 'both' ? ['stdout', 'stderr'] : [stream];
  if (offset !== undefined && (streams.length !== 1 || cursor !== undefined)) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      'offset needs a single stream (stdout or stderr) and no cursor',
    );
  }
  const log = supervisor.output(id); // NOT_FOUND first

  const controller = new AbortController();
  const onClosing = (): void => controller.abort();
  limits.closing.addEventListener('abort', onClosing, { once: true });
  let timedOut = false;
  const timer = follow
    ? setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, waitMs)
    : undefined;

  const iterator = log.read({
    streams,
    follow,
    signal: controller.signal,
    ...(cursor === undefined ? {} : { fromSeq: cursor }),
    ...(offset === undefined ? {} : { fromOffset: offset }),
  });
  const events: BatchEvent[] = [];
  const chunks: Uint8Array[] = [];
  const next: BatchHeader['next'] = {};
  if (cursor !== undefined) next.cursor = cursor;
  if (skipBytes > 0) next.skipBytes = skipBytes;
  if (offset !== undefined) next.offset = offset;
  let used = 0;
  let complete = false;
  let stoppedEarly = false;
  try {
    for (;;) {
      const pending = iterator.next();
      // With something to send, take only what is ready now.
      const result =
        events.length === 0 ? await pending : await Promise.race([pending, nextTick()]);
      if (result === 'tick') {
        stoppedEarly = true;
        controller.abort();
        await pending.catch(() => undefined); // whatever it brings is read again next time
        break;
      }
      if (result.done === true) {
        complete = !controller.signal.aborted;
        break;
      }
      const event = result.value;
      if (event.type === 'gap') {
        events.push({ type: 'gap', fromSeq: event.fromSeq, toSeq: event.toSeq });
        used += EVENT_OVERHEAD_BYTES;
        next.cursor = event.toSeq;
        delete next.skipBytes;
        delete next.offset;
      } else {
        const startsSliced =
          event.seq === cursor && skipBytes > 0 ? Math.min(skipBytes, event.data.length) : 0;
        let data: Uint8Array = event.data.subarray(startsSliced);
        const room = budget - used - EVENT_OVERHEAD_BYTES;
        let partial = false;
        if (data.length > room) {
          // Too big for what is left: a frame of its own goes in slices.
          if (events.length > 0) {
            stoppedEarly = true;
            controller.abort();
            break;
          }
          data = data.subarray(0, Math.max(room, 1));
          partial = true;
        }
        events.push({
          type: 'frame',
          seq: event.seq,
          offset: event.offset + startsSliced,
          stream: event.stream,
          time: event.time,
          length: data.length,
          ...(partial ? { partial: true } : {}),
        });
        chunks.push(data);
        used += data.length + EVENT_OVERHEAD_BYTES;
        delete next.offset;
        delete next.skipBytes;
        if (partial) {
          if (offset !== undefined && cursor === undefined && events.length === 1) {
            // Started by offset: go on by offset, which is exact for one stream.
            delete next.cursor;
            next.offset = event.offset + data.length;
          } else {
            next.cursor = event.seq;
            next.skipBytes = startsSliced + data.length;
          }
          stoppedEarly = true;
          controller.abort();
          break;
        }
        next.cursor = event.seq + 1;
      }
      if (used >= budget || events.length >= MAX_EVENTS) {
        stoppedEarly = true;
        controller.abort();
        break;
      }
    }
    const header: BatchHeader = { events, next };
    if (complete && !stoppedEarly && !timedOut) {
      const end = follow
        ? await finalSnapshot(supervisor, id, controller.signal)
        : knownTask(supervisor, id);
      if (end !== undefined) header.end = end;
    }
    return encodeBatch(header, chunks);
  } finally {
    clearTimeout(timer);
    limits.closing.removeEventListener('abort', onClosing);
    controller.abort();
    // Left at a yield after a break, the reader would stay registered with
    // the log for good (holding its producer back, keeping the GC waiting).
    await iterator.return?.(undefined).catch(() => undefined);
  }
}
