/**
 * `createNatsAgent`: a Supervisor served over NATS as a micro service
 * (discovery and stats via `$SRV.*`). Task operations are addressed to the
 * agent (`P.agent.<id>.*`); `P.create` is a queue group, so a create sent
 * there is taken by exactly one agent. Output is replayed by cursor on
 * request, and published live on per-task subjects. The agent advertises its
 * capacity on `P.advertise` and, with JetStream, in a KV bucket; it re-advertises
 * at once after a reconnect.
 */
import { randomUUID } from 'node:crypto';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import {
  OverthereError,
  isFinalState,
  noopLogger,
  parseSignal,
  toOverthereError,
  type KillPolicy,
  type Logger,
  type OutputFrame,
  type Runtime,
  type Supervisor,
  type TaskFilter,
  type TaskInfo,
  type TaskState,
} from '@overthere/core';
import { defaultBucketName, openCapacityBoard, type CapacityBoard } from './capacity-board.js';
import { openNatsConnection, type NatsConnectOptions } from './nats-connection.js';
import { serveOutputBatch } from './output-batch.js';
import { checkToken, createSubjects, type AgentOperation } from './subjects.js';
import {
  EOF_HEADER,
  OFFSET_HEADER,
  SEQ_HEADER,
  STREAM_HEADER,
  TASK_HEADER,
  TASK_SPEC_FIELDS,
  TIME_HEADER,
  TRUNCATED_HEADER,
  checkFields,
  decodeJson,
  encodeJson,
  errorReply,
  integerField,
  stringField,
  type AgentAdvert,
} from './wire.js';

/** The micro service's name in `$SRV.*`. */
export const SERVICE_NAME = 'overthere';
/** The protocol version in `$SRV.INFO`. */
export const SERVICE_VERSION = '0.1.0';

/** Options for {@link createNatsAgent}. */
export interface NatsAgentOptions extends NatsConnectOptions {
  /** The supervisor to serve. `close()` does not close it. */
  supervisor: Supervisor;
  /** Its runtimes (the default first), described by the `runtime` operation. */
  runtime?: Runtime | readonly Runtime[];
  /** This agent's id: one token of `[A-Za-z0-9_-]`. Default a random one. */
  agentId?: string;
  /** Prefix of every subject. Default `overthere`. */
  subjectPrefix?: string;
  /** How often capacity is advertised. Default 10 000 ms. */
  advertiseIntervalMs?: number;
  /**
   * The JetStream KV bucket for capacity; `false` for none. Default
   * `<prefix>-capacity`. Without JetStream on the server the agent goes on
   * with adverts on `P.advertise` only (and logs why).
   */
  capacityBucket?: string | false;
  /** Max age of the bucket's entries (only when the agent creates it). Default 3 × the advert interval. */
  capacityTtlMs?: number;
  /** Publish output frames live on `P.task.<id>.output`. Default true. */
  publishOutput?: boolean;
  /** Longest long-poll of `wait` and `output`. Default 20 000 ms. */
  maxWaitMs?: number;
  /** pino-compatible logger. Default silent. */
  logger?: Logger;
}

/** A running NATS agent. */
export interface NatsAgent {
  readonly agentId: string;
  /** The connection it serves on. */
  readonly connection: NatsConnection;
  /** The micro service (`$SRV.*` discovery and stats). */
  readonly service: Service;
  /** The capacity board, when JetStream is on. */
  readonly board: CapacityBoard | undefined;
  /** The advert it would send now. */
  advert(): Promise<AgentAdvert>;
  /** Advertise now (subject and board), besides the periodic adverts. */
  advertise(): Promise<void>;
  /**
   * Take `key` for this agent, first come first served across the pool (a
   * KV create): true for exactly one caller until the bucket's TTL drops it.
   * `FAILED_PRECONDITION` without JetStream.
   */
  claim(key: string): Promise<boolean>;
  /** Stop serving: the service stops, adverts stop, the board entry is removed; the connection is closed when the agent opened it. */
  close(): Promise<void>;
}

const CREATE_FIELDS = [...TASK_SPEC_FIELDS, 'id', 'runtime', 'sandboxId'];
const TASK_STATES: readonly TaskState[] = [
  'running',
  'stopping',
  'backoff',
  'exited',
  'failed',
  'lost',
];
/** The queue group of `P.create`. */
const CREATE_QUEUE = 'q';
/** Room kept in a message beyond the batch for headers and protocol. */
const PAYLOAD_RESERVE_BYTES = 16 * 1024;

