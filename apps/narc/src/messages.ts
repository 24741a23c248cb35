/**
 * The narc wire messages on NATS: `task.start`, `task.stop` and
 * `task.advertise`, as the original narc defined them. Sizes are megabytes.
 */
import { isValidTaskId } from '@overthere/core';

/** The subjects of the narc protocol (fixed by the original). */
export const START_SUBJECT = 'task.start';
export const STOP_SUBJECT = 'task.stop';
export const ADVERTISE_SUBJECT = 'task.advertise';

/** The queue group every narc agent subscribes to `task.start` in, so one agent gets each start. */
export const START_QUEUE_GROUP = 'narc';

/** Subject an agent takes forwarded starts on (the pool placed the task there). */
export function forwardSubject(agentId: string): string {
  return `narc.agent.${agentId}.start`;
}

/** `task.start`: provision a task. */
export interface StartMessage {
  task: string;
  /** The password for `ssh TASK@host`. Never logged. */
  secure_token: string;
  /** Megabytes; omitted = no limit. */
  memory_limit?: number;
  /** Megabytes; omitted = no limit. */
  disk_limit?: number;
}

/** `task.stop`: destroy a task and kick everyone off. */
export interface StopMessage {
  task: string;
}

/** `task.advertise`: what an agent has left after its reservations. */
export interface AdvertiseMessage {
  id: string;
  /** Megabytes. */
  available_memory: number;
  /** Megabytes. */
  available_disk: number;
}

/** A message that could be parsed, or why not (the reason never quotes the token). */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const decoder = new TextDecoder();

function parseObject(data: Uint8Array): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch {
    return 'not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'not a JSON object';
  }
  return value as Record<string, unknown>;
}

function taskIdProblem(task: unknown): string | undefined {
  if (typeof task !== 'string') return 'task must be a string';
  // Task ids become SSH user names, sandbox ids and KV keys: the supervisor's id rules.
  if (!isValidTaskId(task)) {
    return 'task must be 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit';
  }
  return undefined;
}

function limitProblem(name: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    return `${name} must be a positive whole number of megabytes`;
  }
  // Beyond this the byte count is no longer an exact JavaScript integer.
  if (value > 2 ** 33) return `${name} is too large`;
  return undefined;
}

/** Parse a `task.start` payload. Unknown fields are ignored, as the original did. */
export function parseStart(data: Uint8Array): Parsed<StartMessage> {
  const object = parseObject(data);
  if (typeof object === 'string') return { ok: false, reason: object };
  const problem =
    taskIdProblem(object.task) ??
    (typeof object.secure_token !== 'string' || object.secure_token.length === 0
      ? 'secure_token must be a non-empty string'
      : undefined) ??
    limitProblem('memory_limit', object.memory_limit) ??
    limitProblem('disk_limit', object.disk_limit);
  if (problem !== undefined) return { ok: false, reason: problem };
  const value: StartMessage = {
    task: object.task as string,
    secure_token: object.secure_token as string,
  };
  if (typeof object.memory_limit === 'number') value.memory_limit = object.memory_limit;
  if (typeof object.disk_limit === 'number') value.disk_limit = object.disk_limit;
  return { ok: true, value };
}

/** Parse a `task.stop` payload. */
export function parseStop(data: Uint8Array): Parsed<StopMessage> {
  const object = parseObject(data);
  if (typeof object === 'string') return { ok: false, reason: object };
  const problem = taskIdProblem(object.task);
  if (problem !== undefined) return { ok: false, reason: problem };
  return { ok: true, value: { task: object.task as string } };
}

/** Parse a `task.advertise` payload (for clients and tests). */
export function parseAdvertise(data: Uint8Array): Parsed<AdvertiseMessage> {
  const object = parseObject(data);
  if (typeof object === 'string') return { ok: false, reason: object };
  const { id, available_memory: memory, available_disk: disk } = object;
  if (typeof id !== 'string' || typeof memory !== 'number' || typeof disk !== 'number') {
    return { ok: false, reason: 'id, available_memory and available_disk are required' };
  }
  return { ok: true, value: { id, available_memory: memory, available_disk: disk } };
}

/** Bytes in a megabyte (the original's limits are MB). */
export const MEGABYTE = 1024 * 1024;
