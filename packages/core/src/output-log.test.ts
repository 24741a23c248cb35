import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OverthereError } from './errors.js';
import {
  createOutputLog,
  type OutputEvent,
  type OutputLog,
  type OutputLogOptions,
  type OutputReadOptions,
  type OutputStream,
} from './output-log.js';
import { SegmentReader, type Segment } from './output-log/segment-reader.js';
import { openOutputLog } from './output-log/segmented-output-log.js';
import type { WriteMode } from './output-log/segment-store.js';

const directories: string[] = [];
const logs: OutputLog[] = [];

afterEach(async () => {
  await Promise.all(logs.splice(0).map((log) => log.close().catch(() => undefined)));
  await Promise.all(directories.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function temporaryDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'overthere-output-log-'));
  directories.push(dir);
  return dir;
}

let writeMode: WriteMode = 'adaptive';

/** Open a log with the write mode of the suite that runs. */
async function open(options: OutputLogOptions = {}): Promise<OutputLog> {
  const log = await openOutputLog(options, { writeMode });
  logs.push(log);
  return log;
}

async function collect(log: OutputLog, options: OutputReadOptions = {}): Promise<OutputEvent[]> {
  const events: OutputEvent[] = [];
  for await (const event of log.read(options)) events.push(event);
  return events;
}

/** Events in a form that compares well and prints readably. */
function describeEvents(events: OutputEvent[]): unknown[] {
  return events.map((event) =>
    event.type === 'gap' ? event : { ...event, data: event.data.toString('hex') },
  );
}

function frames(events: OutputEvent[]) {
  return events.flatMap((event) => (event.type === 'frame' ? [event] : []));
}

function gaps(events: OutputEvent[]) {
  return events.flatMap((event) => (event.type === 'gap' ? [event] : []));
}

function streamBytes(events: OutputEvent[], stream: OutputStream): Buffer {
  return Buffer.concat(
    frames(events)
      .filter((frame) => frame.stream === stream)
      .map((frame) => frame.data),
  );
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await segmentFiles(dir)) total += (await stat(join(dir, name))).size;
  return total;
}

/** Append honouring backpressure, as a well-behaved producer does. */
async function write(log: OutputLog, stream: OutputStream, data: Uint8Array): Promise<void> {
  await log.append(stream, data);
}

/** Random frames on random streams; returns what each stream should hold. */
async function writeRandom(
  log: OutputLog,
  count: number,
  maxBytes: number,
): Promise<Record<OutputStream, Buffer>> {
  const written: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  for (let index = 0; index < count; index += 1) {
    const stream: OutputStream = Math.random() < 0.6 ? 'stdout' : 'stderr';
    const data = randomBytes(1 + Math.floor(Math.random() * maxBytes));
    written[stream].push(data);
    await write(log, stream, data);
    if (index % 17 === 0) await nextTurn();
  }
  return { stdout: Buffer.concat(written.stdout), stderr: Buffer.concat(written.stderr) };
}

it('createOutputLog opens a working log', async () => {
  const log = await createOutputLog({ dir: await temporaryDir() });
  logs.push(log);
  await log.append('stdout', Buffer.from('hello'));
  await log.end();
  expect((await log.text('stdout')).toString()).toBe('hello');
  await expect(createOutputLog({ memoryBytes: -1 })).rejects.toThrow(OverthereError);
});

