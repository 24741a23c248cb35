/**
 * The JSON schemas of the `/v1` protocol: request bodies (validated by the
 * server with `validateJson`) and responses (documentation). They are the
 * `components.schemas` of the OpenAPI document.
 */
import { ERROR_CODES, SIGNAL_NUMBERS } from '@overthere/core';
import type { JsonSchema } from './json-schema.js';

const nonNegative: JsonSchema = { type: 'number', minimum: 0 };
const stringRecord: JsonSchema = { type: 'object', additionalProperties: { type: 'string' } };
const TASK_STATES = ['running', 'stopping', 'backoff', 'exited', 'failed', 'lost'] as const;

/** Task states as the wire carries them. */
export const TASK_STATE_NAMES: readonly string[] = TASK_STATES;

const ttySize: JsonSchema = {
  type: 'object',
  description: 'Terminal size in character cells.',
  properties: {
    cols: { type: 'integer', minimum: 1, maximum: 65535 },
    rows: { type: 'integer', minimum: 1, maximum: 65535 },
  },
  required: ['cols', 'rows'],
  additionalProperties: false,
};

const killPolicy: JsonSchema = {
  type: 'object',
  description:
    'How a task is stopped: `signal` to its process group, then SIGKILL after `graceMs`.',
  properties: {
    signal: { type: 'string', description: 'First signal, e.g. `SIGTERM` (default).' },
    graceMs: { ...nonNegative, description: 'Time between `signal` and SIGKILL. Default 10 000.' },
  },
  additionalProperties: false,
};

/** `TaskSpec` from `@overthere/core`. Exactly one of `command` and `script` is required (checked by the supervisor). */
export const taskSpecSchema: JsonSchema = {
  type: 'object',
  description: 'What to run and how. Exactly one of `command` and `script` is required.',
  properties: {
    command: {
      type: 'array',
      items: { type: 'string' },
      description: 'argv: the program and its arguments, run without a shell.',
    },
    script: {
      type: 'string',
      description: "Script text; run by its `#!` interpreter, or by the runtime's default shell.",
    },
    env: { ...stringRecord, description: 'Variables to set on top of the base environment.' },
    inheritEnv: { type: 'boolean', description: 'Start from the base environment. Default true.' },
    cwd: { type: 'string', description: 'Working directory.' },
    user: { type: ['string', 'integer'], description: 'User to run as: a name or a numeric uid.' },
    stdin: { type: 'string', enum: ['none', 'pipe'], description: 'Default `none`.' },
    tty: ttySize,
    limits: {
      type: 'object',
      description: 'Resource limits; a runtime enforces those it declares.',
      properties: {
        memoryBytes: nonNegative,
        diskBytes: nonNegative,
        cpus: nonNegative,
        pids: nonNegative,
        openFiles: nonNegative,
      },
      additionalProperties: false,
    },
    timeoutMs: { ...nonNegative, description: 'Stop the task after this long (reason `timeout`).' },
    restart: {
      type: 'object',
      description: 'Restart policy with capped exponential backoff.',
      properties: {
        mode: { type: 'string', enum: ['never', 'on-failure', 'always'] },
        initialDelayMs: nonNegative,
        maxDelayMs: nonNegative,
        factor: { type: 'number', minimum: 1 },
        resetAfterMs: nonNegative,
        maxRestarts: { type: 'integer', minimum: 0 },
      },
      required: ['mode'],
      additionalProperties: false,
    },
    kill: killPolicy,
    labels: { ...stringRecord, description: 'Free-form labels, for filtering.' },
    runtimeOptions: {
      type: 'object',
      description: 'Settings for one runtime, keyed by runtime id.',
      additionalProperties: { type: 'object' },
    },
  },
  additionalProperties: false,
};

/** Body of `POST /v1/tasks`: TaskSpec fields plus where and under which id to run it. */
export const createTaskRequestSchema: JsonSchema = {
  ...taskSpecSchema,
  description: 'A TaskSpec plus optional `id`, `runtime` and `sandboxId`.',
  properties: {
    ...taskSpecSchema.properties,
    id: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      description: 'Use this id (409 if taken).',
    },
    runtime: { type: 'string', description: 'Id of the runtime to run on. Default: the first.' },
    sandboxId: { type: 'string', description: 'Run inside this sandbox.' },
  },
};

/** Body of `POST /v1/tasks/:id/signal`. */
export const signalRequestSchema: JsonSchema = {
  type: 'object',
  properties: {
    signal: {
      type: 'string',
      description: 'A signal name (`SIGTERM`, `TERM`) or number (`15`).',
      examples: Object.keys(SIGNAL_NUMBERS).slice(0, 3),
    },
  },
  required: ['signal'],
  additionalProperties: false,
};

