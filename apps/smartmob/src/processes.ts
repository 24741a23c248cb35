/**
 * smartmob processes on top of the supervisor: the start pipeline (download →
 * unpack → Procfile → start), the agent's records, PORT assignment, and the
 * console of each process as numbered lines. Restarts with backoff, kill
 * escalation, durable output and restoring services after an agent restart
 * are the supervisor's (restart policy `always`, a file task store).
 */
import { randomUUID } from 'node:crypto';
import { readFile, mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import {
  OverthereError,
  isFinalState,
  noopLogger,
  type Logger,
  type Supervisor,
  type TaskInfo,
} from '@overthere/core';
import { detectArchiveFormat, downloadArchive, readHead } from './download.js';
import { extractArchive } from './extract.js';
import { LineIndex, LineSplitter, type ConsoleLine } from './console-lines.js';
import { parseProcfile, ProcfileError } from './procfile.js';
import {
  PIPELINE_STATES,
  type ProcessRecord,
  type ProcessState,
  type ProcessStore,
} from './process-store.js';

/** Limits on what a source archive may be. */
export interface SourceLimits {
  /** Whole download, headers and body. */
  downloadTimeoutMs: number;
  /** Largest archive downloaded. */
  maxArchiveBytes: number;
  /** Most bytes the archive may unpack to. */
  maxUnpackedBytes: number;
  /** Most entries (files, directories, links) in the archive. */
  maxEntries: number;
}

/** How a process is restarted and stopped. */
export interface ProcessPolicy {
  /** First restart delay; doubles per consecutive quick exit. */
  restartInitialDelayMs: number;
  /** Cap on the restart delay. */
  restartMaxDelayMs: number;
  /** A run this long resets the delay. */
  restartResetAfterMs: number;
  /** SIGTERM to SIGKILL on delete and shutdown. */
  killGraceMs: number;
}

/** Options for {@link createProcessManager}. */
export interface ProcessManagerOptions {
  supervisor: Supervisor;
  store: ProcessStore;
  /** Archives and unpacked sources go under `<dataDir>/processes/`. */
  dataDir: string;
  limits: SourceLimits;
  policy: ProcessPolicy;
  logger?: Logger;
  /** Gets every console line (the agent logs them with slug and time). */
  onLine?: (slug: string, line: Buffer, time: number) => void;
}

/** A create request, validated. */
export interface CreateProcessRequest {
  app: string;
  node: string;
  processType: string;
  sourceUrl: string;
  env: Record<string, string>;
}

/** A process as the routes show it. */
export interface ProcessView {
  record: ProcessRecord;
  /** The task running it, once started. */
  task: TaskInfo | undefined;
}

/** Where a console reader starts: the task's log, the offset and the line number there. */
export interface ConsoleStart {
  taskId: string;
  offset: number;
  line: number;
}

/** The process table the routes use. */
export interface ProcessManager {
  /** Register and start the pipeline; `CONFLICT` when the slug is taken. Resolves with the `pending` record. */
  create(request: CreateProcessRequest): Promise<ProcessRecord>;
  get(slug: string): ProcessView | undefined;
  list(): ProcessView[];
  /** Stop (SIGTERM, grace, SIGKILL), forget and remove files; false when there was none. */
  delete(slug: string): Promise<boolean>;
  /**
   * Resolves once the process has a task (or undefined if it failed or was
   * deleted first), with where to read to reach line `cursor`.
   */
  consoleStart(
    slug: string,
    cursor: number,
    signal: AbortSignal,
  ): Promise<ConsoleStart | undefined>;
  /** Restart pipelines cut short by an agent stop; start processes whose task is missing. */
  restore(): Promise<void>;
  /** Stop pipelines and console followers (the supervisor stops the tasks). */
  close(): Promise<void>;
}

/** Letters, digits, `_`, `-` and `.` (not `..`): slugs appear in URLs and logs. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;

/** Check an app or node name; `INVALID_ARGUMENT` naming the field. */
export function checkName(field: string, value: string): void {
  if (!NAME.test(value) || value.includes('..')) {
    throw new OverthereError(
      'INVALID_ARGUMENT',
      `${field} must be 1 to 100 letters, digits, "_", "-" or "." (no ".."), starting with a letter, digit or "_"`,
    );
  }
}

/** A free TCP port on loopback, for `PORT`. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface Live {
  /** Aborts the pipeline (delete, shutdown). */
  controller: AbortController;
  /** Settles when the pipeline is over. */
  pipeline: Promise<void>;
  /** Set while a delete is in progress. */
  deleting?: Promise<boolean>;
  /** Woken when the record changes (task started, failed, deleted). */
  waiters: Set<() => void>;
  /** Lines of the task's console, counted by the follower. */
  index: LineIndex | undefined;
  follower: AbortController | undefined;
}