function listFilter(body: unknown): TaskFilter {
  const request = checkFields(body ?? {}, ['state', 'labels'], 'a list request');
  const filter: TaskFilter = {};
  if (request.state !== undefined) {
    const states: unknown = typeof request.state === 'string' ? [request.state] : request.state;
    if (
      !Array.isArray(states) ||
      states.some((state) => !(TASK_STATES as readonly unknown[]).includes(state))
    ) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `state must be one or more of ${TASK_STATES.join(', ')}`,
      );
    }
    filter.state = states as TaskState[];
  }
  if (request.labels !== undefined) {
    const labels = request.labels;
    if (
      typeof labels !== 'object' ||
      labels === null ||
      Array.isArray(labels) ||
      Object.values(labels).some((value) => typeof value !== 'string')
    ) {
      throw new OverthereError('INVALID_ARGUMENT', 'labels must be an object of strings');
    }
    filter.labels = labels as Record<string, string>;
  }
  return filter;
}

/** The milliseconds after which `promise` is given up (resolving undefined). */
function within<T>(promise: Promise<T>, ms: number, signal: AbortSignal): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve(undefined);
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    promise.then(
      (value) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        reject(toOverthereError(error));
      },
    );
  });
}

/**
 * Serve `supervisor` over NATS. Resolves once the service answers and the
 * first advert is out.
 *
 * @throws OverthereError `INVALID_ARGUMENT` for a bad agent id or prefix;
 * `UNAUTHENTICATED` / `UNAVAILABLE` when NATS cannot be reached.
 */
