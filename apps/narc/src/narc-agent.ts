/**
 * A narc agent: throwaway Docker sandboxes started and stopped over NATS
 * (`task.start`, `task.stop`, `task.advertise`) and entered over SSH
 * (`ssh TASK@host` with the task's secure token as the password).
 *
 * Pool: every agent takes `task.start` in one queue group, so one of them gets
 * each start. With JetStream, that agent claims the task id in a KV bucket
 * (create-if-absent: a duplicate start anywhere in the pool is ignored), then
 * picks the agent with the most room from the capacity board, reserves the
 * room there by compare-and-set, and forwards the start to that agent's own
 * subject. Without JetStream it is the queue group alone.
 */
import path from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  OverthereError,
  createSupervisor,
  noopLogger,
  secretsEqual,
  type Logger,
  type SandboxSpec,
  type Supervisor,
  type TaskInfo,
  type TaskSpec,
} from '@overthere/core';
import { createDockerRuntime, type DockerRuntime } from '@overthere/runtime-docker';
import {
  openCapacityBoard,
  openNatsConnection,
  parseAdvert,
  type AgentAdvert,
  type BoardEntry,
  type CapacityBoard,
  type NatsConnectOptions,
} from '@overthere/transport-nats';
import {
  createSshServer,
  type SshServer,
  type SshSessionContext,
  type SshTarget,
} from '@overthere/transport-ssh';
import {
  ADVERTISE_SUBJECT,
  MEGABYTE,
  START_QUEUE_GROUP,
  START_SUBJECT,
  STOP_SUBJECT,
  forwardSubject,
  parseAdvertise,
  parseStart,
  parseStop,
  type AdvertiseMessage,
  type StartMessage,
} from './messages.js';

/** Label on every supervisor task of a narc task (its shell and one-off commands). */
const NARC_TASK_LABEL = 'narc.task';
/** `shell` or `exec`. */
const NARC_ROLE_LABEL = 'narc.role';

/** Options for {@link createNarcAgent}. */
export interface NarcAgentOptions {
  /** This agent's id in adverts and on the capacity board; keep it stable across restarts. */
  agentId: string;
  /** How to reach NATS (servers, auth, TLS), as `@overthere/transport-nats` takes it. */
  nats: NatsConnectOptions;
  /** Host key and Docker state live here. */
  dataDir: string;
  /** SSH listen address. Default `127.0.0.1`. */
  sshHost?: string;
  /** SSH port. Default 2222; 0 picks a free one. */
  sshPort?: number;
  /** Image of every task's container. Default `busybox:latest`. */
  image?: string;
  /** Docker network for task containers. Default none (no network at all). */
  network?: string;
  /** The interactive shell. Default `['/bin/sh']`. */
  shell?: readonly string[];
  /** How often `task.advertise` is published. Default 10 000 ms. */
  advertiseIntervalMs?: number;
  /** Memory to hand out, in MB. Default the Docker host's total. */
  memoryMegabytes?: number;
  /** Disk to hand out as quotas, in MB. Default what is free under the data dir. */
  diskMegabytes?: number;
  /** Name shared by the agents of one pool: its KV buckets are `<pool>-capacity` and `<pool>-tasks`. Default `narc`. */
  pool?: string;
  /** Board entries of agents that stopped advertising expire after this long. Default 3 × the advert interval. */
  capacityTtlMs?: number;
  /** A claimed task id is released when its task goes away, or after this long. Default 24 h. */
  claimTtlMs?: number;
  /** Docker daemon socket. Default `/var/run/docker.sock`. */
  dockerSocketPath?: string;
  logger?: Logger;
}

/** A task as {@link NarcAgent.tasks} lists it (never the token). */
export interface NarcTaskInfo {
  id: string;
  memoryMegabytes: number | undefined;
  diskMegabytes: number | undefined;
  /** Id of the running shell task, once someone logged in. */
  shellTaskId: string | undefined;
}

