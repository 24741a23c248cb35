/**
 * `createNatsClient`: the overthere protocol from the other side of NATS.
 * Bound to one agent (`agent`), or to the pool: a create then goes to the
 * agent with the most room by its advert (claimed with a compare-and-set on
 * the capacity board), and task operations are routed to the agent that owns
 * the task. Output is pulled by cursor, one batch at a time, so a slow reader
 * costs nothing on the agent and a dropped connection resumes with no gap or
 * repeat; `watch` adds the live per-task subject for low latency.
 */
import { headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node';
import {
  DEFAULT_GRACE_MS,
  OverthereError,
  isFinalState,
  toOverthereError,
  type CreateTaskOptions,
  type KillPolicy,
  type OutputStream,
  type RuntimeCapabilities,
  type SupervisorCapacity,
  type TaskFilter,
  type TaskInfo,
  type TaskSpec,
  type TtySize,
} from '@overthere/core';
import { defaultBucketName, openCapacityBoard, type CapacityBoard } from './capacity-board.js';
import { connectionError, openNatsConnection, type NatsConnectOptions } from './nats-connection.js';
import { checkToken, createSubjects, type AgentOperation } from './subjects.js';
import {
  EOF_HEADER,
  OFFSET_HEADER,
  SEQ_HEADER,
  SERVICE_ERROR_HEADER,
  STREAM_HEADER,
  TASK_HEADER,
  TIME_HEADER,
  TRUNCATED_HEADER,
  decodeBatch,
  decodeJson,
  encodeJson,
  errorFromReply,
  parseAdvert,
  type AgentAdvert,
  type BatchHeader,
  type OutputRequest,
} from './wire.js';

/** Options for {@link createNatsClient}. */
export interface NatsClientOptions extends NatsConnectOptions {
  /** Talk to this agent only. Default: the pool (placement by capacity, routing by task). */
  agent?: string;
  /** Prefix of every subject. Default `overthere`. */
  subjectPrefix?: string;
  /** The capacity bucket to place tasks by; `false` to use the adverts agents answer with. Default `<prefix>-capacity`. */
  capacityBucket?: string | false;
  /** Time for one request. Default 10 000 ms. */
  requestTimeoutMs?: number;
  /** How long to wait for the owner of an unknown task to answer. Default 1 000 ms. */
  locateTimeoutMs?: number;
  /** How long to collect adverts from `P.agents` (without a bucket). Default 500 ms. */
  discoverTimeoutMs?: number;
  /** Long-poll time of `wait` and followed `output` requests. Default 15 000 ms. */
  pollMs?: number;
  /** Failed output requests in a row before `output` gives up with `UNAVAILABLE`. Default 10. */
  maxRetries?: number;
  /** Largest output batch to ask for. Default: the agent's limit (under the server's max payload). */
  batchBytes?: number;
}

/** Options for {@link NatsClient.output}. */
export interface NatsOutputOptions {
  /** First seq to read. Default: the oldest retained. */
  cursor?: number;
  /** First byte offset to read; needs a single `stream` and no `cursor`. */
  offset?: number;
  /** Default `both`. */
  stream?: OutputStream | 'both';
  /** Keep reading until the task is final. */
  follow?: boolean;
  /** Stop reading: the iteration ends without an error. */
  signal?: AbortSignal;
}

/** An output event as the client delivers it. */
export type NatsOutputEvent =
  | {
      type: 'frame';
      seq: number;
      offset: number;
      stream: OutputStream;
      time: number;
      data: Buffer;
    }
  | { type: 'gap'; fromSeq: number; toSeq: number }
  | { type: 'end'; task: TaskInfo };

/** Options for {@link NatsClient.create}. */
export interface NatsCreateOptions extends CreateTaskOptions {
  /** Create on this agent (overrides placement). */
  agent?: string;
}

/** The agent's runtimes. */
export interface NatsRuntimeInfo {
  id: string;
  capabilities: RuntimeCapabilities;
  runtimes: { id: string; capabilities: RuntimeCapabilities }[];
}

/** An attach session: output and state live, and the task's stdin, TTY and signals. */
export interface NatsAttachment extends AsyncIterable<NatsOutputEvent> {
  writeStdin(data: Uint8Array | string): Promise<void>;
  closeStdin(): Promise<void>;
  resize(size: TtySize): Promise<void>;
  signal(signal: string): Promise<void>;
  /** Stop delivering events (the task goes on). */
  close(): void;
}

/** A client of the overthere protocol over NATS. Methods mirror the `Supervisor`; errors are `OverthereError`s. */
export interface NatsClient {
  /** The agent this client is bound to, if any. */
  readonly agent: string | undefined;
  /** Start a task: on `options.agent`, the bound agent, or the agent with the most room. */
  create(spec: TaskSpec, options?: NatsCreateOptions): Promise<TaskInfo>;
  get(id: string): Promise<TaskInfo>;
  /** Matching tasks, oldest first: of the bound agent, or of every agent in the pool. */
  list(filter?: TaskFilter): Promise<TaskInfo[]>;
  /** Resolves with the task once it is final (long-polls as long as it takes). */
  wait(id: string): Promise<TaskInfo>;
  signal(id: string, signal: string): Promise<void>;
  /** Stop for good; resolves with the final task, or with `{ wait: false }` once the stop has begun. */
  stop(id: string, policy?: KillPolicy, options?: { wait?: boolean }): Promise<TaskInfo>;
  remove(id: string): Promise<void>;
  writeStdin(id: string, data: Uint8Array | string): Promise<void>;
  closeStdin(id: string): Promise<void>;
  resize(id: string, size: TtySize): Promise<void>;
  /** What the agent has left (the bound agent, or `options.agent`). */
  capacity(options?: { agent?: string }): Promise<SupervisorCapacity>;
  /** The agent's runtimes and their capabilities. */
  runtime(options?: { agent?: string }): Promise<NatsRuntimeInfo>;
  /** The task's output, pulled by cursor, ending with `end`. */
  output(id: string, options?: NatsOutputOptions): AsyncIterableIterator<NatsOutputEvent>;
  /** Like a followed `output`, but frames arrive on the task's live subject as they are written; gaps are pulled. */
  watch(
    id: string,
    options?: Omit<NatsOutputOptions, 'follow' | 'offset'>,
  ): AsyncIterableIterator<NatsOutputEvent>;
  /** Watch the task and drive its stdin, TTY and signals. */
  attach(
    id: string,
    options?: Omit<NatsOutputOptions, 'follow' | 'signal' | 'offset'>,
  ): Promise<NatsAttachment>;
  /** The agents in the pool with their adverts (from the capacity board, or by asking them). */
  agents(): Promise<AgentAdvert[]>;
  /** The agent that owns a task. `NOT_FOUND` when none does. */
  agentOf(id: string): Promise<string>;
  /** Close the connection (when the client opened it). */
  close(): Promise<void>;
}

function requestError(error: unknown, subject: string): OverthereError {
  if (OverthereError.is(error)) return error;
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  const noResponders =
    typeof (error as { isNoResponders?: unknown }).isNoResponders === 'function' &&
    (error as { isNoResponders: () => boolean }).isNoResponders();
  if (noResponders || name === 'NoRespondersError') {
    return new OverthereError('UNAVAILABLE', `no agent answers on ${subject}`, { cause: error });
  }
  if (name === 'TimeoutError' || /timeout/i.test(message)) {
    return new OverthereError('TIMEOUT', `no answer on ${subject} in time`, { cause: error });
  }
  return connectionError(error, subject);
}

function retryable(error: unknown): boolean {
  return OverthereError.hasCode(error, 'UNAVAILABLE') || OverthereError.hasCode(error, 'TIMEOUT');
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `promise`, or undefined as soon as `signal` aborts (the promise's outcome is then ignored). */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T | undefined> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(toOverthereError(error));
      },
    );
  });
}

