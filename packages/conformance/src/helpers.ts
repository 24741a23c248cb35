/** Small helpers for the suites: bounded waits, output capture, error checks. */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { OverthereError } from '@overthere/core';
import type { ErrorCode, ExitStatus, Process, TaskSpec } from '@overthere/core';
import { shellFixtures, type FixtureSpec, type RuntimeFixtures } from './fixtures.js';

/** Resolve or reject with `promise`, or reject after `ms` naming `what` did not happen. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A process's output, read from the moment it was spawned. */
export interface Captured {
  /** Both streams' bytes, once both have ended. */
  readonly ended: Promise<{ stdout: Buffer; stderr: Buffer }>;
  /** Resolves with stdout so far once it contains `text`; rejects if stdout ends first. */
  readonly untilStdout: (text: string) => Promise<string>;
  /** True once stdout has ended. */
  readonly stdoutEnded: () => boolean;
  /** The order in which the streams ended (`stdout`, `stderr`). */
  readonly endOrder: string[];
}

function collect(
  stream: Readable,
  name: string,
  endOrder: string[],
  onData?: () => void,
): { chunks: Buffer[]; ended: Promise<Buffer>; isEnded: () => boolean } {
  const chunks: Buffer[] = [];
  let isEnded = false;
  const ended = new Promise<Buffer>((resolve, reject) => {
    stream.on('data', (chunk: Buffer | string) => {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      onData?.();
    });
    stream.once('end', () => {
      isEnded = true;
      endOrder.push(name);
      onData?.();
      resolve(Buffer.concat(chunks));
    });
    stream.once('error', reject);
  });
  return { chunks, ended, isEnded: () => isEnded };
}

/** Start reading both streams now, so nothing is missed (and the process is never blocked on a full pipe). */
export function capture(child: Process): Captured {
  const endOrder: string[] = [];
  const checks = new Set<() => void>();
  const stdout = collect(child.stdout, 'stdout', endOrder, () => {
    for (const check of checks) check();
  });
  const stderr = collect(child.stderr, 'stderr', endOrder);
  return {
    ended: Promise.all([stdout.ended, stderr.ended]).then(([out, err]) => ({
      stdout: out,
      stderr: err,
    })),
    untilStdout: (text) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const seen = Buffer.concat(stdout.chunks).toString();
          if (seen.includes(text)) {
            checks.delete(check);
            resolve(seen);
          } else if (stdout.isEnded()) {
            checks.delete(check);
            reject(
              new Error(
                `stdout ended without ${JSON.stringify(text)}; it was ${JSON.stringify(seen)}`,
              ),
            );
          }
        };
        checks.add(check);
        check();
      }),
    stdoutEnded: stdout.isEnded,
    endOrder,
  };
}

/** What a finished process produced. */
export interface Outcome {
  stdout: Buffer;
  stderr: Buffer;
  exit: ExitStatus;
}

/** Wait (bounded) for the process to end and its streams to end. */
export async function outcome(child: Process, captured: Captured, ms: number): Promise<Outcome> {
  const [output, exit] = await within(
    Promise.all([captured.ended, child.wait()]),
    ms,
    'the process ending (wait() resolving and stdout/stderr ending)',
  );
  return { ...output, exit };
}

/** The error `promise` rejects with; fails when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  const marker = Symbol('resolved');
  const result = await promise.then(
    () => marker,
    (error: unknown) => error,
  );
  if (result === marker) throw new Error('expected a rejection, but the promise resolved');
  return result;
}

/** A description of an error for assertion messages. */
export function describeError(error: unknown): string {
  if (OverthereError.is(error)) return `OverthereError ${error.code}: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** True when `error` is an OverthereError with `code` and a non-empty message. */
export function hasCode(error: unknown, code: ErrorCode): boolean {
  return OverthereError.hasCode(error, code) && error.message.trim().length > 0;
}

/** What this host's `/proc` says about a pid, or undefined when it has no such process. */
export interface ProcStat {
  /** One-letter state; `Z` (zombie) and `X` (dead) mean it has ended. */
  state: string;
  ppid: number;
  /** Process group id. */
  pgrp: number;
}

/** Read `/proc/<pid>/stat`; undefined when the process does not exist (or there is no `/proc`). */
export function procStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised command name (which may contain spaces).
    const [state = '', ppid = '', pgrp = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, ppid: Number(ppid), pgrp: Number(pgrp) };
  } catch {
    return undefined;
  }
}

/** True while `/proc` shows `pid` as a process that has not ended (a zombie has ended). */
export function procAlive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * Whether `pid` is still alive `ms` after being killed. A dying process closes
 * its descriptors (so a pipe reader sees the end) a moment before /proc shows
 * it dead; on a loaded machine that moment can last milliseconds.
 */
export async function procAliveAfter(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (procAlive(pid)) {
    if (Date.now() >= deadline) return true;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return false;
}

/** What both suites derive from their options: fixtures, time bounds, and a spec builder. */
export interface SuiteSettings {
  fixtures: RuntimeFixtures;
  /** Bound on any one wait inside a test. */
  waitMs: number;
  /** Test timeout: longer than any one wait, so the wait's message is what fails. */
  testMs: number;
  /** A fixture merged over the base spec (env merged key by key), plus extras. */
  spec: (fragment: FixtureSpec, extra?: Omit<TaskSpec, 'command' | 'script'>) => TaskSpec;
}

/** Settings from a suite's `timeScale`, `fixtures` and `baseSpec` options. */
export function suiteSettings(options: {
  timeScale?: number | undefined;
  fixtures?: Partial<RuntimeFixtures> | undefined;
  baseSpec?: Omit<TaskSpec, 'command' | 'script'> | undefined;
}): SuiteSettings {
  const scale = options.timeScale ?? 1;
  if (!(scale > 0)) throw new Error('timeScale must be a positive number');
  const base = options.baseSpec ?? {};
  return {
    fixtures: { ...shellFixtures, ...options.fixtures },
    waitMs: Math.round(10_000 * scale),
    testMs: Math.round(25_000 * scale),
    spec: (fragment, extra = {}) => {
      const result: TaskSpec = { ...base, ...fragment, ...extra };
      if (base.env !== undefined || extra.env !== undefined) {
        result.env = { ...base.env, ...extra.env };
      }
      return result;
    },
  };
}
