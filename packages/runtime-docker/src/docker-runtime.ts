/**
 * `createDockerRuntime`: tasks in containers (one per task), sandboxes
 * (a long-lived container plus exec), limits, and re-adoption of running
 * containers after an agent restart.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, readFile, rm, rmdir, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import {
  OverthereError,
  noopLogger,
  writeFileAtomic,
  type Logger,
  type Process,
  type ProcessHandle,
  type Runtime,
  type RuntimeCapabilities,
  type RuntimeCapacity,
  type Sandbox,
  type SandboxSpec,
  type SpawnContext,
  type TaskSpec,
} from '@overthere/core';
import Docker from 'dockerode';
import type { Duplex, Readable } from 'node:stream';
import { createContainerProcess, type ManagedProcess } from './container-process.js';
import { engineError, engineMessage, engineStatus } from './docker-errors.js';
import {
  createQuotaVolume,
  listQuotaVolumes,
  releaseQuotaVolume,
  type QuotaVolume,
} from './disk-quota.js';
import {
  canRunWarm,
  createPidFileLedger,
  PID_DIR,
  startExecProcess,
  startWarmExec,
  type WarmExec,
} from './exec-process.js';
import {
  DISK_BYTES_LABEL,
  KIND_LABEL,
  QUOTA_LABEL,
  isOwnedBy,
  ownerFilter,
  ownerLabels,
  type ContainerKind,
} from './labels.js';
import type { StreamCounts } from './output-pump.js';
import {
  argvOf,
  checkLimits,
  checkTtySize,
  dockerOptionsOf,
  environmentOf,
  pullPolicyOf,
  type PullPolicy,
} from './spec-options.js';

/** Options for {@link createDockerRuntime}. */
export interface DockerRuntimeOptions {
  /** The daemon's Unix socket. Default `/var/run/docker.sock` (or `DOCKER_HOST` when it is `unix://…`). */
  socketPath?: string;
  /**
   * Who owns the containers: every container is labelled with it (and the OS
   * uid), and only this agent's containers are adopted or removed. Keep it
   * stable across restarts. Default `default`.
   */
  agentId?: string;
  /** Image for specs that name none. Default `busybox:latest`. */
  defaultImage?: string;
  /** Base environment of every task, on top of the image's (dropped with `inheritEnv: false`). */
  env?: Record<string, string>;
  /** When images are pulled; a spec's `runtimeOptions.docker.pull` overrides it. Default `never`. */
  pull?: PullPolicy;
  /** Keep containers after their task ends (debugging). Default false. */
  keepContainers?: boolean;
  /** Where cursors and disk-quota images live. Default `$TMPDIR/overthere-docker-<uid>/<agentId>`. */
  stateDir?: string;
  /** Memory to hand out (`capacity()`); default the daemon host's total. */
  memoryBytes?: number;
  /** Disk to hand out as quotas (`capacity()`); default what is free under `stateDir`. */
  diskBytes?: number;
  /**
   * Containers of this agent found at start are kept this long for the
   * supervisor to adopt; then the unclaimed ones are removed. Default 30 000.
   */
  adoptWindowMs?: number;
  /** Command the sandbox container idles with. Default `sleep 2147483647`. */
  sandboxIdleCommand?: string[];
  /** How long to wait for the daemon to answer at start. Default 5 000. */
  connectTimeoutMs?: number;
  logger?: Logger;
}

/** Progress of an image pull, as the daemon reports it. */
export interface ImagePullEvent {
  image: string;
  status: string;
  /** Layer id, when the line is about a layer. */
  layer?: string;
  current?: number;
  total?: number;
}

/** A Docker runtime: a core Runtime plus what only containers can do. */
export interface DockerRuntime extends Runtime {
  readonly agentId: string;
  createSandbox(spec: SandboxSpec, context: SpawnContext): Promise<Sandbox>;
  adopt(handle: ProcessHandle, context: SpawnContext): Promise<Process | undefined>;
  /** Remove this agent's containers found at start that nobody adopted; returns their ids. */
  removeUnadopted(): Promise<string[]>;
  /**
   * Let go of every container without stopping it (an agent restart): output
   * positions are saved so a new runtime with the same `agentId` can adopt them.
   */
  detach(): Promise<void>;
  /** `image-pull`: progress while an image is pulled. */
  on(event: 'image-pull', listener: (event: ImagePullEvent) => void): this;
  off(event: 'image-pull', listener: (event: ImagePullEvent) => void): this;
}

