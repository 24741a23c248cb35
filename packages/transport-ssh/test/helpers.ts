/** Shared pieces of the SSH integration tests: a server on 127.0.0.1 and the OpenSSH client. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSupervisor, type Runtime, type Supervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { createSshServer, type SshServer, type SshServerOptions } from '@overthere/transport-ssh';

/** A running SSH server on the local runtime. */
export interface TestSshServer {
  runtime: Runtime;
  supervisor: Supervisor;
  server: SshServer;
  port: number;
  /** Scratch dir (host key, known_hosts, client keys); removed on close. */
  dir: string;
  /** Stop the server, the supervisor and the runtime; remove the dir unless `keepDir`. */
  close(options?: { keepDir?: boolean }): Promise<void>;
}

/** Start a supervisor on the local runtime and an SSH server for it on 127.0.0.1. */
export async function startSshServer(
  options: Partial<Omit<SshServerOptions, 'supervisor'>> & {
    dir?: string;
    /** Default: a local runtime. */
    runtime?: Runtime;
  } = {},
): Promise<TestSshServer> {
  const dir = options.dir ?? (await mkdtemp(path.join(tmpdir(), 'overthere-ssh-test-')));
  const runtime = options.runtime ?? createLocalRuntime();
  const supervisor = await createSupervisor({ runtime });
  const { dir: _dir, runtime: _runtime, ...serverOptions } = options;
  const server = await createSshServer({
    dataDir: dir,
    keepaliveIntervalMs: 0,
    ...serverOptions,
    supervisor,
  });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    runtime,
    supervisor,
    server,
    port,
    dir,
    async close(closeOptions = {}) {
      await server.close();
      await supervisor.close();
      await runtime.dispose();
      if (!closeOptions.keepDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export { interactiveSsh, runSsh, sshArguments } from '../../../test-support/openssh.js';
export type { InteractiveSsh, RunSshOptions, SshResult } from '../../../test-support/openssh.js';

/** Run a program and return its stdout (rejects on a non-zero exit). */
export function runProgram(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr}`));
    });
    child.stdin.end(input ?? '');
  });
}

/** Resolve when `predicate` holds, checked on each supervisor event and at once. */
export function waitFor(
  supervisor: Supervisor,
  predicate: () => boolean,
  timeoutMs = 10_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!predicate()) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('condition not reached in time'));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      supervisor.off('task-start', check);
      supervisor.off('task-state', check);
      supervisor.off('task-end', check);
    };
    supervisor.on('task-start', check);
    supervisor.on('task-state', check);
    supervisor.on('task-end', check);
    check();
  });
}