/** Room an advert shows for `spec`: undefined fields are unlimited. Negative when it does not fit. */
function room(advert: AgentAdvert, spec: TaskSpec): number {
  const capacity = advert.capacity;
  const memory = spec.limits?.memoryBytes ?? 0;
  const disk = spec.limits?.diskBytes ?? 0;
  if (capacity.tasks !== undefined && capacity.tasks < 1) return -1;
  if (capacity.memoryBytes !== undefined && capacity.memoryBytes < memory) return -1;
  if (capacity.diskBytes !== undefined && capacity.diskBytes < disk) return -1;
  return capacity.memoryBytes ?? Number.MAX_SAFE_INTEGER;
}

/** The advert after placing `spec` on it (what a claim writes). */
function reserve(advert: AgentAdvert, spec: TaskSpec): AgentAdvert {
  const capacity: SupervisorCapacity = {
    ...advert.capacity,
    liveTasks: advert.capacity.liveTasks + 1,
  };
  if (capacity.memoryBytes !== undefined && spec.limits?.memoryBytes !== undefined) {
    capacity.memoryBytes -= spec.limits.memoryBytes;
  }
  if (capacity.diskBytes !== undefined && spec.limits?.diskBytes !== undefined) {
    capacity.diskBytes -= spec.limits.diskBytes;
  }
  if (capacity.tasks !== undefined) capacity.tasks -= 1;
  return { ...advert, capacity, time: Date.now() };
}

