/**
 * Test helpers: a real `levityd` subprocess and our `levity` CLI as a
 * subprocess (both the TypeScript sources run by tsx from the repository
 * root), and a gRPC client built here straight from the .proto with
 * @grpc/grpc-js and @grpc/proto-loader — independent of the app's own client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  REPO_ROOT,
  exitOf,
  spawnSource,
  testEnv,
  type Exit,
} from '../../../test-support/app-process.js';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll } from 'vitest';
import { waitFor } from '../../../test-support/wait-for.js';

export { waitFor };

export const PROTO_FILE = fileURLToPath(new URL('../proto/levity.proto', import.meta.url));
const LEVITYD = path.join('apps', 'levity', 'src', 'levityd-main.ts');
const LEVITY = path.join('apps', 'levity', 'src', 'levity-main.ts');

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export interface CliResult extends Exit {
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

async function collect(child: ChildProcess): Promise<CliResult> {
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [exit] = await Promise.all([
    exitOf(child),
    new Promise((resolve) => child.stdout?.once('close', resolve)),
    new Promise((resolve) => child.stderr?.once('close', resolve)),
  ]);
  const stdoutBytes = Buffer.concat(out);
  return { ...exit, stdout: stdoutBytes.toString('utf8'), stderr, stdoutBytes };
}

/** Run our `levity` CLI to its end. */
export function levity(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return collect(spawnSource(LEVITY, args, testEnv('LEVITY_', env)));
}

/** Run `levityd` to its end (for --help and refusals). */
export function runLevityd(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return collect(spawnSource(LEVITYD, args, testEnv('LEVITY_', env)));
}

export interface RunningDaemon {
  /** `127.0.0.1:PORT`, for clients. */
  address: string;
  port: number;
  process: ChildProcess;
  stderr(): string;
  exited: Promise<Exit>;
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

const running = new Set<RunningDaemon>();

/** Kill every daemon a test file left running (afterAll). */
export async function stopAllDaemons(): Promise<void> {
  await Promise.all([...running].map((daemon) => daemon.stop('SIGKILL')));
}

/**
 * Start `levityd` (default address `127.0.0.1:0`) and wait for the original's
 * `Listening on HOST:PORT` line.
 */
export async function startLevityd(
  args: readonly string[] = [],
  env: Record<string, string> = {},
  address = '127.0.0.1:0',
): Promise<RunningDaemon> {
  const child = spawnSource(LEVITYD, [address, ...args], testEnv('LEVITY_', env));
  let stderr = '';
  const exited = exitOf(child);
  child.stdout?.resume();
  const listening = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`levityd did not start in time:\n${stderr}`));
    }, 20_000);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /Listening on (\S+)\n/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((exit) => {
      clearTimeout(timer);
      reject(new Error(`levityd exited (${JSON.stringify(exit)}) before listening:\n${stderr}`));
    });
  });
  const port = Number(/:(\d+)$/.exec(listening)?.[1]);
  const daemon: RunningDaemon = {
    address: `127.0.0.1:${port}`,
    port,
    process: child,
    stderr: () => stderr,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  running.add(daemon);
  void exited.then(() => running.delete(daemon));
  return daemon;
}

// ---------------------------------------------------------------------------
// An independent client, generated from the .proto at test time.

export interface QueryResponse {
  status_code?: string;
  exit_code?: number;
}

export interface ProtoClient {
  raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  startTask: (request: Record<string, unknown>) => Promise<{ task_id?: { id?: string } }>;
  queryTask: (request: Record<string, unknown>) => Promise<QueryResponse>;
  signalTask: (request: Record<string, unknown>) => Promise<Record<string, unknown>>;
  fetchLogs: (request: Record<string, unknown>) => Promise<{ stdout?: Buffer; stderr?: Buffer }>;
  /** Every chunk of FollowLogs until the stream ends. */
  followLogs: (request: Record<string, unknown>) => Promise<{ stdout?: Buffer; stderr?: Buffer }[]>;
  close: () => void;
}

export interface ProtoClientOptions {
  token?: string;
  credentials?: grpc.ChannelCredentials;
  timeoutMs?: number;
}