/** A running narc agent. */
export interface NarcAgent {
  readonly id: string;
  /** Where the SSH server listens. */
  readonly ssh: { host: string; port: number };
  /** The SSH host key's `SHA256:` fingerprint. */
  readonly hostKeyFingerprint: string;
  /** The SSH host key's public line, for a `known_hosts` file. */
  readonly hostPublicKey: string;
  /** True when the pool runs on JetStream (claims and the capacity board). */
  readonly jetstream: boolean;
  /** Live tasks on this agent. */
  tasks(): NarcTaskInfo[];
  /** What is left after reservations, as `task.advertise` says it. */
  available(): AdvertiseMessage;
  /** Advertise now (subject and board). */
  advertise(): Promise<void>;
  /** Destroy every task, stop serving and leave NATS (drained). */
  close(): Promise<void>;
}

interface NarcTask {
  id: string;
  /** Compared in constant time; never logged. */
  token: string;
  memoryMegabytes: number | undefined;
  diskMegabytes: number | undefined;
  /** Resolves once the sandbox exists; rejects when it could not be made. */
  ready: Promise<void>;
  shellTaskId: string | undefined;
  shellStarting: Promise<string> | undefined;
  /** Set once the task is going away. */
  ending: Promise<void> | undefined;
  /** Whether this agent holds the pool's claim on the id. */
  claimed: boolean;
}