/** Best first: most room, then fewest live tasks. */
function byRoom(spec: TaskSpec) {
  return (a: AgentAdvert, b: AgentAdvert): number =>
    room(b, spec) - room(a, spec) || a.capacity.liveTasks - b.capacity.liveTasks;
}

/** Create a client. It connects on first use (errors are then those of the call). */
export function createNatsClient(options: NatsClientOptions = {}): NatsClient {
  const subjects = createSubjects(options.subjectPrefix);
  const bound = options.agent === undefined ? undefined : checkToken(options.agent, 'agent');
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const locateTimeoutMs = options.locateTimeoutMs ?? 1000;
  const discoverTimeoutMs = options.discoverTimeoutMs ?? 500;
  const pollMs = options.pollMs ?? 15_000;
  const maxRetries = options.maxRetries ?? 10;
  /** Which agent owns which task, learned from creates and locates. */
  const owners = new Map<string, string>();
  let opened: Promise<NatsConnection> | undefined;
  let board: Promise<CapacityBoard | undefined> | undefined;

  /** Called when the connection drops: requests in flight then fail at once and are retried. */
  const onDisconnect = new Set<() => void>();
  /** Settles once the connection is back; undefined while it is up. */
  let reconnected: { promise: Promise<void>; resolve: () => void } | undefined;
  function watchStatus(nc: NatsConnection): NatsConnection {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') {
          if (reconnected === undefined) {
            let resolve: () => void = () => undefined;
            const promise = new Promise<void>((done) => (resolve = done));
            reconnected = { promise, resolve };
          }
          for (const listener of [...onDisconnect]) listener();
        } else if (status.type === 'reconnect') {
          reconnected?.resolve();
          reconnected = undefined;
        }
      }
    })().catch(() => undefined);
    return nc;
  }

  /** While the connection is down, wait for it (at most `timeoutMs`) rather than send into the void. */
  async function connected(timeoutMs: number): Promise<void> {
    const pending = reconnected;
    if (pending === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pending.promise,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () => reject(new OverthereError('UNAVAILABLE', 'the NATS connection is down')),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  function connection(): Promise<NatsConnection> {
    opened ??= (
      options.connection ? Promise.resolve(options.connection) : openNatsConnection(options)
    ).then(watchStatus, (error: unknown) => {
      opened = undefined; // try again next call
      throw error;
    });
    return opened;
  }

  function capacityBoard(): Promise<CapacityBoard | undefined> {
    if (options.capacityBucket === false) return Promise.resolve(undefined);
    board ??= connection().then((nc) =>
      nc.info?.jetstream !== true
        ? undefined
        : openCapacityBoard(nc, {
            bucket: options.capacityBucket || defaultBucketName(subjects.prefix),
            ttlMs: 0,
            create: false,
          }).catch(() => undefined),
    );
    return board;
  }

  async function send(
    subject: string,
    payload: Uint8Array,
    settings: { timeoutMs?: number; headers?: ReturnType<typeof natsHeaders> } = {},
  ): Promise<Msg> {
    const nc = await connection();
    await connected(settings.timeoutMs ?? requestTimeoutMs);
    let reply: Msg;
    let dropped: (() => void) | undefined;
    try {
      // A reply sent while the connection is down is lost: fail now, not at the timeout.
      const disconnected = new Promise<never>((_resolve, reject) => {
        dropped = () =>
          reject(new OverthereError('UNAVAILABLE', `the connection dropped during ${subject}`));
        onDisconnect.add(dropped);
      });
      reply = await Promise.race([
        nc.request(subject, payload, {
          timeout: settings.timeoutMs ?? requestTimeoutMs,
          ...(settings.headers === undefined ? {} : { headers: settings.headers }),
        }),
        disconnected,
      ]);
    } catch (error) {
      throw requestError(error, subject);
    } finally {
      if (dropped !== undefined) onDisconnect.delete(dropped);
    }
    const description = reply.headers?.get(SERVICE_ERROR_HEADER);
    if (description !== undefined && description !== '') {
      throw errorFromReply(reply.data, description);
    }
    return reply;
  }

  async function call<T>(
    agent: string,
    operation: AgentOperation,
    body: unknown,
    timeoutMs?: number,
  ): Promise<T> {
    const reply = await send(
      subjects.agent(agent, operation),
      encodeJson(body),
      timeoutMs === undefined ? {} : { timeoutMs },
    );
    return decodeJson(reply.data) as T;
  }

  async function agentOf(id: string): Promise<string> {
    if (bound !== undefined) return bound;
    const known = owners.get(id);
    if (known !== undefined) return known;
    const nc = await connection();
    let replies: AsyncIterable<Msg>;
    try {
      replies = await nc.requestMany(subjects.locate, encodeJson({ id }), {
        strategy: 'count',
        maxMessages: 1,
        maxWait: locateTimeoutMs,
      });
    } catch (error) {
      throw requestError(error, subjects.locate);
    }
    try {
      for await (const reply of replies) {
        const body = decodeJson(reply.data) as { agent?: unknown } | undefined;
        if (typeof body?.agent === 'string') {
          owners.set(id, body.agent);
          return body.agent;
        }
      }
    } catch (error) {
      if (!retryable(requestError(error, subjects.locate)))
        throw requestError(error, subjects.locate);
    }
    throw new OverthereError('NOT_FOUND', `no agent has task ${id}`);
  }

  /** Run `work` on the owner of `id`. When the owner does not know it (or is gone), it is forgotten, so the next call looks again. */
  async function onOwner<T>(id: string, work: (agent: string) => Promise<T>): Promise<T> {
    const agent = await agentOf(id);
    try {
      return await work(agent);
    } catch (error) {
      const stale =
        OverthereError.hasCode(error, 'NOT_FOUND') || OverthereError.hasCode(error, 'UNAVAILABLE');
      if (bound === undefined && stale) owners.delete(id);
      throw error;
    }
  }

  async function agents(): Promise<AgentAdvert[]> {
    const fromBoard = await capacityBoard();
    if (fromBoard !== undefined) {
      try {
        return (await fromBoard.list()).map((entry) => entry.advert);
      } catch {
        // The board is not answering: ask the agents.
      }
    }
    const nc = await connection();
    const adverts = new Map<string, AgentAdvert>();
    try {
      const replies = await nc.requestMany(subjects.agents, new Uint8Array(0), {
        strategy: 'timer',
        maxWait: discoverTimeoutMs,
      });
      for await (const reply of replies) {
        const advert = parseAdvert(reply.data);
        if (advert !== undefined) adverts.set(advert.agent, advert);
      }
    } catch (error) {
      const failure = requestError(error, subjects.agents);
      if (!retryable(failure)) throw failure;
    }
    return [...adverts.values()];
  }

  /** Place `spec` on the agent with the most room, claiming it on the board. */
  async function place(spec: TaskSpec): Promise<string[]> {
    const fromBoard = await capacityBoard();
    if (fromBoard !== undefined) {
      for (let attempt = 0; attempt < 5; attempt += 1) {
        let entries;
        try {
          entries = await fromBoard.list();
        } catch {
          break;
        }
        const fitting = entries
          .filter((entry) => room(entry.advert, spec) >= 0)
          .sort((a, b) => byRoom(spec)(a.advert, b.advert));
        const best = fitting[0];
        if (best === undefined) {
          if (entries.length > 0) {
            throw new OverthereError(
              'RESOURCE_EXHAUSTED',
              'no agent in the pool has room for the task',
            );
          }
          break;
        }
        // Compare-and-set: two clients placing at once do not both count on the same room.
        if (await fromBoard.update(reserve(best.advert, spec), best.revision)) {
          return fitting.map((entry) => entry.advert.agent);
        }
      }
    }
    const adverts = (await agents()).filter((advert) => room(advert, spec) >= 0);
    return adverts.sort(byRoom(spec)).map((advert) => advert.agent);
  }

  async function create(spec: TaskSpec, createOptions: NatsCreateOptions = {}): Promise<TaskInfo> {
    const { agent: chosen, ...rest } = createOptions;
    const body = { ...spec, ...rest };
    const target = chosen ?? bound;
    if (target !== undefined) {
      const task = await call<TaskInfo>(checkToken(target, 'agent'), 'create', body);
      owners.set(task.id, target);
      return task;
    }
    const candidates = await place(spec);
    for (const agent of candidates) {
      try {
        const task = await call<TaskInfo>(agent, 'create', body);
        owners.set(task.id, agent);
        return task;
      } catch (error) {
        // An advert outlives its agent by up to the TTL, and the room it showed
        // may be taken by the time the create arrives: try the next one.
        const tryNext =
          OverthereError.hasCode(error, 'UNAVAILABLE') ||
          OverthereError.hasCode(error, 'RESOURCE_EXHAUSTED');
        if (!tryNext || agent === candidates.at(-1)) throw error;
      }
    }
    // Nobody advertised (yet): any agent, through the queue group.
    const reply = await send(subjects.create, encodeJson(body));
    const task = decodeJson(reply.data) as TaskInfo;
    const owner = await agentOf(task.id).catch(() => undefined);
    if (owner !== undefined) owners.set(task.id, owner);
    return task;
  }

  async function list(filter: TaskFilter = {}): Promise<TaskInfo[]> {
    const body: Record<string, unknown> = {};
    if (filter.state !== undefined) body.state = filter.state;
    if (filter.labels !== undefined) body.labels = filter.labels;
    if (bound !== undefined) return (await call<{ tasks: TaskInfo[] }>(bound, 'list', body)).tasks;
    const all = await Promise.all(
      (await agents()).map((advert) =>
        call<{ tasks: TaskInfo[] }>(advert.agent, 'list', body).then(
          (reply) => reply.tasks,
          (error: unknown) => {
            if (retryable(error)) return [];
            throw error;
          },
        ),
      ),
    );
    return all.flat().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async function* output(
    id: string,
    outputOptions: NatsOutputOptions = {},
  ): AsyncGenerator<NatsOutputEvent, void, undefined> {
    const { signal } = outputOptions;
    const request: OutputRequest = { id };
    if (outputOptions.cursor !== undefined) request.cursor = outputOptions.cursor;
    if (outputOptions.offset !== undefined) request.offset = outputOptions.offset;
    if (outputOptions.stream !== undefined) request.stream = outputOptions.stream;
    if (outputOptions.follow === true) {
      request.follow = true;
      request.waitMs = pollMs;
    }
    if (options.batchBytes !== undefined) request.maxBytes = options.batchBytes;
    const agent = await agentOf(id);
    let failures = 0;
    /** Slices of a frame too large for one batch. */
    let partial:
      | { seq: number; offset: number; stream: OutputStream; time: number; chunks: Uint8Array[] }
      | undefined;
    while (signal?.aborted !== true) {
      let reply: Msg | undefined;
      try {
        // An abort ends the read now, not when the long-poll answers.
        reply = await untilAborted(
          send(subjects.agent(agent, 'output'), encodeJson(request), {
            timeoutMs: (request.waitMs ?? 0) + requestTimeoutMs,
          }),
          signal,
        );
        if (reply === undefined) return;
      } catch (error) {
        if (signal?.aborted) return;
        if (!retryable(error) || failures >= maxRetries) throw error;
        failures += 1;
        await delay(Math.min(50 * 2 ** failures, 2000), signal);
        continue;
      }
      failures = 0;
      if (signal?.aborted) return;
      const batch = decodeBatch(reply.data);
      const header: BatchHeader = batch.header;
      for (const [index, event] of header.events.entries()) {
        if (event.type === 'gap') {
          partial = undefined;
          yield event;
          continue;
        }
        const data = batch.data[index] ?? new Uint8Array(0);
        if (partial !== undefined && partial.seq !== event.seq) partial = undefined;
        if (event.partial === true) {
          partial ??= {
            seq: event.seq,
            offset: event.offset,
            stream: event.stream,
            time: event.time,
            chunks: [],
          };
          partial.chunks.push(data);
          continue;
        }
        const whole = partial === undefined ? [data] : [...partial.chunks, data];
        const first = partial ?? event;
        partial = undefined;
        yield {
          type: 'frame',
          seq: event.seq,
          offset: first.offset,
          stream: event.stream,
          time: event.time,
          data: Buffer.concat(whole),
        };
        if (signal?.aborted) return;
      }
      delete request.cursor;
      delete request.skipBytes;
      delete request.offset;
      Object.assign(request, header.next);
      if (header.end !== undefined) {
        yield { type: 'end', task: header.end };
        return;
      }
    }
  }

  async function* watch(
    id: string,
    watchOptions: Omit<NatsOutputOptions, 'follow' | 'offset'> = {},
  ): AsyncGenerator<NatsOutputEvent, void, undefined> {
    const { signal } = watchOptions;
    const nc = await connection();
    await agentOf(id);
    // Subscribed before the catch-up read, so nothing falls between the two.
    const subscription = nc.subscribe(subjects.taskAll(id));
    const onAbort = (): void => subscription.unsubscribe();
    signal?.addEventListener('abort', onAbort, { once: true });
    const wanted = (stream: OutputStream): boolean =>
      watchOptions.stream === undefined ||
      watchOptions.stream === 'both' ||
      watchOptions.stream === stream;
    let cursor = watchOptions.cursor;
    /**
     * Pull (without follow) from the cursor up to what the agent has; the end
     * says whether the task is final. Both streams, so the cursor follows every
     * seq and a live frame at the cursor can be told from a missed one.
     */
    async function* catchUp(): AsyncGenerator<NatsOutputEvent, TaskInfo | undefined, undefined> {
      let end: TaskInfo | undefined;
      const pullOptions: NatsOutputOptions = { ...(cursor === undefined ? {} : { cursor }) };
      if (signal !== undefined) pullOptions.signal = signal;
      for await (const event of output(id, pullOptions)) {
        if (event.type === 'end') end = event.task;
        else if (event.type === 'gap') {
          cursor = event.toSeq;
          yield event;
        } else {
          cursor = event.seq + 1;
          if (wanted(event.stream)) yield event;
        }
      }
      return end;
    }
    try {
      const first = yield* catchUp();
      if (first !== undefined && isFinalState(first.state)) {
        yield { type: 'end', task: first };
        return;
      }
      for await (const message of subscription) {
        if (message.subject.endsWith('.state')) {
          const task = decodeJson(message.data) as TaskInfo;
          if (!isFinalState(task.state)) continue;
          const end = yield* catchUp();
          yield { type: 'end', task: end ?? task };
          return;
        }
        const seq = Number(message.headers?.get(SEQ_HEADER));
        if (!Number.isSafeInteger(seq)) continue;
        if (cursor !== undefined && seq < cursor) continue;
        if (
          cursor === undefined ||
          seq > cursor ||
          message.headers?.get(TRUNCATED_HEADER) === '1'
        ) {
          // Missed or too large for the subject: pull from the cursor.
          yield* catchUp();
          continue;
        }
        cursor = seq + 1;
        const stream = message.headers?.get(STREAM_HEADER) === 'stderr' ? 'stderr' : 'stdout';
        if (!wanted(stream)) continue;
        yield {
          type: 'frame',
          seq,
          offset: Number(message.headers?.get(OFFSET_HEADER)),
          stream,
          time: Number(message.headers?.get(TIME_HEADER)),
          data: Buffer.from(message.data),
        };
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      subscription.unsubscribe();
    }
  }

  async function writeStdinTo(id: string, data: Uint8Array | string, eof: boolean): Promise<void> {
    await onOwner(id, async (agent) => {
      const headers = natsHeaders();
      headers.set(TASK_HEADER, id);
      if (eof) headers.set(EOF_HEADER, '1');
      await send(
        subjects.agent(agent, 'stdin'),
        typeof data === 'string' ? Buffer.from(data) : data,
        {
          headers,
        },
      );
    });
  }

  const target = (agent: string | undefined, what: string): string => {
    const chosen = agent ?? bound;
    if (chosen === undefined) {
      throw new OverthereError(
        'INVALID_ARGUMENT',
        `${what} of the pool needs { agent } (see agents())`,
      );
    }
    return checkToken(chosen, 'agent');
  };

  const client: NatsClient = {
    agent: bound,
    create,
    get: (id) => onOwner(id, (agent) => call<TaskInfo>(agent, 'get', { id })),
    list,
    async wait(id) {
      for (;;) {
        const task = await onOwner(id, (agent) =>
          call<TaskInfo>(agent, 'wait', { id, timeoutMs: pollMs }, pollMs + requestTimeoutMs),
        );
        if (isFinalState(task.state)) return task;
      }
    },
    signal: (id, signal) =>
      onOwner(id, (agent) => call<undefined>(agent, 'signal', { id, signal })),
    stop: (id, policy = {}, stopOptions = {}) =>
      onOwner(id, (agent) =>
        call<TaskInfo>(
          agent,
          'stop',
          { id, ...policy, wait: stopOptions.wait ?? true },
          (policy.graceMs ?? DEFAULT_GRACE_MS) + requestTimeoutMs,
        ),
      ),
    remove: (id) =>
      onOwner(id, async (agent) => {
        await call<undefined>(agent, 'remove', { id }, DEFAULT_GRACE_MS + requestTimeoutMs);
        owners.delete(id);
      }),
    writeStdin: (id, data) => writeStdinTo(id, data, false),
    closeStdin: (id) => writeStdinTo(id, new Uint8Array(0), true),
    resize: (id, size) =>
      onOwner(id, (agent) =>
        call<undefined>(agent, 'resize', { id, cols: size.cols, rows: size.rows }),
      ),
    capacity: async (capacityOptions = {}) =>
      call<SupervisorCapacity>(target(capacityOptions.agent, 'capacity'), 'capacity', {}),
    runtime: async (runtimeOptions = {}) =>
      call<NatsRuntimeInfo>(target(runtimeOptions.agent, 'runtime'), 'runtime', {}),
    output: (id, outputOptions) => output(id, outputOptions),
    watch: (id, watchOptions) => watch(id, watchOptions),
    async attach(id, attachOptions = {}) {
      await client.get(id); // NOT_FOUND now rather than on the first event
      const controller = new AbortController();
      return {
        [Symbol.asyncIterator]: () => watch(id, { ...attachOptions, signal: controller.signal }),
        writeStdin: (data) => client.writeStdin(id, data),
        closeStdin: () => client.closeStdin(id),
        resize: (size) => client.resize(id, size),
        signal: (signal) => client.signal(id, signal),
        close: () => controller.abort(),
      };
    },
    agents,
    agentOf,
    async close() {
      if (options.connection !== undefined || opened === undefined) return;
      const nc = await opened.catch(() => undefined);
      if (nc !== undefined && !nc.isClosed()) await nc.close();
    },
  };
  return client;
}
