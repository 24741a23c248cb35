import { describe, expect, it } from 'vitest';
import { OverthereError } from '@overthere/core';
import {
  checkFields,
  decodeBatch,
  decodeJson,
  encodeBatch,
  errorFromReply,
  errorReply,
  parseAdvert,
} from './wire.js';

describe('wire', () => {
  it('round-trips an output batch, frames sliced from one buffer', () => {
    const one = Buffer.from('hello ');
    const two = Buffer.from([0, 1, 2, 255]);
    const bytes = encodeBatch(
      {
        events: [
          { type: 'frame', seq: 4, offset: 10, stream: 'stdout', time: 1, length: one.length },
          { type: 'gap', fromSeq: 5, toSeq: 7 },
          { type: 'frame', seq: 7, offset: 0, stream: 'stderr', time: 2, length: 4, partial: true },
        ],
        next: { cursor: 7, skipBytes: 4 },
      },
      [one, two],
    );
    const decoded = decodeBatch(bytes);
    expect(decoded.header.next).toEqual({ cursor: 7, skipBytes: 4 });
    expect(Buffer.from(decoded.data[0]!).toString()).toBe('hello ');
    expect(decoded.data[1]).toBeUndefined();
    expect(Buffer.from(decoded.data[2]!).equals(two)).toBe(true);
  });

  it('refuses a cut batch', () => {
    const bytes = encodeBatch(
      {
        events: [{ type: 'frame', seq: 0, offset: 0, stream: 'stdout', time: 0, length: 10 }],
        next: {},
      },
      [Buffer.alloc(10)],
    );
    expect(() => decodeBatch(bytes.subarray(0, bytes.length - 1))).toThrow(/cut/);
    expect(() => decodeBatch(new Uint8Array(2))).toThrow(/short/);
  });

  it('carries errors as {code, message} and rebuilds them', () => {
    const reply = errorReply(new OverthereError('NOT_FOUND', 'no such task: x'));
    expect(reply.status).toBe(404);
    const rebuilt = errorFromReply(reply.body, reply.message);
    expect(OverthereError.hasCode(rebuilt, 'NOT_FOUND')).toBe(true);
    expect(rebuilt.message).toBe('no such task: x');
    expect(errorReply(new Error('boom')).status).toBe(500);
    expect(errorFromReply(new Uint8Array(0), 'odd').code).toBe('INTERNAL');
  });

  it('refuses malformed requests as INVALID_ARGUMENT', () => {
    expect(() => decodeJson(Buffer.from('{'))).toThrow(/not valid JSON/);
    expect(decodeJson(new Uint8Array(0))).toBeUndefined();
    expect(() => checkFields([], ['id'], 'x')).toThrow(/JSON object/);
    expect(() => checkFields({ id: 'a', other: 1 }, ['id'], 'x')).toThrow(/unknown field other/);
  });

  it('parses adverts and ignores anything else', () => {
    const advert = { agent: 'a', capacity: { liveTasks: 0 }, time: 1, intervalMs: 10 };
    expect(parseAdvert(Buffer.from(JSON.stringify(advert)))).toEqual(advert);
    expect(parseAdvert(Buffer.from('{"agent":1}'))).toBeUndefined();
    expect(parseAdvert(Buffer.from('nope'))).toBeUndefined();
  });
});