/** Create-if-absent keys in a KV bucket: which agent took which task id. */
interface TaskClaims {
  claim(taskId: string, owner: string): Promise<boolean>;
  release(taskId: string): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isWrongSequence(error: unknown): boolean {
  return error instanceof Error && /wrong last sequence|key exists/i.test(error.message);
}

/** Open a KV bucket, creating it when missing; a bucket made by another agent with other settings is used as is. */
async function openBucket(connection: NatsConnection, bucket: string, ttlMs: number): Promise<KV> {
  const kvm = new Kvm(connection);
  let kv: KV;
  try {
    kv = await kvm.create(bucket, { ttl: ttlMs, history: 1 });
  } catch {
    kv = await kvm.open(bucket);
  }
  // open() of a missing bucket succeeds; the first call on it would fail. Ask now.
  await kv.status();
  return kv;
}

async function openTaskClaims(
  connection: NatsConnection,
  bucket: string,
  ttlMs: number,
): Promise<TaskClaims> {
  const kv = await openBucket(connection, bucket, ttlMs);
  return {
    async claim(taskId, owner) {
      try {
        await kv.create(taskId, encoder.encode(JSON.stringify({ owner, time: Date.now() })));
        return true;
      } catch (error) {
        if (isWrongSequence(error)) return false;
        throw error;
      }
    },
    async release(taskId) {
      await kv.delete(taskId);
    },
  };
}

/** Open the capacity board, falling back to a bucket another agent created with another TTL. */
async function openBoard(
  connection: NatsConnection,
  bucket: string,
  ttlMs: number,
): Promise<CapacityBoard> {
  try {
    return await openCapacityBoard(connection, { bucket, ttlMs, create: true });
  } catch (error) {
    try {
      return await openCapacityBoard(connection, { bucket, ttlMs, create: false });
    } catch {
      throw error;
    }
  }
}

/** Reject with `UNAVAILABLE` when `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new OverthereError('UNAVAILABLE', `${what} took longer than ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be a positive number`);
  }
  return value;
}

/** Megabytes a start asks for (0 for "no limit", which reserves nothing). */
function needs(message: StartMessage): { memory: number; disk: number } {
  return { memory: message.memory_limit ?? 0, disk: message.disk_limit ?? 0 };
}

/** Megabytes an advert on the board has left; a missing figure is unlimited. */
function advertLeft(advert: AgentAdvert): { memory: number; disk: number } {
  const { memoryBytes, diskBytes } = advert.capacity;
  return {
    memory: memoryBytes === undefined ? Infinity : Math.floor(memoryBytes / MEGABYTE),
    disk: diskBytes === undefined ? Infinity : Math.floor(diskBytes / MEGABYTE),
  };
}

/**
 * Start a narc agent: the Docker runtime, a supervisor, the SSH server and
 * the NATS subscriptions. Resolves once it serves and has advertised once.
 *
 * @throws OverthereError `UNAVAILABLE` when NATS or dockerd cannot be reached; `INVALID_ARGUMENT` for bad options.
 */
export async function createNarcAgent(options: NarcAgentOptions): Promise<NarcAgent> {
  const logger = (options.logger ?? noopLogger).child({ agentId: options.agentId });
  const agentId = options.agentId;
  const intervalMs = positive('advertiseIntervalMs', options.advertiseIntervalMs, 10_000);
  const capacityTtlMs = positive('capacityTtlMs', options.capacityTtlMs, intervalMs * 3);
  const claimTtlMs = positive('claimTtlMs', options.claimTtlMs, 24 * 60 * 60 * 1000);
  const shell = [...(options.shell ?? ['/bin/sh'])];
  const pool = options.pool ?? 'narc';
  if (!/^[A-Za-z0-9_-]+$/.test(pool)) {
    throw new OverthereError('INVALID_ARGUMENT', 'pool must be letters, digits, "_" or "-"');
  }
  if (!/^[A-Za-z0-9_-]+$/.test(agentId)) {
    throw new OverthereError('INVALID_ARGUMENT', 'agentId must be letters, digits, "_" or "-"');
  }

  const runtime: DockerRuntime = await createDockerRuntime({
    agentId: `narc-${agentId}`,
    stateDir: path.join(options.dataDir, 'docker'),
    adoptWindowMs: 0,
    ...(options.image === undefined ? {} : { defaultImage: options.image }),
    ...(options.memoryMegabytes === undefined
      ? {}
      : { memoryBytes: positive('memoryMegabytes', options.memoryMegabytes, 0) * MEGABYTE }),
    ...(options.diskMegabytes === undefined
      ? {}
      : { diskBytes: positive('diskMegabytes', options.diskMegabytes, 0) * MEGABYTE }),
    ...(options.dockerSocketPath === undefined ? {} : { socketPath: options.dockerSocketPath }),
    logger: logger.child({ component: 'docker' }),
  });
  // Containers a crashed run of this agent left behind: nobody can log in to them any more.
  const leftovers = await runtime.removeUnadopted();
  if (leftovers.length > 0) logger.info({ containers: leftovers.length }, 'removed leftovers');
  const total = await runtime.capacity();
  const totalMemory = Math.floor((total.memoryBytes ?? 0) / MEGABYTE);
  const totalDisk = Math.floor((total.diskBytes ?? 0) / MEGABYTE);

  // Finished shells and commands are kept a minute for SSH sessions still draining their output.
  const supervisor: Supervisor = await createSupervisor({
    runtime,
    ttlMs: 60_000,
    logger: logger.child({ component: 'supervisor' }),
  });

  const tasks = new Map<string, NarcTask>();
  /** Ids of starts being claimed and placed right now. */
  const handling = new Set<string>();
  let closing = false;

  function reserved(): { memory: number; disk: number } {
    let memory = 0;
    let disk = 0;
    for (const task of tasks.values()) {
      memory += task.memoryMegabytes ?? 0;
      disk += task.diskMegabytes ?? 0;
    }
    return { memory, disk };
  }

  function available(): AdvertiseMessage {
    const used = reserved();
    return {
      id: agentId,
      available_memory: Math.max(0, totalMemory - used.memory),
      available_disk: Math.max(0, totalDisk - used.disk),
    };
  }

  function fits(message: StartMessage): boolean {
    const left = available();
    const need = needs(message);
    return need.memory <= left.available_memory && need.disk <= left.available_disk;
  }

  // ---- SSH ----------------------------------------------------------------

  function liveTask(id: string): NarcTask {
    const task = tasks.get(id);
    if (task === undefined || task.ending !== undefined) {
      throw new OverthereError('NOT_FOUND', `task ${id} is gone`);
    }
    return task;
  }

  function sessionSpec(
    task: NarcTask,
    session: SshSessionContext,
    role: 'shell' | 'exec',
    command: string[],
  ): TaskSpec {
    const env: Record<string, string> = { ...session.env };
    if (session.pty) env.TERM = session.pty.term;
    return {
      command,
      env,
      stdin: 'pipe',
      ...(session.pty ? { tty: { cols: session.pty.cols, rows: session.pty.rows } } : {}),
      labels: { [NARC_TASK_LABEL]: task.id, [NARC_ROLE_LABEL]: role },
    };
  }

  async function shellTarget(session: SshSessionContext): Promise<SshTarget> {
    const task = liveTask(session.username);
    await task.ready;
    if (task.shellTaskId !== undefined) {
      // A reconnect: the shell that kept running, without replaying its past.
      return { taskId: task.shellTaskId, replay: false, onDisconnect: 'keep' };
    }
    let first = false;
    if (task.shellStarting === undefined) {
      first = true;
      task.shellStarting = supervisor
        .create(sessionSpec(task, session, 'shell', shell), { sandboxId: task.id })
        .then((info) => {
          task.shellTaskId = info.id;
          return info.id;
        });
      task.shellStarting.catch(() => {
        task.shellStarting = undefined;
      });
    }
    const taskId = await task.shellStarting;
    // The first session sees everything the shell wrote (its first prompt).
    return { taskId, replay: first, onDisconnect: 'keep' };
  }

  async function execTarget(session: SshSessionContext, command: string): Promise<SshTarget> {
    const task = liveTask(session.username);
    await task.ready;
    return {
      spec: sessionSpec(task, session, 'exec', ['/bin/sh', '-c', command]),
      options: { sandboxId: task.id },
      onDisconnect: 'stop',
    };
  }

  const sshServer: SshServer = await createSshServer({
    supervisor,
    dataDir: options.dataDir,
    logger: logger.child({ component: 'ssh' }),
    authenticate(context) {
      if (context.method !== 'password' || context.password === undefined) return undefined;
      const task = tasks.get(context.username);
      if (task === undefined || task.ending !== undefined) return undefined;
      if (!secretsEqual(context.password, task.token)) return undefined;
      return { name: context.username, data: task.id };
    },
    hooks: { shell: shellTarget, exec: execTarget },
  });

  // ---- task lifecycle -----------------------------------------------------

  let claims: TaskClaims | undefined;
  let board: CapacityBoard | undefined;
  /** The board's bucket, read entry by entry (listing its keys can stall while agents write). */
  let boardKv: KV | undefined;
  /** Agents heard on `task.advertise` lately: the board entries worth reading. */
  const knownAgents = new Map<string, number>();

  /** The board entries of this agent and every agent heard from lately. */
  async function boardEntries(): Promise<BoardEntry[]> {
    if (boardKv === undefined) return [];
    const kv = boardKv;
    const now = Date.now();
    for (const [id, seen] of knownAgents) {
      if (now - seen > capacityTtlMs) knownAgents.delete(id);
    }
    const ids = new Set([agentId, ...knownAgents.keys()]);
    const entries = await Promise.all(
      [...ids].map(async (id): Promise<BoardEntry | undefined> => {
        const entry = await kv.get(`agent.${id}`);
        if (entry === null || entry.operation !== 'PUT') return undefined;
        const advert = parseAdvert(entry.value);
        return advert === undefined ? undefined : { advert, revision: entry.revision };
      }),
    );
    return entries.filter((entry): entry is BoardEntry => entry !== undefined);
  }

  function endTask(task: NarcTask, why: string, kick: boolean): Promise<void> {
    task.ending ??= (async () => {
      logger.info({ task: task.id, why }, 'task going away');
      await task.ready.catch(() => undefined);
      await supervisor.destroySandbox(task.id).catch((error: unknown) => {
        if (!(OverthereError.is(error) && error.code === 'NOT_FOUND')) {
          logger.error({ err: error, task: task.id }, 'destroying the sandbox failed');
        }
      });
      if (kick) sshServer.disconnect({ username: task.id });
      tasks.delete(task.id);
      if (task.claimed && claims !== undefined && !connection.isClosed()) {
        await claims.release(task.id).catch((error: unknown) => {
          logger.warn({ err: error, task: task.id }, 'releasing the claim failed');
        });
      }
      logger.info({ task: task.id }, 'task gone');
      advertiseSoon();
    })();
    return task.ending;
  }

  // When the shell or a one-off command ends, the whole task goes.
  supervisor.on('task-end', (info: TaskInfo) => {
    const id = info.spec.labels?.[NARC_TASK_LABEL];
    if (id === undefined) return;
    const task = tasks.get(id);
    if (task === undefined || task.ending !== undefined) return;
    const role = info.spec.labels?.[NARC_ROLE_LABEL] ?? 'command';
    void endTask(task, `${role} ended (${info.exit?.reason ?? info.state})`, false);
  });

  function startLocally(message: StartMessage, claimed: boolean): void {
    const memoryBytes =
      message.memory_limit === undefined ? undefined : message.memory_limit * MEGABYTE;
    const diskBytes = message.disk_limit === undefined ? undefined : message.disk_limit * MEGABYTE;
    const spec: SandboxSpec = {
      limits: {
        ...(memoryBytes === undefined ? {} : { memoryBytes }),
        ...(diskBytes === undefined ? {} : { diskBytes }),
      },
      labels: { [NARC_TASK_LABEL]: message.task },
      runtimeOptions: {
        docker: options.network === undefined ? {} : { network: options.network },
      },
    };
    const task: NarcTask = {
      id: message.task,
      token: message.secure_token,
      memoryMegabytes: message.memory_limit,
      diskMegabytes: message.disk_limit,
      ready: supervisor.createSandbox(spec, { id: message.task }).then(() => undefined),
      shellTaskId: undefined,
      shellStarting: undefined,
      ending: undefined,
      claimed,
    };
    tasks.set(task.id, task);
    const limits = { memoryLimit: task.memoryMegabytes, diskLimit: task.diskMegabytes };
    logger.debug({ task: task.id, ...limits }, 'task accepted');
    task.ready.then(
      () => logger.info({ task: task.id, ...limits }, 'task started'),
      () => undefined,
    );
    task.ready.catch((error: unknown) => {
      logger.error({ err: error, task: task.id }, 'task could not start');
      void endTask(task, 'no sandbox', true);
    });
    advertiseSoon();
  }

  /** The agent with the most room for `message` (memory, then disk; this agent wins ties), with the room reserved there. */
  async function place(message: StartMessage): Promise<string | undefined> {
    if (board === undefined) return agentId;
    const need = needs(message);
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const now = Date.now();
      const entries = (await boardEntries()).filter(
        (entry) =>
          now - entry.advert.time <= capacityTtlMs &&
          advertLeft(entry.advert).memory >= need.memory &&
          advertLeft(entry.advert).disk >= need.disk,
      );
      entries.sort((a, b) => {
        const left = advertLeft(a.advert);
        const right = advertLeft(b.advert);
        if (left.memory !== right.memory) return right.memory - left.memory;
        if (left.disk !== right.disk) return right.disk - left.disk;
        return (a.advert.agent === agentId ? 0 : 1) - (b.advert.agent === agentId ? 0 : 1);
      });
      const best: BoardEntry | undefined = entries[0];
      if (best === undefined) return undefined;
      // Others keep winning the race for the entry: go there without a reservation.
      if (attempt === 4) return best.advert.agent;
      const capacity = { ...best.advert.capacity, liveTasks: best.advert.capacity.liveTasks + 1 };
      if (capacity.memoryBytes !== undefined) capacity.memoryBytes -= need.memory * MEGABYTE;
      if (capacity.diskBytes !== undefined) capacity.diskBytes -= need.disk * MEGABYTE;
      // Compare-and-set: two agents placing at once cannot both spend the same room.
      if (await board.update({ ...best.advert, capacity }, best.revision)) return best.advert.agent;
    }
    return undefined;
  }

