/**
 * The subjects of the overthere protocol on NATS. Everything hangs under one
 * prefix (default `overthere`), so several independent pools can share a
 * NATS account:
 *
 * - `P.create` — create on any agent (queue group: exactly one answers);
 * - `P.agents` — every agent answers with its advert (no queue group);
 * - `P.locate` — the agent that owns a task answers (no queue group);
 * - `P.advertise` — adverts, published by each agent periodically;
 * - `P.agent.A.<operation>` — operations addressed to agent `A`;
 * - `P.task.T.output` / `P.task.T.state` — live output frames and state
 *   changes of task `T` (best effort; replay is by cursor on request).
 */
import { OverthereError } from '@overthere/core';

/** Default subject prefix. */
export const DEFAULT_SUBJECT_PREFIX = 'overthere';

/** The operations an agent answers on `P.agent.A.<operation>`. */
export const AGENT_OPERATIONS = [
  'create',
  'list',
  'get',
  'wait',
  'signal',
  'stop',
  'remove',
  'stdin',
  'resize',
  'capacity',
  'runtime',
  'output',
] as const;

/** One of {@link AGENT_OPERATIONS}. */
export type AgentOperation = (typeof AGENT_OPERATIONS)[number];

const TOKEN = /^[A-Za-z0-9_-]+$/;
const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** Throws `INVALID_ARGUMENT` unless `value` is one subject token of `[A-Za-z0-9_-]` (also a valid KV key part). */
export function checkToken(value: string, name: string): string {
  if (!TOKEN.test(value) || value.length > 128) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `${name} must be 1–128 characters of A-Z, a-z, 0-9, _ and -, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Throws `INVALID_ARGUMENT` unless `value` is a dot-separated list of tokens. */
export function checkPrefix(value: string): string {
  if (!PREFIX.test(value)) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `subjectPrefix must be dot-separated tokens of A-Z, a-z, 0-9, _ and -, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * A task id as one subject token. Ids made of `[A-Za-z0-9_-]` stand for
 * themselves; others (with dots, say) become `~` and their base64url form, so
 * two ids never share a token.
 */
export function taskToken(id: string): string {
  return TOKEN.test(id) ? id : `~${Buffer.from(id, 'utf8').toString('base64url')}`;
}

/** The subjects of one prefix. */
export interface Subjects {
  readonly prefix: string;
  readonly create: string;
  readonly agents: string;
  readonly locate: string;
  readonly advertise: string;
  /** `P.agent.A` — the group of an agent's operations. */
  agentGroup(agentId: string): string;
  agent(agentId: string, operation: AgentOperation): string;
  taskOutput(taskId: string): string;
  taskState(taskId: string): string;
  /** `P.task.T.>`: everything live about one task. */
  taskAll(taskId: string): string;
}

/** The subjects under `prefix`. */
export function createSubjects(prefix: string = DEFAULT_SUBJECT_PREFIX): Subjects {
  checkPrefix(prefix);
  return {
    prefix,
    create: `${prefix}.create`,
    agents: `${prefix}.agents`,
    locate: `${prefix}.locate`,
    advertise: `${prefix}.advertise`,
    agentGroup: (agentId) => `${prefix}.agent.${agentId}`,
    agent: (agentId, operation) => `${prefix}.agent.${agentId}.${operation}`,
    taskOutput: (taskId) => `${prefix}.task.${taskToken(taskId)}.output`,
    taskState: (taskId) => `${prefix}.task.${taskToken(taskId)}.state`,
    taskAll: (taskId) => `${prefix}.task.${taskToken(taskId)}.>`,
  };
}