/** Body of `POST /v1/tasks/:id/stop` (may be empty). */
export const stopRequestSchema: JsonSchema = {
  type: 'object',
  properties: {
    signal: { type: 'string', description: "First signal; default the task's kill policy." },
    graceMs: {
      ...nonNegative,
      description: "Grace before SIGKILL; default the task's kill policy.",
    },
    wait: { type: 'boolean', description: 'Answer only once the task is final (200).' },
  },
  additionalProperties: false,
};

/** Body of `POST /v1/tasks/:id/resize`. */
export const resizeRequestSchema: JsonSchema = ttySize;

/** The wire form of an error. */
export const errorSchema: JsonSchema = {
  type: 'object',
  properties: {
    code: { type: 'string', enum: [...ERROR_CODES] },
    message: { type: 'string' },
  },
  required: ['code', 'message'],
};

const exitStatusSchema: JsonSchema = {
  type: 'object',
  properties: {
    code: { type: ['integer', 'null'] },
    signal: { type: ['string', 'null'] },
    reason: {
      type: 'string',
      enum: ['exited', 'signalled', 'timeout', 'killed', 'oom', 'lost'],
    },
  },
  required: ['code', 'signal', 'reason'],
};

/** `TaskInfo` from `@overthere/core`. */
export const taskInfoSchema: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    spec: { $ref: '#/components/schemas/TaskSpec' },
    runtime: { type: 'string' },
    sandboxId: { type: 'string' },
    state: { type: 'string', enum: TASK_STATES },
    createdAt: { type: 'string', format: 'date-time' },
    startedAt: { type: 'string', format: 'date-time' },
    endedAt: { type: 'string', format: 'date-time' },
    pid: { type: 'integer' },
    exit: exitStatusSchema,
    error: { $ref: '#/components/schemas/Error' },
    restarts: { type: 'integer', minimum: 0 },
    nextRestartAt: { type: 'string', format: 'date-time' },
    handle: { type: 'object' },
    stopRequested: { type: 'boolean' },
  },
  required: ['id', 'spec', 'runtime', 'state', 'createdAt', 'restarts', 'stopRequested'],
};

/** `GET /v1/capacity`. */
export const capacitySchema: JsonSchema = {
  type: 'object',
  properties: {
    liveTasks: { type: 'integer', minimum: 0 },
    memoryBytes: { type: 'number', minimum: 0 },
    diskBytes: { type: 'number', minimum: 0 },
    tasks: { type: 'integer', minimum: 0 },
  },
  required: ['liveTasks'],
};

/** `GET /v1/runtime`. */
export const runtimeInfoSchema: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    capabilities: {
      type: 'object',
      properties: {
        stdin: { type: 'boolean' },
        tty: { type: 'boolean' },
        signals: { type: 'boolean' },
        processGroups: { type: 'boolean' },
        user: { type: 'boolean' },
        limits: { type: 'array', items: { type: 'string' } },
        isolation: { type: 'string', enum: ['none', 'process', 'container', 'vm'] },
        sandboxes: { type: 'boolean' },
        adopt: { type: 'boolean' },
      },
    },
    runtimes: {
      type: 'array',
      description: 'Every runtime of the agent, the default first.',
      items: {
        type: 'object',
        properties: { id: { type: 'string' }, capabilities: { type: 'object' } },
      },
    },
  },
  required: ['id', 'capabilities', 'runtimes'],
};

/** One NDJSON line / SSE data line of `GET /v1/tasks/:id/output`. */
export const outputEventSchema: JsonSchema = {
  type: 'object',
  description:
    '`frame` (`seq`, `offset`, `stream`, `time`, base64 `data`), `gap` (`fromSeq`, `toSeq`) or `end` (`task`).',
  properties: {
    type: { type: 'string', enum: ['frame', 'gap', 'end'] },
    seq: { type: 'integer' },
    offset: { type: 'integer' },
    stream: { type: 'string', enum: ['stdout', 'stderr'] },
    time: { type: 'integer', description: 'ms since the epoch' },
    data: { type: 'string', format: 'byte' },
    fromSeq: { type: 'integer' },
    toSeq: { type: 'integer' },
    task: { $ref: '#/components/schemas/Task' },
  },
  required: ['type'],
};

/** Every component schema by name, as `#/components/schemas/<name>` refers to it. */
export const componentSchemas: Readonly<Record<string, JsonSchema>> = {
  TaskSpec: taskSpecSchema,
  CreateTaskRequest: createTaskRequestSchema,
  SignalRequest: signalRequestSchema,
  StopRequest: stopRequestSchema,
  ResizeRequest: resizeRequestSchema,
  Task: taskInfoSchema,
  Error: errorSchema,
  Capacity: capacitySchema,
  RuntimeInfo: runtimeInfoSchema,
  OutputEvent: outputEventSchema,
};

/** Resolve `#/components/schemas/<name>`. */
export function resolveComponent(ref: string): JsonSchema | undefined {
  const prefix = '#/components/schemas/';
  return ref.startsWith(prefix) ? componentSchemas[ref.slice(prefix.length)] : undefined;
}
