/**
 * What travels in NATS messages: JSON requests and replies, errors as
 * `{code, message}` (with the micro service error headers, so `$SRV.STATS`
 * counts them), output batches as a length-prefixed JSON header followed by
 * the frames' bytes, and adverts.
 */
import {
  HTTP_STATUS_BY_CODE,
  OverthereError,
  isErrorCode,
  toOverthereError,
  type OutputStream,
  type SupervisorCapacity,
  type TaskInfo,
} from '@overthere/core';

/** Header of the micro service protocol that marks an error reply. */
export const SERVICE_ERROR_HEADER = 'Nats-Service-Error';
/** Header with the error's numeric code (our HTTP status for the code). */
export const SERVICE_ERROR_CODE_HEADER = 'Nats-Service-Error-Code';
/** Header naming the task of a stdin request (its body is the bytes). */
export const TASK_HEADER = 'Overthere-Task';
/** Header of a stdin request that closes stdin after its bytes. */
export const EOF_HEADER = 'Overthere-Eof';
/** Headers of a live output message. */
export const SEQ_HEADER = 'Overthere-Seq';
export const OFFSET_HEADER = 'Overthere-Offset';
export const STREAM_HEADER = 'Overthere-Stream';
export const TIME_HEADER = 'Overthere-Time';
/** A live output message whose frame was too large to publish: pull it by cursor. */
export const TRUNCATED_HEADER = 'Overthere-Truncated';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** JSON as bytes. `undefined` becomes an empty payload. */
export function encodeJson(value: unknown): Uint8Array {
  return value === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(value));
}

/** Parse a JSON payload; `INVALID_ARGUMENT` when it is not JSON. Empty means `undefined`. */
export function decodeJson(data: Uint8Array): unknown {
  if (data.length === 0) return undefined;
  try {
    return JSON.parse(decoder.decode(data)) as unknown;
  } catch (error) {
    throw new OverthereError('INVALID_ARGUMENT', 'the request is not valid JSON', {
      cause: error,
    });
  }
}

/** The wire form of any error: `{code, message}` plus the status for the service header. */
export function errorReply(error: unknown): { status: number; body: Uint8Array; message: string } {
  const overthere = toOverthereError(error);
  return {
    status: HTTP_STATUS_BY_CODE[overthere.code],
    message: overthere.message,
    body: encodeJson(overthere.toJSON()),
  };
}

/** Rebuild the error of an error reply (body `{code, message}`; anything else is `INTERNAL`). */
export function errorFromReply(data: Uint8Array, description: string | undefined): OverthereError {
  try {
    const body = JSON.parse(decoder.decode(data)) as { code?: unknown; message?: unknown };
    if (isErrorCode(body.code)) return OverthereError.fromJSON(body);
  } catch {
    // not ours: fall through
  }
  return new OverthereError('INTERNAL', description ?? 'the agent answered with an error');
}

/** Fields a request object may have; anything else is `INVALID_ARGUMENT`. */
export function checkFields(
  value: unknown,
  allowed: readonly string[],
  what: string,
): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OverthereError('INVALID_ARGUMENT', `${what} must be a JSON object`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new OverthereError('INVALID_ARGUMENT', `${what} has an unknown field ${key}`);
    }
  }
  return value as Record<string, unknown>;
}

/** Top-level fields of a `TaskSpec`; the supervisor checks their values. */
export const TASK_SPEC_FIELDS = [
  'command',
  'script',
  'env',
  'inheritEnv',
  'cwd',
  'user',
  'stdin',
  'tty',
  'limits',
  'timeoutMs',
  'restart',
  'kill',
  'labels',
  'runtimeOptions',
] as const;

/** A string field, or `INVALID_ARGUMENT`. */
export function stringField(record: Record<string, unknown>, name: string): string {
  const value = record[name];
  if (typeof value !== 'string' || value === '') {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be a non-empty string`);
  }
  return value;
}

/** An optional non-negative integer field, or `INVALID_ARGUMENT`. */
export function integerField(record: Record<string, unknown>, name: string): number | undefined {
  const value = record[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be a non-negative integer`);
  }
  return value;
}

