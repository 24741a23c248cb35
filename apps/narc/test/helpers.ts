/**
 * Test fixtures for narc: nats-server processes of our own on free loopback
 * ports (alone or as a cluster), `narc` run from source as a real process,
 * NATS publishing, the OpenSSH client (through sshpass; in a node-pty terminal
 * for interactive shells) and the docker CLI to look at containers.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { exitOf, spawnSource, testEnv, type Exit } from '../../../test-support/app-process.js';
import {
  interactiveSsh as openInteractiveSsh,
  runSsh as runOpenSsh,
  type InteractiveSsh,
} from '../../../test-support/openssh.js';
import { waitFor } from '../../../test-support/wait-for.js';

export { waitFor };

export type { InteractiveSsh } from '../../../test-support/openssh.js';

const run = promisify(execFile);
const MAIN = path.join('apps', 'narc', 'src', 'main.ts');

/** The image `scripts/services.sh up` builds. */
export const TEST_IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';

// ---- nats-server ----------------------------------------------------------

export { freePort, startNatsServer } from '../../../test-support/nats-server.js';
export type { NatsServerProcess } from '../../../test-support/nats-server.js';

/** A NATS connection for the test itself (reconnecting forever). */
export function natsClient(servers: string | string[]): Promise<NatsConnection> {
  return connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
}

/** Publish a JSON (or raw string) payload and flush. */
export async function publish(
  connection: NatsConnection,
  subject: string,
  payload: unknown,
): Promise<void> {
  connection.publish(subject, typeof payload === 'string' ? payload : JSON.stringify(payload));
  await connection.flush();
}

// ---- narc -----------------------------------------------------------------

/** A `narc` process run from source. */
export interface NarcProcess {
  readonly agentId: string;
  readonly sshPort: number;
  readonly dataDir: string;
  readonly process: ChildProcess;
  /** Everything it wrote to stderr (its JSON log lines and notices). */
  log(): string;
  /** Resolves once a log line matching `pattern` appears after `since` (a length of `log()`). */
  waitForLog(pattern: RegExp, since?: number, timeoutMs?: number): Promise<string>;
  exited: Promise<Exit>;
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
  /** Stop (if running) and remove the data dir and any container left behind. */
  dispose(): Promise<void>;
}

/** Options for {@link startNarc}: flags as `--name value` pairs plus the NATS URL(s). */
export interface StartNarcOptions {
  nats: string | string[];
  agentId: string;
  /** More flags, e.g. `['--memory-mb', '512']`. */
  args?: readonly string[];
  /** Extra environment (`NARC_*`). */
  env?: Record<string, string>;
}

/** Start `narc` and wait until it says it listens for SSH. */
export async function startNarc(options: StartNarcOptions): Promise<NarcProcess> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'narc-test-'));
  const args = [
    '--nats',
    [options.nats].flat().join(','),
    '--agent-id',
    options.agentId,
    '--data-dir',
    dataDir,
    '--ssh-port',
    '0',
    '--image',
    TEST_IMAGE,
    '--log-level',
    'debug',
    ...(options.args ?? []),
  ];
  const child = spawnSource(MAIN, args, testEnv('NARC_', options.env ?? {}));
  let log = '';
  const listeners = new Set<() => void>();
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk;
    for (const listener of listeners) listener();
  });
  const exited = exitOf(child);
  const waitForLog = (pattern: RegExp, since = 0, timeoutMs = 20_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const match = pattern.exec(log.slice(since));
        if (!match) return;
        done();
        resolve(match[0]);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(pattern)} in the narc log:\n${log.slice(-3000)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      void exited.then(() => {
        check();
        if (listeners.has(check)) {
          done();
          reject(new Error(`narc exited without ${String(pattern)}:\n${log.slice(since)}`));
        }
      });
      check();
    });
  const line = await waitForLog(/listening for ssh on 127\.0\.0\.1:(\d+)/);
  const sshPort = Number(/:(\d+)$/.exec(line)?.[1]);
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return {
    agentId: options.agentId,
    sshPort,
    dataDir,
    process: child,
    log: () => log,
    waitForLog,
    exited,
    stop,
    async dispose() {
      await stop();
      await removeContainers(options.agentId);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// ---- docker ---------------------------------------------------------------

/** Ids of the containers (running or not) of narc task `task`. */
export async function taskContainers(task: string): Promise<string[]> {
  const { stdout } = await run('docker', [
    'ps',
    '-aq',
    '--filter',
    `label=org.overthere.label.narc.task=${task}`,
  ]);
  return stdout.split('\n').filter((line) => line !== '');
}

/** Remove whatever containers an agent left (after a SIGKILL). */
export async function removeContainers(agentId: string): Promise<void> {
  const { stdout } = await run('docker', [
    'ps',
    '-aq',
    '--filter',
    `label=org.overthere.agent=narc-${agentId}`,
  ]);
  const ids = stdout.split('\n').filter((line) => line !== '');
  if (ids.length > 0) await run('docker', ['rm', '-f', ...ids]);
}

// ---- ssh ------------------------------------------------------------------

/** What the ssh client did. */
export interface SshResult {
  /** 255 for an ssh-level failure (auth, connection), else the remote status. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `sshpass -p TOKEN ssh -p PORT TASK@127.0.0.1 COMMAND` to its end. */
export async function runSsh(options: {
  port: number;
  task: string;
  token: string;
  command: string;
  stdin?: string;
  timeoutMs?: number;
}): Promise<SshResult> {
  const result = await runOpenSsh({
    server: { port: options.port },
    user: options.task,
    password: options.token,
    command: options.command,
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  return { code: result.code, stdout: result.stdout.toString(), stderr: result.stderr };
}

/** Start `sshpass … ssh -tt TASK@127.0.0.1` in a node-pty terminal of `cols`×`rows`. */
export function interactiveSsh(options: {
  port: number;
  task: string;
  token: string;
  cols?: number;
  rows?: number;
}): InteractiveSsh {
  return openInteractiveSsh({
    server: { port: options.port },
    user: options.task,
    password: options.token,
    ...(options.cols === undefined ? {} : { cols: options.cols }),
    ...(options.rows === undefined ? {} : { rows: options.rows }),
  });
}
