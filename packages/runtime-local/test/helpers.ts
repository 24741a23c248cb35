/** Test helpers: reading process output and /proc. */
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { ExitStatus, Process, Runtime, TaskSpec } from '@overthere/core';

/** Accumulates a stream and lets a test await some text in it. */
export interface Collector {
  readonly buffer: Buffer;
  text(): string;
  /** Resolves once the text so far matches `pattern` (rejects when the stream ends first). */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  /** Resolves with everything once the stream ended. */
  readonly done: Promise<Buffer>;
}

export function collect(stream: Readable): Collector {
  const chunks: Buffer[] = [];
  let ended = false;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const done = new Promise<Buffer>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      notify();
    });
    stream.once('end', () => {
      ended = true;
      notify();
      resolve(Buffer.concat(chunks));
    });
    stream.once('error', reject);
  });
  const collector: Collector = {
    get buffer() {
      return Buffer.concat(chunks);
    },
    text() {
      return Buffer.concat(chunks).toString('utf8');
    },
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(collector.text());
          if (match) {
            waiters.delete(check);
            resolve(match);
          } else if (ended) {
            waiters.delete(check);
            reject(
              new Error(
                `stream ended without ${String(pattern)}: ${JSON.stringify(collector.text())}`,
              ),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
    done,
  };
  return collector;
}

export interface RunResult {
  stdout: Buffer;
  stderr: Buffer;
  status: ExitStatus;
  process: Process;
}

/** Spawn, collect both streams, wait. */
export async function run(
  runtime: Runtime,
  spec: TaskSpec,
  input?: string | Buffer,
): Promise<RunResult> {
  const process = await runtime.spawn(spec, { taskId: 'test' });
  const stdout = collect(process.stdout);
  const stderr = collect(process.stderr);
  if (input !== undefined) process.stdin?.end(input);
  const status = await process.wait();
  return { stdout: await stdout.done, stderr: await stderr.done, status, process };
}

/** True while /proc/<pid> exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Polls /proc until none of `pids` is alive, or the deadline passes. Returns
 * those still alive (empty on success).
 */
export async function waitForDeath(pids: readonly number[], deadlineMs = 3_000): Promise<number[]> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const alive = pids.filter(isAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every live descendant of `root` (from the ppid fields in /proc). */
export async function descendantsOf(root: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  const result: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [pid, ppid] of parents) {
      if (ppid === parent) {
        result.push(pid);
        queue.push(pid);
      }
    }
  }
  return result;
}