const CAPABILITIES: RuntimeCapabilities = Object.freeze({
  stdin: true,
  tty: true,
  signals: true,
  processGroups: true,
  user: true,
  limits: Object.freeze(['memoryBytes', 'diskBytes', 'cpus', 'pids', 'openFiles'] as const),
  isolation: 'container',
  sandboxes: true,
  adopt: true,
});

/** How far behind the saved output positions may be when an agent crashes. */
const CURSOR_SAVE_MS = 250;
/** How long an image name's id is trusted before it is inspected again. */
const IMAGE_CACHE_MS = 5_000;
/** Most cached answers about paths in images. */
const PATH_CHECKS_MAX = 4_096;

/** Where a disk-limited container's writable areas are. */
const QUOTA_WORK_DIR = '/work';
const QUOTA_TMP_DIR = '/tmp';

interface ImageFacts {
  id: string;
  path: string | undefined;
}

interface LiveEntry {
  kind: ContainerKind;
  containerId: string;
  process?: ManagedProcess;
  sandbox?: Sandbox;
  memoryBytes: number;
  diskBytes: number;
}

function defaultSocketPath(): string {
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith('unix://')) return host.slice('unix://'.length);
  return '/var/run/docker.sock';
}

/** A name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. */
function nameSafe(value: string, max: number): string {
  const cleaned = value.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, max);
  return /^[a-zA-Z0-9]/.test(cleaned) ? cleaned : `x${cleaned}`.slice(0, max);
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error(message), { code: 'ETIMEDOUT' })),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Connect to dockerd and build the runtime. Rejects with `UNAVAILABLE` (and
 * creates nothing) when the daemon cannot be reached. Containers of this
 * agent left from an earlier run are found here: sandboxes are removed at
 * once, task containers wait `adoptWindowMs` to be adopted.
 */
