/**
 * Moves a container's output from a Docker stream (a hijacked attach or exec
 * socket, or a logs stream) into a process's stdout and stderr, demultiplexing
 * when there is no TTY, with backpressure, and counting what was delivered so
 * an adopting runtime can skip what the previous one already passed on.
 */
import { PassThrough, type Readable } from 'node:stream';
import { createDemuxer, type DemuxStream } from './demux.js';

/** Bytes per stream. */
export interface StreamCounts {
  stdout: number;
  stderr: number;
}

/** A running pump. */
export interface OutputPump {
  readonly stdout: PassThrough;
  readonly stderr: PassThrough;
  /** Bytes delivered so far (skipped bytes included). */
  readonly counts: StreamCounts;
  /** Resolves once the source has closed and both outputs have been read to their end. */
  readonly done: Promise<void>;
  /** Stop moving bytes without ending the outputs (the agent is detaching). */
  detach(): void;
}

/** Options for {@link pumpOutput}. */
export interface PumpOptions {
  /** Raw (TTY) stream: everything is stdout. Otherwise Docker's multiplexed format. */
  tty: boolean;
  /** Bytes at the start of each stream already delivered by an earlier agent. */
  skip?: StreamCounts;
  /** Called after bytes were delivered (to persist the counts). */
  onProgress?: () => void;
}

const HIGH_WATER_MARK = 1024 * 1024;

/** Start moving `source` into a fresh stdout/stderr pair. */
export function pumpOutput(source: Readable, options: PumpOptions): OutputPump {
  const stdout = new PassThrough({ highWaterMark: HIGH_WATER_MARK });
  const stderr = new PassThrough({ highWaterMark: HIGH_WATER_MARK });
  const counts: StreamCounts = { stdout: 0, stderr: 0 };
  const skip: StreamCounts = { ...(options.skip ?? { stdout: 0, stderr: 0 }) };
  const targets = { stdout, stderr };
  let detached = false;
  let waitingDrains = 0;

  const onDrain = () => {
    waitingDrains -= 1;
    if (waitingDrains === 0 && !detached) source.resume();
  };

  const deliver = (stream: DemuxStream, data: Buffer) => {
    if (detached || data.length === 0) return;
    let piece = data;
    if (skip[stream] > 0) {
      const dropped = Math.min(skip[stream], piece.length);
      skip[stream] -= dropped;
      counts[stream] += dropped;
      piece = piece.subarray(dropped);
      if (piece.length === 0) return;
    }
    counts[stream] += piece.length;
    // Copy: the demuxer hands out views of the socket's buffer.
    if (!targets[stream].write(Buffer.from(piece))) {
      waitingDrains += 1;
      source.pause();
      targets[stream].once('drain', onDrain);
    }
    options.onProgress?.();
  };

  const demuxer = options.tty ? undefined : createDemuxer(deliver);
  source.on('data', (chunk: Buffer) => {
    if (demuxer) demuxer.write(chunk);
    else deliver('stdout', chunk);
  });

  const done = new Promise<void>((resolve) => {
    let ended = 0;
    const onEnd = () => {
      ended += 1;
      if (ended === 2) resolve();
    };
    stdout.once('end', onEnd);
    stderr.once('end', onEnd);
    let closed = false;
    const close = () => {
      if (closed || detached) return;
      closed = true;
      stdout.end();
      stderr.end();
    };
    source.once('end', close);
    source.once('close', close);
    // A broken connection ends the output; the exit status comes from the daemon.
    source.on('error', close);
  });

  return {
    stdout,
    stderr,
    counts,
    done,
    detach() {
      detached = true;
      source.destroy();
    },
  };
}