  function refuse(message: StartMessage, claimed: boolean): void {
    const left = available();
    logger.warn(
      {
        task: message.task,
        memoryLimit: message.memory_limit,
        diskLimit: message.disk_limit,
        availableMemory: left.available_memory,
        availableDisk: left.available_disk,
      },
      'task.start refused: it does not fit',
    );
    if (claimed && claims !== undefined) {
      claims.release(message.task).catch(() => undefined);
    }
  }

  async function onStart(data: Uint8Array): Promise<void> {
    if (closing) return;
    const parsed = parseStart(data);
    if (!parsed.ok) {
      logger.warn({ reason: parsed.reason }, 'invalid task.start ignored');
      return;
    }
    const message = parsed.value;
    if (tasks.has(message.task) || handling.has(message.task)) {
      logger.info({ task: message.task }, 'duplicate task.start ignored');
      return;
    }
    handling.add(message.task);
    try {
      await placeAndStart(message, data);
    } finally {
      handling.delete(message.task);
    }
  }

  async function placeAndStart(message: StartMessage, data: Uint8Array): Promise<void> {
    let claimed = false;
    if (claims !== undefined) {
      claimed = await within(claims.claim(message.task, agentId), 5_000, 'claiming the task id');
      if (!claimed) {
        logger.info({ task: message.task }, 'duplicate task.start ignored (claimed in the pool)');
        return;
      }
    }
    const target = await within(place(message), 3_000, 'placing by capacity').catch(
      (error: unknown) => {
        logger.warn({ err: error }, 'the capacity board did not answer; placing here');
        return agentId;
      },
    );
    if (target !== undefined && target !== agentId) {
      try {
        const reply = await connection.request(forwardSubject(target), data, { timeout: 5_000 });
        const answer = JSON.parse(decoder.decode(reply.data)) as { accepted?: boolean };
        if (answer.accepted === true) {
          logger.info({ task: message.task, agent: target }, 'task.start forwarded');
          return;
        }
        logger.info({ task: message.task, agent: target }, 'forwarded task.start was refused');
      } catch (error) {
        logger.warn({ err: error, task: message.task, agent: target }, 'forwarding failed');
      }
    }
    if (tasks.has(message.task)) return;
    if (!fits(message)) {
      refuse(message, claimed);
      return;
    }
    startLocally(message, claimed);
  }

