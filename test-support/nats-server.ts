/**
 * nats-server processes of a test's own, on free loopback ports: alone, with
 * auth or TLS arguments, with JetStream, or as cluster members; killed,
 * restarted on the same port and store, stopped. Used by transport-nats and narc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  port?: number;
  jetstream?: boolean;
  /** JetStream store (kept across restarts). Default a fresh temp dir. */
  storeDir?: string;
  user?: string;
  pass?: string;
  /** Cluster listen port and routes to the other members. */
  cluster?: { port: number; routes: number[]; name: string };
  /** More nats-server arguments (e.g. `--auth`, `--tls`, `-c`). */
  args?: string[];
}

/** A nats-server we started. */
export interface NatsServerProcess {
  readonly url: string;
  readonly port: number;
  /** SIGKILL it and wait for the exit. */
  kill(): Promise<void>;
  /** Start it again on the same port and store. */
  restart(): Promise<void>;
  /** Stop it and remove its store. */
  stop(): Promise<void>;
}

function launch(args: string[]): Promise<ChildProcess> {
  const child = spawn('nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
      if (log.includes('Server is ready')) {
        child.stderr?.off('data', onData);
        child.stderr?.resume();
        resolve(child);
      }
    };
    child.stderr?.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`nats-server exited (${code}):\n${log}`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Start a nats-server on loopback and wait until it says it is ready. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const port = options.port ?? (await freePort());
  const ownStore = options.jetstream === true && options.storeDir === undefined;
  const storeDir =
    options.storeDir ?? (ownStore ? await mkdtemp(join(tmpdir(), 'overthere-nats-')) : undefined);
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (options.jetstream === true && storeDir !== undefined) args.push('-js', '-sd', storeDir);
  if (options.user !== undefined) args.push('--user', options.user);
  if (options.pass !== undefined) args.push('--pass', options.pass);
  if (options.cluster !== undefined) {
    args.push(
      '--cluster_name',
      options.cluster.name,
      '--cluster',
      `nats://127.0.0.1:${options.cluster.port}`,
      '--routes',
      options.cluster.routes.map((route) => `nats://127.0.0.1:${route}`).join(','),
    );
  }
  args.push(...(options.args ?? []));
  let child = await launch(args);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      child = await launch(args);
    },
    async stop() {
      child.kill('SIGKILL');
      await exited(child);
      if (ownStore && storeDir !== undefined) await rm(storeDir, { recursive: true, force: true });
    },
  };
}
