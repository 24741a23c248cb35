import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createDemuxer, type DemuxStream } from './demux.js';

function frame(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function collect() {
  const out: Record<DemuxStream, Buffer[]> = { stdout: [], stderr: [] };
  const demuxer = createDemuxer((stream, data) => out[stream].push(Buffer.from(data)));
  return { demuxer, text: (stream: DemuxStream) => Buffer.concat(out[stream]) };
}

describe('createDemuxer', () => {
  it('splits frames into stdout and stderr', () => {
    const { demuxer, text } = collect();
    demuxer.write(
      Buffer.concat([
        frame(1, Buffer.from('out1\n')),
        frame(2, Buffer.from('err1\n')),
        frame(1, Buffer.from('out2\n')),
      ]),
    );
    expect(text('stdout').toString()).toBe('out1\nout2\n');
    expect(text('stderr').toString()).toBe('err1\n');
    expect(demuxer.pending).toBe(0);
  });

  it('loses nothing when chunks split headers and payloads at every byte', () => {
    const stdout = randomBytes(3000);
    const stderr = randomBytes(1000);
    const wire = Buffer.concat([
      frame(1, stdout.subarray(0, 1000)),
      frame(2, stderr),
      frame(1, stdout.subarray(1000)),
      frame(1, Buffer.alloc(0)),
    ]);
    for (const size of [1, 3, 7, 8, 9, 4096]) {
      const { demuxer, text } = collect();
      for (let offset = 0; offset < wire.length; offset += size) {
        demuxer.write(wire.subarray(offset, offset + size));
      }
      expect(text('stdout').equals(stdout), `chunk size ${size}`).toBe(true);
      expect(text('stderr').equals(stderr), `chunk size ${size}`).toBe(true);
      expect(demuxer.pending).toBe(0);
    }
  });

  it('reports an unfinished frame as pending', () => {
    const { demuxer } = collect();
    demuxer.write(frame(1, Buffer.from('abcdef')).subarray(0, 10));
    expect(demuxer.pending).toBe(4);
  });

  it('sends daemon error frames to stderr', () => {
    const { demuxer, text } = collect();
    demuxer.write(frame(3, Buffer.from('boom')));
    expect(text('stderr').toString()).toBe('boom');
  });
});