  function onForwardedStart(data: Uint8Array): boolean {
    if (closing) return false;
    const parsed = parseStart(data);
    if (!parsed.ok) {
      logger.warn({ reason: parsed.reason }, 'invalid forwarded task.start ignored');
      return false;
    }
    const message = parsed.value;
    if (tasks.has(message.task)) return true;
    // The forwarding agent keeps the claim when this one refuses.
    if (!fits(message)) {
      refuse(message, false);
      return false;
    }
    startLocally(message, true);
    return true;
  }

  function onStop(data: Uint8Array): void {
    const parsed = parseStop(data);
    if (!parsed.ok) {
      logger.warn({ reason: parsed.reason }, 'invalid task.stop ignored');
      return;
    }
    // Every agent hears every stop; only the owner has the task.
    const task = tasks.get(parsed.value.task);
    if (task === undefined) return;
    void endTask(task, 'task.stop', true);
  }

  // ---- NATS ---------------------------------------------------------------

  let connection: NatsConnection;
  try {
    connection = await openNatsConnection({ name: `narc ${agentId}`, ...options.nats });
  } catch (error) {
    await sshServer.close();
    await supervisor.close();
    await runtime.dispose();
    throw error;
  }

  try {
    // The server says so in its INFO; asking the JetStream API would wait for a timeout.
    if (connection.info?.jetstream !== true) {
      throw new OverthereError('UNAVAILABLE', 'the NATS server has no JetStream');
    }
    claims = await openTaskClaims(connection, `${pool}-tasks`, claimTtlMs);
    board = await openBoard(connection, `${pool}-capacity`, capacityTtlMs);
    boardKv = await openBucket(connection, board.bucket, capacityTtlMs);
  } catch (error) {
    claims = undefined;
    board = undefined;
    logger.warn({ err: error }, 'no JetStream: the pool is the task.start queue group alone');
  }