it('a segment reader reports bytes read while the segment was dropped as deleted', async () => {
  const dir = await temporaryDir();
  const log = await open({ dir });
  await write(log, 'stdout', Buffer.alloc(100, 7));
  await log.close();
  const path = join(dir, (await segmentFiles(dir))[0] ?? '');
  const size = (await stat(path)).size;
  const segment: Segment = {
    firstSeq: 0,
    startOffsets: [0, 0],
    path,
    size,
    fileBytes: size,
    endSeq: 1,
    deleted: false,
  };
  const intact = await SegmentReader.open({ ...segment });
  expect(await intact?.next([true, true])).toMatchObject({ seq: 0, data: Buffer.alloc(100, 7) });
  await intact?.close();

  const reader = await SegmentReader.open(segment);
  const pending = reader?.next([true, true]);
  // Dropped and recycled while the read is in flight: whatever it got must not be trusted.
  segment.deleted = true;
  writeFileSync(path, Buffer.alloc(size, 0xee));
  expect(await pending).toBe('deleted');
  await reader?.close();
  expect(await SegmentReader.open(segment)).toBeUndefined();
});

// Every behaviour holds whether segments are written with synchronous calls or on the thread pool.
describe.each(['adaptive', 'thread-pool'] as const)('OutputLog (%s writes)', (mode) => {
  beforeEach(() => {
    writeMode = mode;
  });

  it('round-trips binary data exactly, with no trailing newline added', async () => {
    const dir = await temporaryDir();
    for (const options of [{}, { dir }]) {
      const log = await open(options);
      const chunks = [randomBytes(1), randomBytes(70_000), randomBytes(3), Buffer.from([0, 10, 0])];
      for (const chunk of chunks) await write(log, 'stdout', chunk);
      await log.end();
      const expected = Buffer.concat(chunks);
      expect((await log.text('stdout')).equals(expected)).toBe(true);
      expect(log.bytes('stdout')).toBe(expected.length);
      expect((await log.text('stderr')).length).toBe(0);
      await log.close();
    }
    const reopened = await open({ dir });
    expect(reopened.bytes('stdout')).toBe(70_007);
    expect((await reopened.text('stdout')).subarray(-3)).toEqual(Buffer.from([0, 10, 0]));
  });

  it('holds no descriptor and no memory for an ended durable log, and reopens it on append', async () => {
    const dir = await temporaryDir();
    const log = await open({ dir });
    const openInDir = async () => {
      const fds = await readdir('/proc/self/fd');
      const targets = await Promise.all(
        fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
      );
      return targets.filter((target) => target.startsWith(dir)).length;
    };
    await write(log, 'stdout', Buffer.from('before '));
    // Writes are batched: wait (bounded) until the segment file is open.
    for (let tries = 0; tries < 200 && (await openInDir()) === 0; tries += 1) await nextTurn();
    expect(await openInDir()).toBe(1);
    await log.end();
    expect(await openInDir()).toBe(0);
    expect((await log.text('stdout')).toString()).toBe('before ');
    log.reopen();
    await write(log, 'stdout', Buffer.from('after'));
    await log.end();
    expect((await log.text('stdout')).toString()).toBe('before after');
    expect(frames(await collect(log)).map((frame) => frame.seq)).toEqual([0, 1]);
  });

  it('keeps stdout and stderr apart and preserves their interleaving', async () => {
    const log = await open({ dir: await temporaryDir() });
    const script: [OutputStream, string][] = [
      ['stdout', 'one '],
      ['stderr', 'warning\n'],
      ['stdout', 'two '],
      ['stdout', 'three'],
      ['stderr', 'fatal'],
    ];
    for (const [stream, text] of script) await write(log, stream, Buffer.from(text));
    await log.end();

    const events = frames(await collect(log));
    expect(events.map((frame) => [frame.seq, frame.stream, frame.data.toString()])).toEqual(
      script.map(([stream, text], seq) => [seq, stream, text]),
    );
    expect(events.map((frame) => frame.offset)).toEqual([0, 0, 4, 8, 8]);
    expect((await log.text('stdout')).toString()).toBe('one two three');
    expect((await log.text('stderr')).toString()).toBe('warning\nfatal');
    expect(log.bytes('stderr')).toBe(13);
    const stderr = frames(await collect(log, { streams: ['stderr'] }));
    expect(stderr.map((frame) => frame.seq)).toEqual([1, 4]);
  });

  it('replays from every cursor exactly what a live follower saw', async () => {
    for (const options of [
      { memoryBytes: 4 * 1024 * 1024 },
      // Small memory and segments: most replays come from disk, across rotations.
      { dir: await temporaryDir(), memoryBytes: 2048, segmentBytes: 4096 },
    ]) {
      const log = await open(options);
      const followed = collect(log, { follow: true });
      const followedStderr = collect(log, { follow: true, streams: ['stderr'] });
      await writeRandom(log, 300, 200);
      await log.end();
      const live = await followed;
      expect(frames(live).map((frame) => frame.seq)).toEqual([...Array(300).keys()]);
      expect(describeEvents(await followedStderr)).toEqual(
        describeEvents(live.filter((event) => event.type === 'frame' && event.stream === 'stderr')),
      );
      for (let cursor = 0; cursor <= 300; cursor += 1) {
        const replay = await collect(log, { fromSeq: cursor });
        expect(describeEvents(replay)).toEqual(describeEvents(live.slice(cursor)));
      }
      for (let cursor = 0; cursor <= 300; cursor += 7) {
        const replay = await collect(log, { fromSeq: cursor, streams: ['stderr'] });
        const expected = live.filter(
          (event) => event.type === 'frame' && event.stream === 'stderr' && event.seq >= cursor,
        );
        expect(describeEvents(replay)).toEqual(describeEvents(expected));
      }
    }
  });

  it('slices the first frame so fromOffset delivers exactly the bytes from that offset', async () => {
    for (const options of [
      {},
      { dir: await temporaryDir(), memoryBytes: 512, segmentBytes: 1024 },
    ]) {
      const log = await open(options);
      const written = await writeRandom(log, 60, 80);
      await log.end();
      for (const stream of ['stdout', 'stderr'] as const) {
        const full = written[stream];
        // Every frame boundary and its neighbours, and every third offset in between.
        const offsets = new Set([full.length, full.length + 1]);
        for (const frame of frames(await collect(log, { streams: [stream] }))) {
          for (const delta of [-1, 0, 1]) offsets.add(Math.max(0, frame.offset + delta));
        }
        for (let offset = 0; offset < full.length; offset += 3) offsets.add(offset);
        for (const offset of offsets) {
          const events = await collect(log, { streams: [stream], fromOffset: offset });
          expect(gaps(events)).toEqual([]);
          expect(streamBytes(events, stream).equals(full.subarray(offset))).toBe(true);
          const first = frames(events)[0];
          if (offset < full.length) expect(first?.offset).toBe(offset);
          else expect(first).toBeUndefined();
        }
      }
    }
    const log = await open();
    expect(() => log.read({ fromOffset: 0 })).toThrow(OverthereError);
    expect(() => log.read({ fromOffset: 0, streams: ['stdout'], fromSeq: 0 })).toThrow(
      OverthereError,
    );
    expect(() => log.read({ fromSeq: -1 })).toThrow(OverthereError);
  });

  it('follows across many rotations without gaps or repeats, even from disk', async () => {
    const dir = await temporaryDir();
    const log = await open({ dir, segmentBytes: 256, memoryBytes: 300 });
    // A slow follower: it falls behind the memory tail and reads on from the segments.
    const followed = (async () => {
      const events: OutputEvent[] = [];
      for await (const event of log.read({ follow: true })) {
        events.push(event);
        if (events.length % 3 === 0) await nextTurn();
      }
      return events;
    })();
    const written = await writeRandom(log, 1500, 120);
    await log.end();
    const events = await followed;
    expect(gaps(events)).toEqual([]);
    expect(frames(events).map((frame) => frame.seq)).toEqual([...Array(1500).keys()]);
    expect(streamBytes(events, 'stdout').equals(written.stdout)).toBe(true);
    expect(streamBytes(events, 'stderr').equals(written.stderr)).toBe(true);
    expect((await segmentFiles(dir)).length).toBeGreaterThan(50);
  });

  it('deletes the oldest segments past maxDiskBytes; a stalled follower, let go, gets one gap marker', async () => {
    for (const readFirst of [1, 3]) {
      const dir = await temporaryDir();
      const log = await open({
        dir,
        segmentBytes: 1024,
        maxDiskBytes: 4096,
        memoryBytes: 1024,
        followerStallMs: 50,
      });
      for (let index = 0; index < 10; index += 1)
        await write(log, 'stdout', Buffer.alloc(100, index));
      await log.end();
      log.reopen();
      // Memory holds only the tail now, so this reader works from the first segment file.
      const reader = log.read({ follow: true });
      const seen: OutputEvent[] = [];
      for (let index = 0; index < readFirst; index += 1) {
        const next = await reader.next();
        if (!next.done) seen.push(next.value);
      }
      for (let index = 10; index < 200; index += 1) {
        await write(log, 'stdout', Buffer.alloc(100, index));
      }
      await log.end();
      for await (const event of { [Symbol.asyncIterator]: () => reader }) seen.push(event);

      expect(await diskBytes(dir)).toBeLessThanOrEqual(4096 + 1024);
      expect((await segmentFiles(dir))[0]).not.toBe('0000000000000000.seg');
      const gapMarkers = gaps(seen);
      expect(gapMarkers).toEqual([{ type: 'gap', fromSeq: readFirst, toSeq: expect.any(Number) }]);
      const resumed = gapMarkers[0]?.toSeq ?? 0;
      expect(resumed).toBe(log.firstSeq);
      const seqs = frames(seen).map((frame) => frame.seq);
      expect(seqs).toEqual([
        ...Array.from({ length: readFirst }, (_, seq) => seq),
        ...Array.from({ length: 200 - resumed }, (_, index) => resumed + index),
      ]);
      for (const frame of frames(seen)) expect(frame.data).toEqual(Buffer.alloc(100, frame.seq));
    }
  });

  it('holds the producer back while a follower lags, so it misses nothing past retention', async () => {
    for (const options of [{ dir: await temporaryDir() }, {}]) {
      const log = await open({
        ...options,
        segmentBytes: 1024,
        maxDiskBytes: 2048,
        memoryBytes: 512,
      });
      const follower = collect(log, { follow: true });
      await nextTurn();
      let held = 0;
      for (let index = 0; index < 300; index += 1) {
        const wait = log.append('stdout', Buffer.alloc(100, index));
        if (wait !== undefined) {
          held += 1;
          await wait;
        }
      }
      await log.end();
      const events = await follower;
      expect(gaps(events)).toEqual([]);
      expect(frames(events).map((frame) => frame.seq)).toEqual(
        Array.from({ length: 300 }, (_, seq) => seq),
      );
      expect(held).toBeGreaterThan(0);
      // Retention still applies to everyone else.
      if (options.dir !== undefined)
        expect(await diskBytes(options.dir)).toBeLessThanOrEqual(2048 + 1024);
      expect(log.firstSeq).toBeGreaterThan(0);
    }
  });

  it('lets a follower that reads nothing go after followerStallMs, and holds again once it caught up', async () => {
    const log = await open({ memoryBytes: 0, followerStallMs: 100 });
    const follower = log.read({ follow: true });
    const first = follower.next();
    await nextTurn();
    // It takes one frame and reads nothing more: the producer waits for it, then goes on.
    const started = performance.now();
    for (let index = 0; index < 20; index += 1) await write(log, 'stdout', Buffer.alloc(1024));
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
    expect(await first).toMatchObject({ value: { seq: 0 } });
    // Let go, it lost what memory could not keep (one gap), then reads on to the head ...
    const rest: OutputEvent[] = [];
    while (frames(rest).at(-1)?.seq !== 19) {
      const step = await follower.next();
      if (step.done) break;
      rest.push(step.value);
    }
    expect(gaps(rest)).toHaveLength(1);
    // ... and, caught up again, holds the producer once more.
    const next = follower.next(); // waits at the head
    await nextTurn();
    const wait = log.append('stdout', Buffer.from('z'));
    expect(wait).toBeInstanceOf(Promise);
    expect(await next).toMatchObject({ value: { seq: 20 } });
    await log.end();
    await wait;
  });

  it('gives a gap marker when a memory-only log evicted the cursor', async () => {
    const log = await open({ memoryBytes: 1000 });
    const follower = log.read({ follow: true });
    for (let index = 0; index < 3; index += 1) await write(log, 'stdout', Buffer.alloc(100, index));
    const first = await follower.next();
    expect(first.value).toMatchObject({ type: 'frame', seq: 0 });
    for (let index = 3; index < 100; index += 1)
      await write(log, 'stdout', Buffer.alloc(100, index));
    await log.end();

    expect(log.firstSeq).toBeGreaterThan(80);
    const rest: OutputEvent[] = [];
    for await (const event of { [Symbol.asyncIterator]: () => follower }) rest.push(event);
    expect(rest[0]).toEqual({ type: 'gap', fromSeq: 1, toSeq: log.firstSeq });
    expect(frames(rest).map((frame) => frame.seq)).toEqual(
      Array.from({ length: 100 - log.firstSeq }, (_, index) => log.firstSeq + index),
    );
    expect(gaps(rest)).toHaveLength(1);

    const replay = await collect(log, { fromSeq: 0 });
    expect(replay[0]).toEqual({ type: 'gap', fromSeq: 0, toSeq: log.firstSeq });
    expect(gaps(await collect(log))).toEqual([]);
    const byOffset = await collect(log, { streams: ['stdout'], fromOffset: 0 });
    expect(byOffset[0]).toEqual({ type: 'gap', fromSeq: 0, toSeq: log.firstSeq });

    // The newest frame stays even when it alone exceeds memoryBytes.
    const big = randomBytes(5000);
    log.reopen();
    await write(log, 'stderr', big);
    expect(log.firstSeq).toBe(100);
    expect((await log.text('stderr')).equals(big)).toBe(true);
  });

  it('recovers an existing dir and appends after it', async () => {
    const dir = await temporaryDir();
    const first = await open({ dir, segmentBytes: 2048 });
    const written = await writeRandom(first, 100, 100);
    const before = await collect(first);
    await first.close();

    const second = await open({ dir, segmentBytes: 2048 });
    expect(second.nextSeq).toBe(100);
    expect(second.ended).toBe(false);
    expect(second.bytes('stdout')).toBe(written.stdout.length);
    expect(second.bytes('stderr')).toBe(written.stderr.length);
    expect(describeEvents(await collect(second))).toEqual(describeEvents(before));
    await write(second, 'stderr', Buffer.from('after restart'));
    await second.close();

    const third = await open({ dir, segmentBytes: 2048 });
    const events = frames(await collect(third));
    expect(events).toHaveLength(101);
    expect(events[100]).toMatchObject({
      seq: 100,
      stream: 'stderr',
      offset: written.stderr.length,
    });
    expect((await third.text('stderr')).toString('latin1')).toBe(
      written.stderr.toString('latin1') + 'after restart',
    );
  });

  it('cuts off a torn trailing frame and a torn new segment when recovering', async () => {
    const dir = await temporaryDir();
    const first = await open({ dir });
    await write(first, 'stdout', Buffer.from('complete line\n'));
    await write(first, 'stderr', Buffer.from('complete error\n'));
    await first.close();
    const [segment] = await segmentFiles(dir);
    const path = join(dir, segment ?? '');
    const intactSize = (await stat(path)).size;

    // A frame header promising 100 bytes, followed by only 10 of them.
    const header = Buffer.alloc(32);
    header.writeUInt32LE(100, 0);
    header[4] = 0;
    header[5] = 1;
    header.writeUInt16LE(0x4f54, 6);
    header.writeUInt32LE(2, 8);
    header.writeUInt32LE(14, 16);
    await appendFile(path, Buffer.concat([header, Buffer.alloc(10, 120)]));
    // And a next segment file that never got its header written out.
    await writeFile(join(dir, '0000000000000002.seg'), Buffer.from('OTL'));

    const second = await open({ dir });
    expect(second.nextSeq).toBe(2);
    expect(second.bytes('stdout')).toBe(14);
    expect((await stat(path)).size).toBe(intactSize);
    expect(await segmentFiles(dir)).toEqual([segment]);
    await write(second, 'stdout', Buffer.from('after'));
    await second.end();
    expect((await second.text('stdout')).toString()).toBe('complete line\nafter');
    expect((await second.text('stderr')).toString()).toBe('complete error\n');
    await second.close();

    const third = await open({ dir });
    expect(third.nextSeq).toBe(3);
    expect((await third.text('stdout')).toString()).toBe('complete line\nafter');
  });

  it('remembers stream offsets after every frame of a stream was deleted', async () => {
    const dir = await temporaryDir();
    const first = await open({ dir, segmentBytes: 1024, maxDiskBytes: 2048, memoryBytes: 0 });
    await write(first, 'stderr', Buffer.alloc(100, 1));
    for (let index = 0; index < 100; index += 1) await write(first, 'stdout', Buffer.alloc(100, 2));
    await first.close();
    const second = await open({ dir, segmentBytes: 1024, maxDiskBytes: 2048 });
    expect(second.firstSeq).toBeGreaterThan(1);
    expect(second.bytes('stderr')).toBe(100);
    await write(second, 'stderr', Buffer.from('x'));
    const [frame] = frames(await collect(second, { streams: ['stderr'] }));
    expect(frame).toMatchObject({ seq: 101, offset: 100 });
  });

  it('asks the producer to wait while the disk writer lags (backpressure)', async () => {
    const log = await open({ dir: await temporaryDir(), highWaterMarkBytes: 64 * 1024 });
    expect(log.append('stdout', Buffer.alloc(32 * 1024))).toBeUndefined();
    const wait = log.append('stdout', Buffer.alloc(64 * 1024));
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    // Once drained, appending is synchronous again.
    expect(log.append('stdout', Buffer.alloc(1024))).toBeUndefined();
    await log.end();
    expect(log.bytes('stdout')).toBe(97 * 1024);

    const memoryOnly = await open({ highWaterMarkBytes: 1 });
    expect(memoryOnly.append('stdout', Buffer.alloc(1024 * 1024))).toBeUndefined();
  });

  it('never evicts a frame from memory before it is on disk', async () => {
    const dir = await temporaryDir();
    const log = await open({ dir, memoryBytes: 0 });
    const chunks = Array.from({ length: 20 }, () => randomBytes(500));
    // All appended in one tick: none is written yet, so all must still be readable.
    for (const chunk of chunks) void log.append('stdout', chunk);
    const events = await collect(log);
    expect(gaps(events)).toEqual([]);
    expect(streamBytes(events, 'stdout').equals(Buffer.concat(chunks))).toBe(true);
    await log.end();
    expect((await log.text('stdout')).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('finishes followers on end(), refuses appends after it, and continues after reopen()', async () => {
    const log = await open({ dir: await temporaryDir() });
    const followed = collect(log, { follow: true });
    await write(log, 'stdout', Buffer.from('a'));
    await write(log, 'stderr', Buffer.from('b'));
    await log.end();
    await log.end(); // Idempotent.
    expect(log.ended).toBe(true);
    expect(frames(await followed).map((frame) => frame.data.toString())).toEqual(['a', 'b']);

    let error: unknown;
    try {
      void log.append('stdout', Buffer.from('late'));
    } catch (caught) {
      error = caught;
    }
    expect(OverthereError.hasCode(error, 'FAILED_PRECONDITION')).toBe(true);

    log.reopen();
    expect(log.ended).toBe(false);
    const resumed = collect(log, { follow: true, fromSeq: 2 });
    await write(log, 'stdout', Buffer.from('c'));
    await log.close();
    expect(frames(await resumed).map((frame) => [frame.seq, frame.offset])).toEqual([[2, 1]]);
    expect(() => log.reopen()).toThrow(OverthereError);
    expect(() => log.append('stdout', Buffer.from('x'))).toThrow(OverthereError);
  });

  it('ends iteration quietly when the signal aborts', async () => {
    const log = await open();
    await write(log, 'stdout', Buffer.from('x'));
    const controller = new AbortController();
    const reader = log.read({ follow: true, signal: controller.signal });
    expect((await reader.next()).value).toMatchObject({ seq: 0 });
    const waiting = reader.next();
    controller.abort();
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(await collect(log, { signal: AbortSignal.abort() })).toEqual([]);
  });

  it('ignores empty appends and accepts any Uint8Array', async () => {
    const log = await open();
    void log.append('stdout', new Uint8Array(0));
    expect(log.nextSeq).toBe(0);
    const view = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
    void log.append('stdout', view);
    expect(log.nextSeq).toBe(1);
    expect(await log.text('stdout')).toEqual(Buffer.from([2, 3]));
  });

  it('keeps working from memory when the disk fails, and reports it from end()', async () => {
    const dir = join(await temporaryDir(), 'doomed');
    const log = await open({ dir, segmentBytes: 256 });
    await write(log, 'stdout', Buffer.alloc(300, 1));
    await log.end();
    log.reopen();
    await rm(dir, { recursive: true }); // The next segment cannot be created.
    for (let index = 0; index < 5; index += 1) await write(log, 'stdout', Buffer.alloc(100, 2));
    const ending = log.end();
    await expect(ending).rejects.toSatisfy((error) => OverthereError.hasCode(error, 'INTERNAL'));
    expect(log.bytes('stdout')).toBe(800);
    const tail = frames(await collect(log, { fromSeq: 1 }));
    expect(tail.map((frame) => frame.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('destroy() removes the segment files and the dir', async () => {
    const dir = join(await temporaryDir(), 'task');
    const log = await open({ dir, segmentBytes: 1024 });
    await writeRandom(log, 50, 100);
    await log.end();
    expect((await segmentFiles(dir)).length).toBeGreaterThan(1);
    await log.destroy();
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await collect(log)).toEqual([]);
  });

  it('keeps memory flat while 256 MiB go through a durable log with a live follower', async () => {
    const log = await open({ dir: await temporaryDir() });
    let followedBytes = 0;
    let gapCount = 0;
    const follower = (async () => {
      for await (const event of log.read({ follow: true })) {
        if (event.type === 'frame') followedBytes += event.data.length;
        else gapCount += 1;
      }
    })();
    const chunkBytes = 64 * 1024;
    const chunks = (256 * 1024 * 1024) / chunkBytes;
    const produce = async (from: number, to: number) => {
      for (let index = from; index < to; index += 1) {
        // A fresh buffer per chunk, one chunk per event loop turn, as a pipe delivers them.
        await log.append('stdout', Buffer.allocUnsafe(chunkBytes).fill(index & 0xff));
        await nextTurn();
      }
    };
    await produce(0, 256); // Warm up the allocator before taking the baseline.
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    for (let from = 256; from < chunks; from += 256) {
      await produce(from, from + 256);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    await log.end();
    await follower;
    expect(gapCount).toBe(0);
    expect(followedBytes).toBe(256 * 1024 * 1024);
    expect(log.bytes('stdout')).toBe(256 * 1024 * 1024);
    expect(peak - baseline).toBeLessThan(64 * 1024 * 1024);
  });
});