/** The command as run: a shell, stderr into stdout so the console is one ordered stream. */
export function shellCommand(command: string): string[] {
  return ['/bin/sh', '-c', `exec 2>&1\n${command}`];
}

export function createProcessManager(options: ProcessManagerOptions): ProcessManager {
  const { supervisor, store, limits, policy } = options;
  const logger = options.logger ?? noopLogger;
  const processesDir = path.join(options.dataDir, 'processes');
  const live = new Map<string, Live>();
  let closing = false;

  const dirOf = (record: ProcessRecord) => path.join(processesDir, record.dirName);

  function liveOf(slug: string): Live {
    let entry = live.get(slug);
    if (!entry) {
      entry = {
        controller: new AbortController(),
        pipeline: Promise.resolve(),
        waiters: new Set(),
        index: undefined,
        follower: undefined,
      };
      live.set(slug, entry);
    }
    return entry;
  }

  function wake(slug: string): void {
    const entry = live.get(slug);
    if (!entry) return;
    for (const waiter of entry.waiters) waiter();
    entry.waiters.clear();
  }

  async function setState(
    record: ProcessRecord,
    state: ProcessState,
    error?: string,
  ): Promise<void> {
    // A deleted process stays deleted.
    if (store.get(record.slug) !== record) return;
    record.state = state;
    if (error === undefined) delete record.error;
    else record.error = error;
    await store.put(record);
    if (error !== undefined) {
      logger.warn({ slug: record.slug, state, error }, 'process failed to start');
    } else {
      logger.info({ slug: record.slug, state }, 'process state');
    }
    wake(record.slug);
  }

  /** Follow the task's console from its first byte: count lines, hand them to `onLine`. */
  function follow(record: ProcessRecord, taskId: string, restored: boolean): void {
    const entry = liveOf(record.slug);
    if (entry.follower) return;
    const controller = new AbortController();
    entry.follower = controller;
    const index = new LineIndex();
    entry.index = index;
    // Lines written before this agent started were logged by the one before it.
    const loggedFrom = restored ? supervisor.output(taskId).bytes('stdout') : 0;
    let splitter = new LineSplitter(0);
    const deliver = (line: ConsoleLine, time: number) => {
      index.add(line.endOffset);
      if (line.endOffset > loggedFrom) options.onLine?.(record.slug, line.text, time);
    };
    void (async () => {
      for await (const event of supervisor
        .output(taskId)
        .read({ streams: ['stdout'], fromOffset: 0, follow: true, signal: controller.signal })) {
        if (event.type !== 'frame') continue;
        // Output dropped past the disk cap: start cutting again where the kept bytes start.
        if (event.offset !== splitter.nextOffset) splitter = new LineSplitter(event.offset);
        for (const line of splitter.push(event.data)) deliver(line, event.time);
      }
      const last = splitter.flush();
      if (last && !controller.signal.aborted) deliver(last, Date.now());
    })().catch((error: unknown) => {
      if (!controller.signal.aborted && !OverthereError.hasCode(error, 'NOT_FOUND')) {
        logger.warn({ err: error, slug: record.slug }, 'console follower failed');
      }
    });
  }

  async function startTask(record: ProcessRecord, signal: AbortSignal): Promise<void> {
    const source = path.join(dirOf(record), 'source');
    let text: string;
    try {
      text = await readFile(path.join(source, 'Procfile'), 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') {
        await setState(record, 'no procfile', 'the archive has no Procfile at its root');
        return;
      }
      throw error;
    }
    let entry;
    try {
      entry = parseProcfile(text).get(record.processType);
    } catch (error) {
      if (!(error instanceof ProcfileError)) throw error;
      await setState(record, 'invalid procfile', error.message);
      return;
    }
    if (entry === undefined) {
      await setState(
        record,
        'unknown process type',
        `the Procfile has no process type ${JSON.stringify(record.processType)}`,
      );
      return;
    }
    if (signal.aborted) return;
    let task: TaskInfo;
    try {
      task = await supervisor.create({
        command: shellCommand(entry.command),
        cwd: source,
        // The agent's environment (the runtime's base), PORT, the Procfile's, the request's.
        env: { PORT: String(record.port), ...entry.env, ...record.env },
        restart: {
          mode: 'always',
          initialDelayMs: policy.restartInitialDelayMs,
          maxDelayMs: policy.restartMaxDelayMs,
          resetAfterMs: policy.restartResetAfterMs,
          factor: 2,
        },
        kill: { signal: 'SIGTERM', graceMs: policy.killGraceMs },
        labels: { app: 'smartmob', slug: record.slug },
      });
    } catch (error) {
      if (!OverthereError.hasCode(error, 'SPAWN_FAILED')) throw error;
      await setState(record, 'start failure', (error as Error).message);
      return;
    }
    if (store.get(record.slug) !== record) {
      // Deleted while starting.
      await supervisor.remove(task.id).catch(() => undefined);
      return;
    }
    record.taskId = task.id;
    follow(record, task.id, false);
    await setState(record, 'processing');
  }

  async function runPipeline(record: ProcessRecord, signal: AbortSignal): Promise<void> {
    const dir = dirOf(record);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const archive = path.join(dir, 'archive');
    await setState(record, 'downloading');
    let contentType: string | undefined;
    try {
      ({ contentType } = await downloadArchive({
        url: record.sourceUrl,
        file: archive,
        timeoutMs: limits.downloadTimeoutMs,
        maxBytes: limits.maxArchiveBytes,
        signal,
      }));
    } catch (error) {
      if (signal.aborted) return;
      await setState(record, 'download failure', (error as Error).message);
      return;
    }
    if (signal.aborted) return;
    await setState(record, 'unpacking');
    const format = detectArchiveFormat(await readHead(archive), contentType);
    const source = path.join(dir, 'source');
    try {
      if (format === undefined) {
        throw new Error(
          `not an archive this agent unpacks (zip, tar, tar.gz, tar.bz2, tar.xz); content type ${contentType ?? 'none'}`,
        );
      }
      await extractArchive({
        file: archive,
        format,
        target: source,
        maxEntries: limits.maxEntries,
        maxBytes: limits.maxUnpackedBytes,
        signal,
      });
    } catch (error) {
      // Nothing half-unpacked stays around.
      await rm(source, { recursive: true, force: true });
      if (signal.aborted) return;
      await setState(record, 'unpack failure', (error as Error).message);
      return;
    } finally {
      await rm(archive, { force: true });
    }
    if (signal.aborted) return;
    await startTask(record, signal);
  }

  function launch(record: ProcessRecord, run: (signal: AbortSignal) => Promise<void>): void {
    const entry = liveOf(record.slug);
    const signal = entry.controller.signal;
    // After the 201 went out: the client sees `pending` first.
    entry.pipeline = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => run(signal))
      .catch(async (error: unknown) => {
        if (signal.aborted) return;
        logger.error({ err: error, slug: record.slug }, 'process start failed');
        await setState(record, 'start failure', (error as Error).message).catch(() => undefined);
      });
  }

  function viewOf(record: ProcessRecord): ProcessView {
    let task: TaskInfo | undefined;
    if (record.taskId !== undefined) {
      try {
        task = supervisor.get(record.taskId);
      } catch {
        task = undefined;
      }
    }
    return { record, task };
  }

  async function remove(record: ProcessRecord, entry: Live): Promise<boolean> {
    entry.controller.abort();
    await entry.pipeline;
    await store.delete(record.slug);
    wake(record.slug);
    if (record.taskId !== undefined) {
      // SIGTERM to the group, the grace period, SIGKILL; then the output goes.
      await supervisor.remove(record.taskId).catch((error: unknown) => {
        if (!OverthereError.hasCode(error, 'NOT_FOUND')) throw error;
      });
    }
    entry.follower?.abort();
    live.delete(record.slug);
    await rm(dirOf(record), { recursive: true, force: true });
    logger.info({ slug: record.slug }, 'process deleted');
    return true;
  }

  return {
    async create(request) {
      if (closing) throw new OverthereError('UNAVAILABLE', 'the agent is shutting down');
      checkName('app', request.app);
      checkName('node', request.node);
      const slug = `${request.app}.${request.node}`;
      if (store.get(slug) !== undefined || live.has(slug)) {
        throw new OverthereError('CONFLICT', `process ${slug} exists already`, {
          details: { slug },
        });
      }
      const used = new Set(store.list().map((record) => record.port));
      let port = await freePort();
      while (used.has(port)) port = await freePort();
      if (store.get(slug) !== undefined) {
        throw new OverthereError('CONFLICT', `process ${slug} exists already`);
      }
      const record: ProcessRecord = {
        slug,
        app: request.app,
        node: request.node,
        processType: request.processType,
        sourceUrl: request.sourceUrl,
        env: request.env,
        state: 'pending',
        dirName: randomUUID(),
        port,
        createdAt: new Date().toISOString(),
      };
      liveOf(slug);
      await store.put(record);
      logger.info({ slug, app: record.app, node: record.node }, 'process created');
      const snapshot = { ...record };
      launch(record, (signal) => runPipeline(record, signal));
      return snapshot;
    },

    get(slug) {
      const record = store.get(slug);
      return record === undefined ? undefined : viewOf(record);
    },

    list() {
      return store.list().map(viewOf);
    },

    async delete(slug) {
      const record = store.get(slug);
      const entry = live.get(slug) ?? (record ? liveOf(slug) : undefined);
      if (entry?.deleting) return entry.deleting;
      if (record === undefined || entry === undefined) return false;
      entry.deleting = remove(record, entry);
      return entry.deleting;
    },

    async consoleStart(slug, cursor, signal) {
      for (;;) {
        const record = store.get(slug);
        if (record === undefined || signal.aborted) return undefined;
        if (record.taskId !== undefined) {
          const index = live.get(slug)?.index;
          const found = index?.seek(cursor) ?? { offset: 0, line: 0 };
          return { taskId: record.taskId, ...found };
        }
        if (!PIPELINE_STATES.has(record.state)) return undefined;
        const entry = liveOf(slug);
        await new Promise<void>((resolve) => {
          const done = () => {
            signal.removeEventListener('abort', done);
            entry.waiters.delete(done);
            resolve();
          };
          entry.waiters.add(done);
          signal.addEventListener('abort', done, { once: true });
        });
      }
    },

    async restore() {
      // Tasks of this app that no record claims (an agent that died between the two writes).
      const claimed = new Set(store.list().map((record) => record.taskId));
      for (const task of supervisor.list({ labels: { app: 'smartmob' } })) {
        if (!claimed.has(task.id)) await supervisor.remove(task.id).catch(() => undefined);
      }
      for (const record of store.list()) {
        if (PIPELINE_STATES.has(record.state)) {
          logger.info({ slug: record.slug }, 'restarting an interrupted start');
          record.state = 'pending';
          launch(record, (signal) => runPipeline(record, signal));
          continue;
        }
        if (record.state !== 'processing') continue;
        const task = viewOf(record).task;
        if (task !== undefined && !isFinalState(task.state)) {
          // The supervisor has started it again (restart policy `always`).
          follow(record, task.id, true);
          continue;
        }
        logger.info({ slug: record.slug }, 'starting a process whose task is gone');
        if (task !== undefined) await supervisor.remove(task.id).catch(() => undefined);
        delete record.taskId;
        launch(record, (signal) => startTask(record, signal));
      }
    },

    async close() {
      closing = true;
      for (const entry of live.values()) entry.controller.abort();
      await Promise.all([...live.values()].map((entry) => entry.pipeline));
      for (const entry of live.values()) entry.follower?.abort();
    },
  };
}
