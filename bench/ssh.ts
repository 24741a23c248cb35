/**
 * The overthere SSH server beside OpenSSH's `sshd`, both on 127.0.0.1, driven
 * by the same OpenSSH client with the same key and the same cipher
 * (aes128-gcm, which both do through OpenSSL):
 *
 * - `ssh host true` on a new connection each time (handshake, auth, a task
 *   started and ended), sequential, median and p95;
 * - 256 MiB through `ssh host cat` (stdin to the task and back).
 *
 * The overthere server runs in this process (supervisor + local runtime), as an
 * app would embed it; sshd runs as its own daemon with a temporary config.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSupervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import {
  createSshServer,
  parseAuthorizedKeys,
  publicKeyAuthorized,
} from '@overthere/transport-ssh';
import { compare, quantile, type BenchResult } from './report.js';

const SSHD = '/usr/sbin/sshd';
const EXEC_RUNS = 40;
const THROUGHPUT_BYTES = 256 * 1024 * 1024;
const CIPHER = 'aes128-gcm@openssh.com';

function run(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${file} exited ${code}: ${stderr}`)),
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolve once something accepts connections on the port. */
async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited ${child.exitCode}: ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port}: ${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The OpenSSH client's argv for one server. */
function sshArguments(dir: string, port: number, command: string): string[] {
  return [
    '-F',
    '/dev/null',
    '-p',
    String(port),
    '-i',
    path.join(dir, 'id_ed25519'),
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    `UserKnownHostsFile=${path.join(dir, `known_hosts_${port}`)}`,
    '-o',
    'LogLevel=ERROR',
    '-c',
    CIPHER,
    `${process.env.USER ?? 'root'}@127.0.0.1`,
    command,
  ];
}

async function execTrueMs(dir: string, port: number): Promise<number> {
  const start = performance.now();
  await run('ssh', sshArguments(dir, port, 'true'));
  return performance.now() - start;
}

/** Push `bytes` through `ssh … cat`; resolves with MiB/s. */
function catThroughput(dir: string, port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn('ssh', sshArguments(dir, port, 'cat'), {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let received = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (received += chunk.length));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      const seconds = (performance.now() - start) / 1000;
      if (code !== 0 || received !== bytes) {
        reject(new Error(`ssh cat: exit ${code}, ${received}/${bytes} bytes: ${stderr}`));
        return;
      }
      resolve(bytes / (1024 * 1024) / seconds);
    });
    const block = Buffer.alloc(1024 * 1024, 0x5a);
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += block.length;
        if (!child.stdin.write(block)) {
          child.stdin.once('drain', pump);
          return;
        }
      }
      child.stdin.end();
    };
    pump();
  });
}

interface Measured {
  execMedianMs: number;
  execP95Ms: number;
  throughputMiBs: number;
}

async function measure(dir: string, port: number): Promise<Measured> {
  // Warm up: first connections pay for known_hosts and lazy initialisation.
  for (let i = 0; i < 3; i += 1) await execTrueMs(dir, port);
  const latencies: number[] = [];
  for (let i = 0; i < EXEC_RUNS; i += 1) latencies.push(await execTrueMs(dir, port));
  await catThroughput(dir, port, 16 * 1024 * 1024);
  const throughputMiBs = await catThroughput(dir, port, THROUGHPUT_BYTES);
  return {
    execMedianMs: quantile(latencies, 0.5),
    execP95Ms: quantile(latencies, 0.95),
    throughputMiBs,
  };
}

async function startSshd(dir: string): Promise<{ port: number; child: ChildProcess }> {
  if (!existsSync(SSHD)) {
    throw new Error(
      `${SSHD} is missing: run bash scripts/services.sh up (installs openssh-server)`,
    );
  }
  // sshd insists on its privilege separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await freePort();
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
  const config = path.join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'UseDNS no',
      'PrintMotd no',
      'PrintLastLog no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  await waitForPort(port, child, () => log);
  return { port, child };
}

/** The SSH suite: exec latency on new connections and `cat` throughput, beside sshd. */
export async function sshBenchmarks(): Promise<BenchResult[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'overthere-bench-ssh-'));
  const runtime = createLocalRuntime();
  const supervisor = await createSupervisor({ runtime, ttlMs: 1_000 });
  let sshd: ChildProcess | undefined;
  try {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id_ed25519')]);
    const publicKeyText = await readFile(path.join(dir, 'id_ed25519.pub'), 'utf8');
    await writeFile(path.join(dir, 'authorized_keys'), publicKeyText, { mode: 0o600 });
    const authorized = parseAuthorizedKeys(publicKeyText);
    const server = await createSshServer({
      supervisor,
      dataDir: path.join(dir, 'overthere'),
      authenticate: ({ publicKey, username }) =>
        publicKey && publicKeyAuthorized(publicKey, authorized) ? { name: username } : undefined,
    });
    const { port } = await server.listen({ port: 0 });

    const started = await startSshd(dir);
    sshd = started.child;

    const ours = await measure(dir, port);
    const theirs = await measure(dir, started.port);
    await server.close();

    return [
      compare(
        'ssh exec `true` on a new connection, median',
        'ms',
        'lower',
        ours.execMedianMs,
        { name: 'OpenSSH sshd', value: theirs.execMedianMs },
        undefined,
        { p95: ours.execP95Ms, sshdP95: theirs.execP95Ms },
      ),
      compare('256 MiB through `ssh … cat`', 'MiB/s', 'higher', ours.throughputMiBs, {
        name: 'OpenSSH sshd',
        value: theirs.throughputMiBs,
      }),
    ];
  } finally {
    sshd?.kill('SIGTERM');
    await supervisor.close();
    await runtime.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