/** A client for `levity.TaskManager` from the .proto file, with no code of the app. */
export function protoClient(address: string, options: ProtoClientOptions = {}): ProtoClient {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: false,
  });
  const levityPackage = grpc.loadPackageDefinition(definition).levity as grpc.GrpcObject;
  const Client = levityPackage.TaskManager as grpc.ServiceClientConstructor;
  const raw = new Client(
    address,
    options.credentials ?? grpc.credentials.createInsecure(),
  ) as ProtoClient['raw'];
  const metadata = () => {
    const result = new grpc.Metadata();
    if (options.token !== undefined) result.set('authorization', `Bearer ${options.token}`);
    return result;
  };
  const unary =
    <T>(method: string) =>
    (request: Record<string, unknown>) =>
      new Promise<T>((resolve, reject) => {
        (raw[method] as (...args: unknown[]) => unknown).call(
          raw,
          request,
          metadata(),
          { deadline: Date.now() + (options.timeoutMs ?? 5_000) },
          (error: grpc.ServiceError | null, response: T) =>
            error ? reject(error) : resolve(response),
        );
      });
  return {
    raw,
    startTask: unary('StartTask'),
    queryTask: unary('QueryTask'),
    signalTask: unary('SignalTask'),
    fetchLogs: unary('FetchLogs'),
    async followLogs(request) {
      const stream = (
        raw.FollowLogs as (...args: unknown[]) => grpc.ClientReadableStream<never>
      ).call(raw, request, metadata(), {});
      const chunks: { stdout?: Buffer; stderr?: Buffer }[] = [];
      for await (const chunk of stream as AsyncIterable<{ stdout?: Buffer; stderr?: Buffer }>) {
        chunks.push(chunk);
      }
      return chunks;
    },
    close: () => raw.close(),
  };
}

/** `{task_id: {id}}` */
export const handle = (id: string) => ({ task_id: { id } });

/** Poll QueryTask until the state is one of `states`; returns the response. */
export function waitForState(
  client: ProtoClient,
  id: string,
  states: readonly string[],
  timeoutMs = 10_000,
): Promise<QueryResponse> {
  return waitFor(
    `task ${id} to be ${states.join(' or ')}`,
    async () => {
      const response = await client.queryTask(handle(id));
      return states.includes(response.status_code ?? 'NotStarted') ? response : undefined;
    },
    timeoutMs,
  );
}

/** A fresh temporary directory and its removal. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

function run(command: string, args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')}: ${stderr}`)),
    );
  });
}

/** Files of a test PKI made with `openssl`: a server CA and a client CA, each with one certificate. */
export interface TestPki {
  dir: string;
  /** CA that signed the server certificate. */
  caCert: string;
  /** For 127.0.0.1 and localhost. */
  serverCert: string;
  serverKey: string;
  /** CA that signed the client certificate. */
  clientCaCert: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate from a CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
}

/** Make a throwaway PKI in `dir` with openssl (EC P-256 keys, valid one day). */
export async function makePki(dir: string): Promise<TestPki> {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = async (name: string) =>
    run(
      'openssl',
      [
        'req',
        '-x509',
        ...key,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-subj',
        `/CN=${name}`,
      ],
      dir,
    );
  const leaf = async (name: string, caName: string, extensions: string) => {
    await writeFile(path.join(dir, `${name}.ext`), extensions);
    await run(
      'openssl',
      ['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`],
      dir,
    );
    await run(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${caName}.pem`,
        '-CAkey',
        `${caName}.key`,
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  };
  await Promise.all([ca('server-ca'), ca('client-ca'), ca('stranger-ca')]);
  await Promise.all([
    leaf(
      'server',
      'server-ca',
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    ),
    leaf('client', 'client-ca', 'extendedKeyUsage=clientAuth\n'),
    leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n'),
  ]);
  const file = (name: string) => path.join(dir, name);
  return {
    dir,
    caCert: file('server-ca.pem'),
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    clientCaCert: file('client-ca.pem'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
    strangerCert: file('stranger.pem'),
    strangerKey: file('stranger.key'),
  };
}

/** One levityd for a test file, with a .proto client and (optionally) a temp dir. */
export interface LevitydFixture {
  readonly daemon: RunningDaemon;
  readonly client: ProtoClient;
  /** Present when `tempPrefix` was given. */
  readonly temp: { dir: string; remove(): Promise<void> };
  /** StartTask for `argv` (binary, then its arguments); resolves to the task id. */
  start(argv: string[]): Promise<string>;
}

/**
 * Start a levityd before the file's tests and stop it (and remove the temp
 * dir) after them. `args` may use the temp dir, e.g. for `--data-dir`.
 */
export function useLevityd(
  options: { tempPrefix?: string; args?: (tempDir: string | undefined) => string[] } = {},
): LevitydFixture {
  let daemon: RunningDaemon | undefined;
  let client: ProtoClient | undefined;
  let temp: { dir: string; remove(): Promise<void> } | undefined;
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined)
      throw new Error(`levityd fixture: no ${what} (used outside the tests?)`);
    return value;
  };
  beforeAll(async () => {
    if (options.tempPrefix !== undefined) temp = await tempDir(options.tempPrefix);
    daemon = await startLevityd(options.args?.(temp?.dir) ?? []);
    client = protoClient(daemon.address);
  });
  afterAll(async () => {
    client?.close();
    await stopAllDaemons();
    await temp?.remove();
  });
  return {
    get daemon() {
      return ready(daemon, 'daemon');
    },
    get client() {
      return ready(client, 'client');
    },
    get temp() {
      return ready(temp, 'temp dir');
    },
    async start(argv) {
      const response = await ready(client, 'client').startTask({
        binary: argv[0],
        args: argv.slice(1),
      });
      return response.task_id!.id!;
    },
  };
}

export { REPO_ROOT, exitOf, type Exit };
