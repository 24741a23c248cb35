/** Shared pieces of the Docker runtime's integration tests. */
import type { Readable } from 'node:stream';
import type { ExitStatus, Process } from '@overthere/core';
import Docker from 'dockerode';
import { waitFor } from '../../../test-support/wait-for.js';

export { waitFor };

/** The image `scripts/services.sh up` builds: busybox sh and utilities, no bash. */
export const TEST_IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';

/** A client for looking at containers behind the runtime's back. */
export const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/** Reject after `ms` naming what did not happen. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Everything a stream carries, as it arrives. */
export interface Collected {
  text(): string;
  /** Resolves once the text contains `needle`; rejects when the stream ends without it. */
  until(needle: string): Promise<string>;
  ended: Promise<string>;
}

export function collect(stream: Readable): Collected {
  const chunks: Buffer[] = [];
  const waiters = new Set<() => void>();
  let done = false;
  const text = () => Buffer.concat(chunks).toString();
  const ended = new Promise<string>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      for (const waiter of waiters) waiter();
    });
    stream.once('end', () => {
      done = true;
      for (const waiter of waiters) waiter();
      resolve(text());
    });
    stream.once('error', reject);
  });
  return {
    text,
    ended,
    until: (needle) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (text().includes(needle)) {
            waiters.delete(check);
            resolve(text());
          } else if (done) {
            waiters.delete(check);
            reject(new Error(`stream ended without ${JSON.stringify(needle)}: ${text()}`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Read both streams to their end and wait for the exit, bounded. */
export async function finish(
  child: Process,
  ms = 20_000,
): Promise<{ stdout: string; stderr: string; exit: ExitStatus }> {
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const exit = await within(child.wait(), ms, 'the process ending');
  return { stdout: await stdout.ended, stderr: await stderr.ended, exit };
}

/** True when the daemon still knows the container. */
export async function containerExists(id: string): Promise<boolean> {
  try {
    await docker.getContainer(id).inspect();
    return true;
  } catch {
    return false;
  }
}

/** `sh -c script` */
export const sh = (script: string): string[] => ['/bin/sh', '-c', script];

/** Poll `check` (where there is no event to await) until it returns something other than undefined/false. */