export async function createDockerRuntime(
  options: DockerRuntimeOptions = {},
): Promise<DockerRuntime> {
  const logger = options.logger ?? noopLogger;
  const socketPath = options.socketPath ?? defaultSocketPath();
  const daemon = `unix://${socketPath}`;
  const agentId = options.agentId ?? 'default';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(agentId)) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `agentId must be 1-63 letters, digits, '_', '.' or '-' (starting with a letter or digit): ${JSON.stringify(agentId)}`,
    );
  }
  const defaultImage = options.defaultImage ?? 'busybox:latest';
  const baseEnv = { ...(options.env ?? {}) };
  const defaultPull = options.pull ?? 'never';
  const docker = new Docker({ socketPath });

  let info: { MemTotal?: number };
  try {
    await withTimeout(docker.ping(), options.connectTimeoutMs ?? 5_000, 'no answer');
    info = (await docker.info()) as { MemTotal?: number };
  } catch (error) {
    throw new OverthereError(
      'UNAVAILABLE',
      `the Docker daemon at ${daemon} is unreachable (${engineMessage(error)}); is dockerd running and may this user use its socket?`,
      { cause: error },
    );
  }

  const uid = String(process.getuid?.() ?? 'user');
  const stateDir = options.stateDir ?? join(tmpdir(), `overthere-docker-${uid}`, agentId);
  const cursorDir = join(stateDir, 'cursors');
  const quotaDir = join(stateDir, 'quota');
  await mkdir(cursorDir, { recursive: true });
  await mkdir(quotaDir, { recursive: true });

  const events = new EventEmitter();
  const live = new Map<string, LiveEntry>();
  const orphans = new Map<string, { quota: string | undefined }>();
  const cleanups = new Set<Promise<void>>();
  const images = new Map<string, { facts: Promise<ImageFacts>; expires: number }>();
  const probes = new Map<string, Promise<Docker.Container>>();
  const pathChecks = new Map<string, Promise<boolean>>();
  const cursorTimers = new Map<string, NodeJS.Timeout>();
  let state: 'open' | 'disposed' | 'detached' = 'open';

  const track = (promise: Promise<void>) => {
    const tracked = promise.catch((error: unknown) => {
      logger.warn({ err: error }, 'docker cleanup failed');
    });
    cleanups.add(tracked);
    void tracked.finally(() => cleanups.delete(tracked));
  };

  const cursorPath = (containerId: string) => join(cursorDir, `${containerId}.json`);
  // Replaced whole: an agent killed mid-write must not leave an empty cursor,
  // which would replay the output from the start.
  const saveCursor = (containerId: string, counts: StreamCounts) =>
    writeFileAtomic(cursorPath(containerId), JSON.stringify(counts));
  const readCursor = async (containerId: string): Promise<StreamCounts> => {
    try {
      const parsed = JSON.parse(
        await readFile(cursorPath(containerId), 'utf8'),
      ) as Partial<StreamCounts>;
      return {
        stdout: Number.isSafeInteger(parsed.stdout) ? parsed.stdout! : 0,
        stderr: Number.isSafeInteger(parsed.stderr) ? parsed.stderr! : 0,
      };
    } catch {
      return { stdout: 0, stderr: 0 };
    }
  };
  /** Persist delivered counts every CURSOR_SAVE_MS at most (for a crash; detach saves exactly). */
  const scheduleCursor = (containerId: string) => {
    if (cursorTimers.has(containerId) || state !== 'open') return;
    const timer = setTimeout(() => {
      cursorTimers.delete(containerId);
      const entry = live.get(containerId);
      if (entry?.process === undefined || state !== 'open') return;
      saveCursor(containerId, entry.process.counts).catch((error: unknown) => {
        logger.debug({ err: error }, 'saving an output cursor failed');
      });
    }, CURSOR_SAVE_MS);
    timer.unref();
    cursorTimers.set(containerId, timer);
  };

  /** Remove a container (and its quota filesystem, cursor) whatever its state. */
  const removeContainer = async (containerId: string, quota: string | undefined) => {
    try {
      await docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (error) {
      if (engineStatus(error) !== 404 && engineStatus(error) !== 409) throw error;
    }
    if (quota !== undefined) await releaseQuotaVolume(quotaDir, quota);
    await rm(cursorPath(containerId), { force: true });
  };

  // ------------------------------------------------------------ images

  const pullImage = async (image: string) => {
    logger.info({ image }, 'pulling image');
    let stream: NodeJS.ReadableStream;
    try {
      stream = await docker.pull(image);
    } catch (error) {
      throw engineError(error, `pulling image ${image}`, 'SPAWN_FAILED', daemon);
    }
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(
        stream,
        (error: Error | null) => (error ? reject(error) : resolve()),
        (line: {
          status?: string;
          id?: string;
          progressDetail?: { current?: number; total?: number };
          error?: string;
        }) => {
          if (line.error) return;
          const event: ImagePullEvent = { image, status: line.status ?? '' };
          if (line.id !== undefined) event.layer = line.id;
          if (line.progressDetail?.current !== undefined)
            event.current = line.progressDetail.current;
          if (line.progressDetail?.total !== undefined) event.total = line.progressDetail.total;
          events.emit('image-pull', event);
        },
      );
    }).catch((error: unknown) => {
      throw engineError(error, `pulling image ${image}`, 'SPAWN_FAILED', daemon);
    });
  };

  const inspectImage = async (image: string): Promise<ImageFacts | undefined> => {
    try {
      const facts = await docker.getImage(image).inspect();
      const path = (facts.Config?.Env ?? [])
        .find((entry) => entry.startsWith('PATH='))
        ?.slice('PATH='.length);
      return { id: facts.Id, path };
    } catch (error) {
      if (engineStatus(error) === 404) return undefined;
      throw engineError(error, `inspecting image ${image}`, 'SPAWN_FAILED', daemon);
    }
  };

  /** The image's facts, pulling it first when the policy says so. */
  const ensureImage = async (image: string, pull: PullPolicy): Promise<ImageFacts> => {
    if (pull === 'always') {
      await pullImage(image);
      images.delete(image);
    }
    const entry = images.get(image);
    let cached = entry !== undefined && entry.expires > Date.now() ? entry.facts : undefined;
    if (cached === undefined) {
      cached = (async () => {
        let facts = await inspectImage(image);
        if (facts === undefined && pull === 'missing') {
          await pullImage(image);
          facts = await inspectImage(image);
        }
        if (facts === undefined) {
          throw new OverthereError(
            'SPAWN_FAILED',
            `image ${JSON.stringify(image)} is not present on the Docker host; pull it (docker pull ${image}) or ask for a pull with runtimeOptions.docker.pull`,
          );
        }
        return facts;
      })();
      // A tag can move to another image: look again after a few seconds.
      images.set(image, { facts: cached, expires: Date.now() + IMAGE_CACHE_MS });
      cached.catch(() => images.delete(image));
    }
    return cached;
  };

  // ------------------------------------------------------------ preflight

  /**
   * A never-started container of the image, to look at the image's files:
   * Docker creates a missing working directory and tini reports a missing
   * binary only as exit 127, so both are checked before the task starts.
   */
  const probeFor = (facts: ImageFacts): Promise<Docker.Container> => {
    let probe = probes.get(facts.id);
    if (probe === undefined) {
      probe = docker.createContainer({
        name: `overthere-probe-${nameSafe(agentId, 40)}-${randomBytes(4).toString('hex')}`,
        Image: facts.id,
        Entrypoint: ['/overthere-probe'],
        Labels: ownerLabels(agentId, 'probe', 'probe', undefined),
        NetworkDisabled: true,
        HostConfig: { NetworkMode: 'none' },
      });
      probes.set(facts.id, probe);
      probe.catch(() => probes.delete(facts.id));
    }
    return probe;
  };

  const pathExists = (facts: ImageFacts, path: string): Promise<boolean> => {
    const key = `${facts.id}\0${path}`;
    let check = pathChecks.get(key);
    if (check === undefined) {
      check = (async () => {
        const probe = await probeFor(facts);
        try {
          await probe.infoArchive({ path });
          return true;
        } catch (error) {
          if (engineStatus(error) === 404) return false;
          throw error;
        }
      })();
      // Answers per image id never change; the bound only caps memory.
      if (pathChecks.size >= PATH_CHECKS_MAX) pathChecks.clear();
      pathChecks.set(key, check);
      check.catch(() => pathChecks.delete(key));
    }
    return check;
  };

  const checkBinary = async (
    facts: ImageFacts,
    program: string,
    searchPath: string | undefined,
  ) => {
    if (program.includes('/')) {
      if (!program.startsWith('/')) return; // relative to the working directory: let it run
      if (await pathExists(facts, program)) return;
    } else {
      const dirs = (searchPath ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
        .split(':')
        .filter((dir) => dir.startsWith('/'));
      const found = await Promise.all(
        dirs.map((dir) => pathExists(facts, posix.join(dir, program))),
      );
      if (found.includes(true)) return;
    }
    throw new OverthereError(
      'SPAWN_FAILED',
      `cannot run ${JSON.stringify(program)}: no such file in the image (ENOENT)`,
    );
  };

  const checkDirectory = async (facts: ImageFacts, cwd: string, quota: QuotaVolume | undefined) => {
    if (!cwd.startsWith('/')) {
      throw new OverthereError(
        'SPAWN_FAILED',
        `working directory ${JSON.stringify(cwd)} is not absolute`,
      );
    }
    const normal = posix.normalize(cwd);
    let exists: boolean;
    if (
      quota !== undefined &&
      (normal === QUOTA_WORK_DIR || normal.startsWith(`${QUOTA_WORK_DIR}/`))
    ) {
      exists = await statfs(join(quota.workPath, normal.slice(QUOTA_WORK_DIR.length))).then(
        () => true,
        () => false,
      );
    } else if (
      quota !== undefined &&
      (normal === QUOTA_TMP_DIR || normal.startsWith(`${QUOTA_TMP_DIR}/`))
    ) {
      exists = await statfs(join(quota.tmpPath, normal.slice(QUOTA_TMP_DIR.length))).then(
        () => true,
        () => false,
      );
    } else {
      exists = await pathExists(facts, normal);
    }
    if (!exists) {
      throw new OverthereError(
        'SPAWN_FAILED',
        `working directory ${JSON.stringify(cwd)} does not exist in the container (ENOENT)`,
      );
    }
  };

  // ------------------------------------------------------------ containers

  const hostConfigOf = (
    spec: { limits?: TaskSpec['limits'] },
    network: string | undefined,
    quota: QuotaVolume | undefined,
  ): Docker.HostConfig => {
    const limits = checkLimits(spec.limits);
    const host: Docker.HostConfig = {
      Init: true,
      NetworkMode: network ?? 'none',
      Privileged: false,
      SecurityOpt: ['no-new-privileges:true'],
    };
    if (limits.memoryBytes !== undefined) {
      host.Memory = limits.memoryBytes;
      host.MemorySwap = limits.memoryBytes; // no swap: the limit is hard
    }
    if (limits.cpus !== undefined) host.NanoCpus = Math.round(limits.cpus * 1e9);
    if (limits.pids !== undefined) host.PidsLimit = limits.pids;
    if (limits.openFiles !== undefined) {
      host.Ulimits = [{ Name: 'nofile', Soft: limits.openFiles, Hard: limits.openFiles }];
    }
    if (quota !== undefined) {
      // Only the quota filesystem is writable.
      host.ReadonlyRootfs = true;
      host.Mounts = [
        { Type: 'bind', Source: quota.workPath, Target: QUOTA_WORK_DIR },
        { Type: 'bind', Source: quota.tmpPath, Target: QUOTA_TMP_DIR },
      ];
    }
    return host;
  };

  const quotaFor = async (name: string, diskBytes: number | undefined) =>
    diskBytes === undefined ? undefined : createQuotaVolume(quotaDir, name, diskBytes);

  const assertOpen = () => {
    if (state !== 'open') {
      throw new OverthereError('UNAVAILABLE', `the Docker runtime is ${state}`);
    }
  };

  const finishEntry = (containerId: string, quota: string | undefined, keep: boolean) => {
    live.delete(containerId);
    const timer = cursorTimers.get(containerId);
    if (timer) clearTimeout(timer);
    cursorTimers.delete(containerId);
    if (state === 'detached') return;
    track(
      keep
        ? rm(cursorPath(containerId), { force: true }).then(async () => {
            if (quota !== undefined) await releaseQuotaVolume(quotaDir, quota);
          })
        : removeContainer(containerId, quota),
    );
  };

  const spawn = async (spec: TaskSpec, context: SpawnContext): Promise<Process> => {
    assertOpen();
    const dockerOptions = dockerOptionsOf(spec.runtimeOptions);
    const argv = argvOf(spec);
    if (spec.tty !== undefined) checkTtySize(spec.tty, 'tty');
    const limits = checkLimits(spec.limits);
    const image = dockerOptions.image ?? defaultImage;
    const facts = await ensureImage(image, pullPolicyOf(dockerOptions.pull, defaultPull));
    const env = environmentOf(baseEnv, spec, { TINI_KILL_PROCESS_GROUP: '1' });
    const searchPath =
      spec.env?.PATH ?? (spec.inheritEnv === false ? undefined : baseEnv.PATH) ?? facts.path;
    const name = `overthere-${nameSafe(agentId, 40)}-${nameSafe(context.taskId, 80)}-${randomBytes(3).toString('hex')}`;
    const stdinPipe = spec.stdin === 'pipe';
    const tty = spec.tty !== undefined;
    const keep = dockerOptions.keep ?? options.keepContainers ?? false;

    const quota = await quotaFor(name, limits.diskBytes);
    const labels = ownerLabels(agentId, 'task', context.taskId, spec.labels);
    if (quota !== undefined) {
      labels[QUOTA_LABEL] = name;
      labels[DISK_BYTES_LABEL] = String(limits.diskBytes);
    }
    const cwd = spec.cwd ?? (quota === undefined ? undefined : QUOTA_WORK_DIR);
    let container: Docker.Container | undefined;
    let socket: Duplex | undefined;
    const abandon = async () => {
      socket?.destroy();
      if (container !== undefined)
        await removeContainer(container.id, quota === undefined ? undefined : name);
      else await quota?.release();
    };
    try {
      const preflight = Promise.all([
        checkBinary(facts, argv[0]!, searchPath),
        spec.cwd === undefined ? undefined : checkDirectory(facts, spec.cwd, quota),
      ]);
      preflight.catch(() => undefined);
      try {
        container = await docker.createContainer({
          name,
          Image: facts.id,
          Entrypoint: argv.slice(0, 1),
          Cmd: argv.slice(1),
          Env: env,
          Labels: { ...labels, 'org.overthere.image': image },
          ...(cwd === undefined ? {} : { WorkingDir: cwd }),
          ...(spec.user === undefined ? {} : { User: String(spec.user) }),
          Tty: tty,
          OpenStdin: stdinPipe,
          StdinOnce: stdinPipe,
          AttachStdin: stdinPipe,
          AttachStdout: true,
          AttachStderr: true,
          HostConfig: hostConfigOf(spec, dockerOptions.network, quota),
        });
      } catch (error) {
        throw engineError(error, `creating a container of ${image}`, 'SPAWN_FAILED', daemon);
      }
      // Attach before start so not a byte of output is missed.
      const attach = container
        .attach({ stream: true, stdin: stdinPipe, stdout: true, stderr: true, hijack: true })
        .then((stream) => {
          socket = stream as unknown as Duplex;
          return socket;
        });
      await Promise.all([preflight, attach]);
      try {
        await container.start();
      } catch (error) {
        throw engineError(
          error,
          `starting ${JSON.stringify(argv[0])} in ${image}`,
          'SPAWN_FAILED',
          daemon,
        );
      }
      if (spec.tty !== undefined) {
        await container.resize({ h: spec.tty.rows, w: spec.tty.cols }).catch((error: unknown) => {
          logger.debug({ err: error }, 'initial resize failed');
        });
      }
    } catch (error) {
      await abandon().catch((cleanupError: unknown) => {
        logger.warn({ err: cleanupError }, 'cleaning up a failed spawn failed');
      });
      throw error;
    }
    const containerId = container.id;
    const managed = createContainerProcess({
      container,
      source: socket!,
      stdinSocket: stdinPipe ? socket : undefined,
      tty,
      pid: undefined,
      handle: { containerId, agentId, tty },
      daemon,
      logger,
      onProgress: () => scheduleCursor(containerId),
      onExit: () => finishEntry(containerId, quota === undefined ? undefined : name, keep),
    });
    live.set(containerId, {
      kind: 'task',
      containerId,
      process: managed,
      memoryBytes: limits.memoryBytes ?? 0,
      diskBytes: limits.diskBytes ?? 0,
    });
    // Disposed while this was starting: it must not outlive the runtime.
    if (state === 'disposed') await managed.kill();
    return managed;
  };

  const adopt = async (
    handle: ProcessHandle,
    context: SpawnContext,
  ): Promise<Process | undefined> => {
    assertOpen();
    const containerId = handle.containerId;
    if (typeof containerId !== 'string' || handle.agentId !== agentId) return undefined;
    const container = docker.getContainer(containerId);
    let inspected: Docker.ContainerInspectInfo;
    try {
      inspected = await container.inspect();
    } catch (error) {
      if (engineStatus(error) === 404) return undefined;
      throw engineError(error, `inspecting container ${containerId}`, 'INTERNAL', daemon);
    }
    const labels = inspected.Config.Labels;
    if (!isOwnedBy(labels, agentId) || labels[KIND_LABEL] !== 'task') return undefined;
    orphans.delete(inspected.Id);
    const quota = labels[QUOTA_LABEL];
    const tty = inspected.Config.Tty;
    const skip = await readCursor(inspected.Id);
    const logs = (await container.logs({
      follow: true,
      stdout: true,
      stderr: true,
    })) as unknown as Readable;
    logger.info({ containerId, taskId: context.taskId, skip }, 'adopted container');
    const memory = inspected.HostConfig.Memory ?? 0;
    const keep = options.keepContainers ?? false;
    const managed = createContainerProcess({
      container,
      source: logs,
      stdinSocket: undefined,
      tty,
      pid: undefined,
      handle: { containerId: inspected.Id, agentId, tty },
      skip,
      daemon,
      logger,
      onProgress: () => scheduleCursor(inspected.Id),
      onExit: () => finishEntry(inspected.Id, quota, keep),
    });
    live.set(inspected.Id, {
      kind: 'task',
      containerId: inspected.Id,
      process: managed,
      memoryBytes: memory,
      diskBytes: Number(labels[DISK_BYTES_LABEL] ?? 0) || 0,
    });
    return managed;
  };

  // ------------------------------------------------------------ sandboxes

  const createSandbox = async (spec: SandboxSpec, context: SpawnContext): Promise<Sandbox> => {
    assertOpen();
    const dockerOptions = dockerOptionsOf(spec.runtimeOptions);
    const limits = checkLimits(spec.limits);
    const image = dockerOptions.image ?? defaultImage;
    const facts = await ensureImage(image, pullPolicyOf(dockerOptions.pull, defaultPull));
    const name = `overthere-sandbox-${nameSafe(agentId, 40)}-${nameSafe(context.taskId, 80)}-${randomBytes(3).toString('hex')}`;
    const quota = await quotaFor(name, limits.diskBytes);
    const quotaName = quota === undefined ? undefined : name;
    const labels = ownerLabels(agentId, 'sandbox', context.taskId, spec.labels);
    if (quotaName !== undefined) labels[QUOTA_LABEL] = quotaName;
    const sandboxEnv = spec.env ?? {};
    const defaultCwd = spec.cwd ?? (quota === undefined ? undefined : QUOTA_WORK_DIR);
    const host = hostConfigOf({ limits }, dockerOptions.network, quota);
    host.Tmpfs = { [PID_DIR]: 'rw,nosuid,nodev,noexec,size=1m,mode=1777' };
    let container: Docker.Container | undefined;
    try {
      container = await docker.createContainer({
        name,
        Image: facts.id,
        Entrypoint: options.sandboxIdleCommand ?? ['sleep', '2147483647'],
        Cmd: [],
        Env: environmentOf(baseEnv, { env: sandboxEnv }, {}),
        Labels: { ...labels, 'org.overthere.image': image },
        ...(defaultCwd === undefined ? {} : { WorkingDir: defaultCwd }),
        HostConfig: host,
      });
      await container.start();
    } catch (error) {
      if (container !== undefined)
        await removeContainer(container.id, quotaName).catch(() => undefined);
      else await quota?.release().catch(() => undefined);
      throw engineError(error, `creating a sandbox of ${image}`, 'SPAWN_FAILED', daemon);
    }
    const sandboxContainer = container;
    const processes = new Set<ManagedProcess>();
    const pidFiles = createPidFileLedger();
    let destroying: Promise<void> | undefined;
    // One exec kept started and waiting, so the next process skips the engine's exec start.
    const prepareWarm = (): Promise<WarmExec | undefined> =>
      startWarmExec({ container: sandboxContainer, cwd: defaultCwd, pidFiles }).catch(
        (error: unknown) => {
          logger.debug({ err: error }, 'starting a warm exec failed');
          return undefined;
        },
      );
    let warm = prepareWarm();
    const sandbox: Sandbox = {
      id: sandboxContainer.id,
      handle: { containerId: sandboxContainer.id, agentId },
      async spawn(taskSpec) {
        if (destroying !== undefined)
          throw new OverthereError('NOT_FOUND', 'the sandbox was destroyed');
        assertOpen();
        // Checked for typos only: image, network and limits are the sandbox's.
        dockerOptionsOf(taskSpec.runtimeOptions);
        const argv = argvOf(taskSpec);
        if (taskSpec.tty !== undefined) checkTtySize(taskSpec.tty, 'tty');
        const processEnv = environmentOf({ ...baseEnv, ...sandboxEnv }, taskSpec, {});
        const user = taskSpec.user === undefined ? undefined : String(taskSpec.user);
        const cwd = taskSpec.cwd ?? defaultCwd;
        let ready: WarmExec | undefined;
        if (canRunWarm({ argv, env: processEnv, tty: taskSpec.tty, user, cwd, defaultCwd })) {
          // Taken before the await, so two spawns never share one.
          const taken = warm;
          warm = prepareWarm();
          ready = await taken;
          if (ready !== undefined && !ready.usable()) {
            ready.socket.destroy();
            pidFiles.ended(ready.pidFile);
            ready = undefined;
          }
        }
        const child = await startExecProcess({
          container: sandboxContainer,
          argv,
          env: processEnv,
          cwd,
          user,
          stdin: taskSpec.stdin === 'pipe',
          tty: taskSpec.tty,
          pidFiles,
          daemon,
          logger,
          ...(ready === undefined ? {} : { warm: ready }),
        });
        processes.add(child);
        void child.wait().then(() => processes.delete(child));
        return child;
      },
      destroy() {
        destroying ??= (async () => {
          live.delete(sandboxContainer.id);
          void warm.then((unused) => unused?.socket.destroy());
          for (const child of processes) child.markKilled?.();
          await removeContainer(sandboxContainer.id, quotaName);
          await Promise.all([...processes].map((child) => child.wait()));
        })();
        return destroying;
      },
    };
    live.set(sandboxContainer.id, {
      kind: 'sandbox',
      containerId: sandboxContainer.id,
      sandbox,
      memoryBytes: limits.memoryBytes ?? 0,
      diskBytes: limits.diskBytes ?? 0,
    });
    return sandbox;
  };

  // ------------------------------------------------------------ lifecycle

  const removeUnadopted = async (): Promise<string[]> => {
    const removed: string[] = [];
    for (const [containerId, orphan] of [...orphans]) {
      orphans.delete(containerId);
      try {
        await removeContainer(containerId, orphan.quota);
        removed.push(containerId);
        logger.info({ containerId }, 'removed a container nobody adopted');
      } catch (error) {
        logger.warn({ err: error, containerId }, 'removing a leftover container failed');
      }
    }
    return removed;
  };

  // Find this agent's containers from an earlier run.
  const referencedQuotas = new Set<string>();
  try {
    const found = await docker.listContainers({ all: true, filters: ownerFilter(agentId) });
    for (const summary of found) {
      const labels = summary.Labels;
      if (!isOwnedBy(labels, agentId)) continue;
      const quota = labels[QUOTA_LABEL];
      if (labels[KIND_LABEL] === 'task') {
        orphans.set(summary.Id, { quota });
        if (quota !== undefined) referencedQuotas.add(quota);
      } else {
        await removeContainer(summary.Id, quota);
      }
    }
    for (const quota of await listQuotaVolumes(quotaDir)) {
      if (!referencedQuotas.has(quota)) await releaseQuotaVolume(quotaDir, quota);
    }
  } catch (error) {
    throw engineError(error, 'looking for containers of an earlier run', 'UNAVAILABLE', daemon);
  }
  const adoptTimer =
    orphans.size === 0
      ? undefined
      : setTimeout(() => void removeUnadopted(), options.adoptWindowMs ?? 30_000);
  adoptTimer?.unref();

  const capacity = async (): Promise<RuntimeCapacity> => {
    let memoryReserved = 0;
    let diskReserved = 0;
    for (const entry of live.values()) {
      memoryReserved += entry.memoryBytes;
      diskReserved += entry.diskBytes;
    }
    const memoryTotal = options.memoryBytes ?? info.MemTotal ?? 0;
    let diskFree = Number.POSITIVE_INFINITY;
    try {
      const stats = await statfs(quotaDir);
      diskFree = stats.bavail * stats.bsize;
    } catch (error) {
      logger.debug({ err: error }, 'statfs of the quota dir failed');
    }
    const diskTotal = Math.min(diskFree, options.diskBytes ?? Number.POSITIVE_INFINITY);
    const result: RuntimeCapacity = { memoryBytes: Math.max(0, memoryTotal - memoryReserved) };
    if (Number.isFinite(diskTotal)) result.diskBytes = Math.max(0, diskTotal - diskReserved);
    return result;
  };

  const removeProbes = async () => {
    const all = [...probes.values()];
    probes.clear();
    pathChecks.clear();
    await Promise.all(
      all.map((probe) =>
        probe.then(
          (container) => container.remove({ force: true }).catch(() => undefined),
          () => undefined,
        ),
      ),
    );
  };

  let disposing: Promise<void> | undefined;
  const dispose = () => {
    disposing ??= (async () => {
      if (state === 'open') state = 'disposed';
      if (adoptTimer) clearTimeout(adoptTimer);
      const entries = [...live.values()];
      await Promise.all(
        entries.map(async (entry) => {
          if (entry.sandbox) return entry.sandbox.destroy();
          if (entry.process) {
            await entry.process.kill().catch(() => undefined);
            await withTimeout(entry.process.wait(), 15_000, 'container did not end').catch(
              () => undefined,
            );
          }
        }),
      );
      await removeProbes();
      while (cleanups.size > 0) await Promise.all([...cleanups]);
      for (const timer of cursorTimers.values()) clearTimeout(timer);
      cursorTimers.clear();
      // Leave no empty state behind (a cursor or quota image left means a container still needs it).
      for (const dir of [cursorDir, quotaDir, stateDir]) await rmdir(dir).catch(() => undefined);
    })();
    return disposing;
  };

  const detach = async () => {
    if (state !== 'open') return;
    state = 'detached';
    if (adoptTimer) clearTimeout(adoptTimer);
    for (const timer of cursorTimers.values()) clearTimeout(timer);
    cursorTimers.clear();
    const saves: Promise<void>[] = [];
    for (const entry of live.values()) {
      if (entry.process) saves.push(saveCursor(entry.containerId, entry.process.detach()));
    }
    live.clear();
    await Promise.all(saves);
    await removeProbes();
    while (cleanups.size > 0) await Promise.all([...cleanups]);
  };

  const runtime: DockerRuntime = {
    id: 'docker',
    agentId,
    capabilities: CAPABILITIES,
    spawn,
    capacity,
    createSandbox,
    adopt,
    removeUnadopted,
    detach,
    dispose,
    on(event, listener) {
      events.on(event, listener);
      return runtime;
    },
    off(event, listener) {
      events.off(event, listener);
      return runtime;
    },
  };
  return runtime;
}