export async function createNatsAgent(options: NatsAgentOptions): Promise<NatsAgent> {
  const { supervisor } = options;
  const logger = (options.logger ?? noopLogger).child({ component: 'nats-agent' });
  const agentId = checkToken(options.agentId ?? randomUUID().replaceAll('-', ''), 'agentId');
  const subjects = createSubjects(options.subjectPrefix);
  const intervalMs = options.advertiseIntervalMs ?? 10_000;
  if (!Number.isFinite(intervalMs) || intervalMs < 10) {
    throw new OverthereError('INVALID_ARGUMENT', 'advertiseIntervalMs must be at least 10');
  }
  const maxWaitMs = options.maxWaitMs ?? 20_000;
  const runtimes: readonly Runtime[] =
    options.runtime === undefined
      ? []
      : Array.isArray(options.runtime)
        ? (options.runtime as readonly Runtime[])
        : [options.runtime as Runtime];

  const ownsConnection = options.connection === undefined;
  const connection = options.connection ?? (await openNatsConnection(options));
  const closing = new AbortController();
  const maxPayload = connection.info?.max_payload ?? 1024 * 1024;
  const maxBatchBytes = Math.max(4096, maxPayload - PAYLOAD_RESERVE_BYTES);

  let board: CapacityBoard | undefined;
  if (options.capacityBucket !== false && connection.info?.jetstream !== true) {
    // Asking a server without JetStream would only time out.
    logger.info('the NATS server has no JetStream: advertising on the subject only');
  } else if (options.capacityBucket !== false) {
    const bucket = options.capacityBucket ?? defaultBucketName(subjects.prefix);
    try {
      board = await openCapacityBoard(connection, {
        bucket,
        ttlMs: options.capacityTtlMs ?? intervalMs * 3,
        create: true,
      });
    } catch (error) {
      logger.warn(
        { err: error, bucket },
        'no capacity bucket (is JetStream on?): advertising on the subject only',
      );
    }
  }

  async function advert(): Promise<AgentAdvert> {
    return { agent: agentId, capacity: await supervisor.capacity(), time: Date.now(), intervalMs };
  }

  async function advertise(): Promise<void> {
    if (closing.signal.aborted || connection.isClosed()) return;
    const current = await advert();
    connection.publish(subjects.advertise, encodeJson(current));
    await board?.put(current);
  }
  const advertiseQuietly = (): void => {
    advertise().catch((error: unknown) => logger.warn({ err: error }, 'advertising failed'));
  };

  // Soon after tasks come and go, so the board follows between periods.
  let soon: NodeJS.Timeout | undefined;
  const advertiseSoon = (): void => {
    if (soon !== undefined || closing.signal.aborted) return;
    soon = setTimeout(() => {
      soon = undefined;
      advertiseQuietly();
    }, 50);
  };

  const publishOutput = options.publishOutput !== false;
  const onOutput = (taskId: string, frame: OutputFrame): void => {
    if (connection.isClosed()) return;
    const headers = natsHeaders();
    headers.set(SEQ_HEADER, String(frame.seq));
    headers.set(OFFSET_HEADER, String(frame.offset));
    headers.set(STREAM_HEADER, frame.stream);
    headers.set(TIME_HEADER, String(frame.time));
    let data: Uint8Array = frame.data;
    if (data.length > maxBatchBytes) {
      // Too big for one message: readers pull it by cursor.
      headers.set(TRUNCATED_HEADER, '1');
      data = new Uint8Array(0);
    }
    try {
      connection.publish(subjects.taskOutput(taskId), data, { headers });
    } catch (error) {
      logger.debug({ err: error, taskId }, 'live output not published');
    }
  };
  const onState = (task: TaskInfo): void => {
    if (connection.isClosed()) return;
    try {
      connection.publish(subjects.taskState(task.id), encodeJson(task));
    } catch (error) {
      logger.debug({ err: error, taskId: task.id }, 'state not published');
    }
    advertiseSoon();
  };
  const onRemove = (): void => advertiseSoon();
  if (publishOutput) supervisor.on('task-output', onOutput);
  supervisor.on('task-state', onState);
  supervisor.on('task-remove', onRemove);

  async function create(body: unknown): Promise<TaskInfo> {
    const request = checkFields(body, CREATE_FIELDS, 'a create request');
    const { id, runtime, sandboxId, ...spec } = request;
    for (const [name, value] of Object.entries({ id, runtime, sandboxId })) {
      if (value !== undefined && typeof value !== 'string') {
        throw new OverthereError('INVALID_ARGUMENT', `${name} must be a string`);
      }
    }
    const task = await supervisor.create(spec, {
      ...(id === undefined ? {} : { id: id as string }),
      ...(runtime === undefined ? {} : { runtime: runtime as string }),
      ...(sandboxId === undefined ? {} : { sandboxId: sandboxId as string }),
    });
    advertiseSoon();
    return task;
  }

  const idOf = (body: unknown, fields: readonly string[] = ['id']): Record<string, unknown> => {
    const request = checkFields(body, fields, 'the request');
    stringField(request, 'id');
    return request;
  };

  const operations: Record<AgentOperation, (message: ServiceMsg) => Promise<unknown>> = {
    create: (message) => create(decodeJson(message.data)),
    list: (message) =>
      Promise.resolve({ tasks: supervisor.list(listFilter(decodeJson(message.data))) }),
    get: (message) => {
      const request = idOf(decodeJson(message.data));
      return Promise.resolve(supervisor.get(request.id as string));
    },
    async wait(message) {
      const request = idOf(decodeJson(message.data), ['id', 'timeoutMs']);
      const id = request.id as string;
      const now = supervisor.get(id);
      if (isFinalState(now.state)) return now;
      const timeoutMs = Math.min(integerField(request, 'timeoutMs') ?? maxWaitMs, maxWaitMs);
      return (await within(supervisor.wait(id), timeoutMs, closing.signal)) ?? supervisor.get(id);
    },
    async signal(message) {
      const request = idOf(decodeJson(message.data), ['id', 'signal']);
      const id = request.id as string;
      supervisor.get(id);
      await supervisor.signal(id, stringField(request, 'signal'));
      return undefined;
    },
    async stop(message) {
      const request = idOf(decodeJson(message.data), ['id', 'signal', 'graceMs', 'wait']);
      const id = request.id as string;
      supervisor.get(id);
      const policy: KillPolicy = {};
      if (request.signal !== undefined) policy.signal = parseSignal(stringField(request, 'signal'));
      const graceMs = integerField(request, 'graceMs');
      if (graceMs !== undefined) policy.graceMs = graceMs;
      const stopped = supervisor.stop(id, policy);
      if (request.wait !== false) return await stopped;
      stopped.catch((error: unknown) => logger.warn({ err: error, taskId: id }, 'stop failed'));
      return supervisor.get(id);
    },
    async remove(message) {
      const request = idOf(decodeJson(message.data));
      await supervisor.remove(request.id as string);
      return undefined;
    },
    async stdin(message) {
      const id = message.headers?.get(TASK_HEADER) ?? '';
      if (id === '')
        throw new OverthereError('INVALID_ARGUMENT', `stdin needs the ${TASK_HEADER} header`);
      supervisor.get(id);
      if (message.data.length > 0) await supervisor.writeStdin(id, Buffer.from(message.data));
      if (message.headers?.get(EOF_HEADER) === '1') await supervisor.closeStdin(id);
      return undefined;
    },
    async resize(message) {
      const request = idOf(decodeJson(message.data), ['id', 'cols', 'rows']);
      const id = request.id as string;
      supervisor.get(id);
      const cols = integerField(request, 'cols');
      const rows = integerField(request, 'rows');
      if (
        cols === undefined ||
        rows === undefined ||
        cols < 1 ||
        rows < 1 ||
        cols > 65535 ||
        rows > 65535
      ) {
        throw new OverthereError(
          'INVALID_ARGUMENT',
          'cols and rows must be integers from 1 to 65535',
        );
      }
      await supervisor.resize(id, { cols, rows });
      return undefined;
    },
    capacity: () => supervisor.capacity(),
    runtime() {
      const [first] = runtimes;
      if (first === undefined) {
        return Promise.reject(
          new OverthereError('UNSUPPORTED', 'this agent does not describe its runtime'),
        );
      }
      return Promise.resolve({
        id: first.id,
        capabilities: first.capabilities,
        runtimes: runtimes.map((runtime) => ({
          id: runtime.id,
          capabilities: runtime.capabilities,
        })),
      });
    },
    async output(message) {
      return serveOutputBatch(supervisor, decodeJson(message.data), {
        maxBytes: maxBatchBytes,
        maxWaitMs,
        closing: closing.signal,
      });
    },
  };

  /**
   * Errors answered, by endpoint subject. The services package counts only
   * handlers that throw synchronously; ours answer later, so they are counted
   * here and reported as each endpoint's stats `data`.
   */
  const errorCounts = new Map<string, number>();
  const answer = (message: ServiceMsg, work: () => Promise<unknown>): void => {
    // Through then(), so a synchronous throw is answered like a rejection.
    Promise.resolve()
      .then(work)
      .then(
        (result) => {
          message.respond(result instanceof Uint8Array ? result : encodeJson(result));
        },
        (error: unknown) => {
          const reply = errorReply(error);
          if (reply.status >= 500)
            logger.warn({ err: error, subject: message.subject }, 'request failed');
          errorCounts.set(message.subject, (errorCounts.get(message.subject) ?? 0) + 1);
          message.respondError(reply.status, reply.message, reply.body);
        },
      );
  };

  // The services package pins an older nats-core release whose types differ
  // only in optional-property spelling; the connection object is the same.
  const services = new Svcm(connection as unknown as ConstructorParameters<typeof Svcm>[0]);
  const service = await services.add({
    name: SERVICE_NAME,
    version: SERVICE_VERSION,
    description: 'overthere agent: tasks, output by cursor, capacity',
    metadata: { agent: agentId, prefix: subjects.prefix },
    statsHandler: (endpoint) =>
      Promise.resolve({ agent: agentId, errors: errorCounts.get(endpoint.subject) ?? 0 }),
    // No queue group by default: this release of the services package reads an
    // endpoint's `queue: ''` as "use the service's", so the one queued endpoint
    // (create on any agent) names its group instead.
    queue: '',
  });
  const agentGroup = service.addGroup(subjects.agentGroup(agentId));
  for (const operation of Object.keys(operations) as AgentOperation[]) {
    agentGroup.addEndpoint(operation, {
      handler: (_error, message) => answer(message, () => operations[operation](message)),
      metadata: { agent: agentId },
    });
  }
  // Create on any agent: the queue group hands each request to one of them.
  service.addEndpoint('create', {
    subject: subjects.create,
    queue: CREATE_QUEUE,
    handler: (_error, message) => answer(message, () => create(decodeJson(message.data))),
  });
  // Every agent answers these (no queue group).
  service.addEndpoint('agents', {
    subject: subjects.agents,
    handler: (_error, message) => answer(message, advert),
  });
  service.addEndpoint('locate', {
    subject: subjects.locate,
    handler: (_error, message) => {
      try {
        const request = idOf(decodeJson(message.data));
        supervisor.get(request.id as string);
        message.respond(encodeJson({ agent: agentId }));
      } catch {
        // Not ours: stay silent, the owner answers.
      }
    },
  });

  // Re-advertise as soon as the connection is back (after a server restart or failover).
  void (async () => {
    for await (const status of connection.status()) {
      if (status.type === 'reconnect') {
        logger.info({ server: status.server }, 'reconnected to NATS; advertising');
        advertiseQuietly();
      }
    }
  })().catch(() => undefined);

  await connection.flush();
  await advertise().catch((error: unknown) => logger.warn({ err: error }, 'advertising failed'));
  const timer = setInterval(advertiseQuietly, intervalMs);
  timer.unref();
  logger.info({ agentId, prefix: subjects.prefix, bucket: board?.bucket }, 'serving over NATS');

  let closed: Promise<void> | undefined;
  return {
    agentId,
    connection,
    service,
    board,
    advert,
    advertise,
    async claim(key) {
      if (board === undefined) {
        throw new OverthereError(
          'FAILED_PRECONDITION',
          'claims need JetStream (a capacity bucket)',
        );
      }
      return board.claim(key, agentId);
    },
    close() {
      closed ??= (async () => {
        closing.abort();
        clearInterval(timer);
        clearTimeout(soon);
        supervisor.off('task-output', onOutput);
        supervisor.off('task-state', onState);
        supervisor.off('task-remove', onRemove);
        await service.stop().catch(() => undefined);
        if (!connection.isClosed()) {
          await board?.remove(agentId).catch(() => undefined);
          if (ownsConnection) await connection.drain().catch(() => undefined);
        }
      })();
      return closed;
    },
  };
}