/** What an agent tells the pool about itself. */
export interface AgentAdvert {
  /** The agent's id (its subjects are `P.agent.<id>.*`). */
  agent: string;
  /** What it has left after its reservations. */
  capacity: SupervisorCapacity;
  /** When it was made, ms since the epoch. */
  time: number;
  /** How often the agent advertises, in ms. */
  intervalMs: number;
}

/** Parse an advert; undefined for anything malformed (adverts come from anyone on the subject). */
export function parseAdvert(data: Uint8Array): AgentAdvert | undefined {
  try {
    const value = JSON.parse(decoder.decode(data)) as Partial<AgentAdvert>;
    if (
      typeof value.agent !== 'string' ||
      typeof value.time !== 'number' ||
      typeof value.intervalMs !== 'number' ||
      typeof value.capacity !== 'object' ||
      value.capacity === null ||
      typeof value.capacity.liveTasks !== 'number'
    ) {
      return undefined;
    }
    return value as AgentAdvert;
  } catch {
    return undefined;
  }
}

/** An output request (`P.agent.A.output`). */
export interface OutputRequest {
  id: string;
  /** First seq wanted. */
  cursor?: number;
  /** Bytes of the frame at `cursor` already received (a large frame comes in slices). */
  skipBytes?: number;
  /** First byte offset wanted, with a single stream and no cursor. */
  offset?: number;
  stream?: OutputStream | 'both';
  /** Wait for output (up to `waitMs`) when there is none yet, until the task is final. */
  follow?: boolean;
  /** Longest wait of a follow request. */
  waitMs?: number;
  /** Most bytes of frame data in the reply. */
  maxBytes?: number;
}

/** One event of an output batch; frame bytes follow the header in order. */
export type BatchEvent =
  | {
      type: 'frame';
      seq: number;
      offset: number;
      stream: OutputStream;
      time: number;
      /** Bytes of this frame's data in the batch. */
      length: number;
      /** True when more of this frame follows in the next batch. */
      partial?: boolean;
    }
  | { type: 'gap'; fromSeq: number; toSeq: number };

/** The header of an output batch. */
export interface BatchHeader {
  events: BatchEvent[];
  /** Where the next request starts. */
  next: { cursor?: number; skipBytes?: number; offset?: number };
  /** Present when the output is complete: the task as it ended (follow) or is now. */
  end?: TaskInfo;
}

/** A batch as bytes: 4-byte big-endian header length, header JSON, frame data. */
export function encodeBatch(header: BatchHeader, chunks: readonly Uint8Array[]): Uint8Array {
  const json = encoder.encode(JSON.stringify(header));
  const dataLength = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const out = new Uint8Array(4 + json.length + dataLength);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, 4);
  let at = 4 + json.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** A decoded batch: each frame event's bytes sliced from the message (no copy). */
export function decodeBatch(data: Uint8Array): {
  header: BatchHeader;
  data: (Uint8Array | undefined)[];
} {
  if (data.length < 4) throw new OverthereError('INTERNAL', 'output batch too short');
  const length = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
  if (4 + length > data.length) throw new OverthereError('INTERNAL', 'output batch header cut');
  const header = JSON.parse(decoder.decode(data.subarray(4, 4 + length))) as BatchHeader;
  if (!Array.isArray(header.events)) throw new OverthereError('INTERNAL', 'bad output batch');
  let at = 4 + length;
  const slices = header.events.map((event) => {
    if (event.type !== 'frame') return undefined;
    const slice = data.subarray(at, at + event.length);
    if (slice.length !== event.length) throw new OverthereError('INTERNAL', 'output batch cut');
    at += event.length;
    return slice;
  });
  return { header, data: slices };
}