  async function advertise(): Promise<void> {
    if (connection.isClosed()) return;
    const message = available();
    connection.publish(ADVERTISE_SUBJECT, encoder.encode(JSON.stringify(message)));
    if (board === undefined) return;
    await within(
      board.put({
        agent: agentId,
        capacity: {
          memoryBytes: message.available_memory * MEGABYTE,
          diskBytes: message.available_disk * MEGABYTE,
          liveTasks: tasks.size,
        },
        time: Date.now(),
        intervalMs,
      }),
      2_000,
      'putting the advert on the board',
    );
  }
  const advertiseQuietly = (): void => {
    advertise().catch((error: unknown) => logger.warn({ err: error }, 'advertising failed'));
  };
  /** A restarted server may need a moment before JetStream answers: try a few times. */
  async function advertiseAfterReconnect(): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await advertise();
        return;
      } catch (error) {
        if (attempt >= 10 || closing) {
          logger.warn({ err: error }, 'advertising after the reconnect failed');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }
  let soon: NodeJS.Timeout | undefined;
  function advertiseSoon(): void {
    if (soon !== undefined || closing) return;
    soon = setTimeout(() => {
      soon = undefined;
      advertiseQuietly();
    }, 50);
  }

  const subscriptions: Subscription[] = [];
  const serve = (subscription: Subscription, handle: (data: Uint8Array) => unknown): void => {
    subscriptions.push(subscription);
    void (async () => {
      for await (const message of subscription) {
        // Each on its own: a slow claim or placement does not hold up the next start.
        Promise.resolve()
          .then(() => handle(message.data))
          .catch((error: unknown) => {
            logger.error({ err: error, subject: message.subject }, 'handling a message failed');
          });
      }
    })();
  };
  serve(connection.subscribe(START_SUBJECT, { queue: START_QUEUE_GROUP }), onStart);
  serve(connection.subscribe(STOP_SUBJECT), onStop);
  serve(connection.subscribe(ADVERTISE_SUBJECT), (data) => {
    const parsed = parseAdvertise(data);
    if (parsed.ok) knownAgents.set(parsed.value.id, Date.now());
  });
  const forwarded = connection.subscribe(forwardSubject(agentId));
  subscriptions.push(forwarded);
  void (async () => {
    for await (const message of forwarded) {
      const accepted = onForwardedStart(message.data);
      message.respond(encoder.encode(JSON.stringify({ accepted })));
    }
  })();

  // Re-advertise as soon as the connection is back (a server restart or a failover).
  void (async () => {
    for await (const status of connection.status()) {
      if (status.type === 'reconnect') {
        logger.info({ server: status.server }, 'reconnected to NATS; advertising');
        void advertiseAfterReconnect();
      }
    }
  })();

  let ssh: { host: string; port: number };
  try {
    await connection.flush();
    ssh = await sshServer.listen({
      host: options.sshHost ?? '127.0.0.1',
      port: options.sshPort ?? 2222,
    });
  } catch (error) {
    for (const subscription of subscriptions) subscription.unsubscribe();
    await connection.close().catch(() => undefined);
    await sshServer.close();
    await supervisor.close();
    await runtime.dispose();
    throw error;
  }
  await advertise().catch((error: unknown) => logger.warn({ err: error }, 'advertising failed'));
  // The agents already on the board, before their next adverts arrive.
  if (board !== undefined) {
    const entries = await within(board.list(), 2_000, 'listing the board').catch(() => []);
    for (const entry of entries) knownAgents.set(entry.advert.agent, entry.advert.time);
  }
  const timer = setInterval(advertiseQuietly, intervalMs);
  logger.info(
    {
      ssh,
      jetstream: board !== undefined,
      availableMemory: available().available_memory,
      availableDisk: available().available_disk,
    },
    'narc agent ready',
  );

  let closed: Promise<void> | undefined;
  return {
    id: agentId,
    ssh,
    hostKeyFingerprint: sshServer.hostKeyFingerprint,
    hostPublicKey: sshServer.hostPublicKey,
    jetstream: board !== undefined,
    tasks: () =>
      [...tasks.values()]
        .filter((task) => task.ending === undefined)
        .map((task) => ({
          id: task.id,
          memoryMegabytes: task.memoryMegabytes,
          diskMegabytes: task.diskMegabytes,
          shellTaskId: task.shellTaskId,
        })),
    available,
    advertise,
    close() {
      closed ??= (async () => {
        closing = true;
        clearInterval(timer);
        clearTimeout(soon);
        for (const subscription of subscriptions) subscription.unsubscribe();
        await Promise.all([...tasks.values()].map((task) => endTask(task, 'shutdown', true)));
        await sshServer.close();
        if (!connection.isClosed()) {
          await board?.remove(agentId).catch(() => undefined);
          await connection.drain().catch(() => undefined);
        }
        await supervisor.close();
        await runtime.dispose();
      })();
      return closed;
    },
  };
}
