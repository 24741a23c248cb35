/**
 * Test helpers: a real `rtot-server` subprocess (the TypeScript source run by
 * tsx from the repository root, where the root tsconfig maps @overthere/* to
 * sources) and `curl` as the client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT,
  exitOf,
  spawnSource,
  runSource,
  testEnv,
  type Exit,
} from '../../../test-support/app-process.js';
import { waitFor } from '../../../test-support/wait-for.js';

export { waitFor };

const MAIN = path.join('apps', 'rtot', 'src', 'main.ts');

/** Go's time.Time.String() in UTC, fraction optional. */
export const GO_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})? \+0000 UTC$/;
export const GO_ZERO_TIME = '0001-01-01 00:00:00 +0000 UTC';

/** Run the CLI to its end (for --help, --version, bad flags). */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Exit & { stdout: string; stderr: string }> {
  return runSource(MAIN, args, testEnv('RTOT_', env));
}

export interface RunningServer {
  /** Base URL on 127.0.0.1 (also when it listens on every interface). */
  url: string;
  /** The URL the server printed. */
  printedUrl: string;
  process: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  exited: Promise<Exit>;
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/** Start `rtot-server` and wait for its "listening on" line. */
export async function startServer(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<RunningServer> {
  const child = spawnSource(MAIN, args, testEnv('RTOT_', env));
  let stderr = '';
  const exited = exitOf(child);
  child.stdout?.resume();
  const printedUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`rtot-server did not start in ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /listening on (\S+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((exit) => {
      clearTimeout(timer);
      reject(
        new Error(`rtot-server exited (${JSON.stringify(exit)}) before listening:\n${stderr}`),
      );
    });
  });
  const url = printedUrl.replace(/\/\/(\[::\]|0\.0\.0\.0)/, '//127.0.0.1');
  return {
    url,
    printedUrl,
    process: child,
    stderr: () => stderr,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A job as the API sends it. */
export interface Job {
  id: number;
  href: string;
  state: 'new' | 'running' | 'complete';
  out?: string;
  err?: string;
  exit?: string;
  start?: string;
  complete?: string;
  create?: string;
  filename?: string;
}

/** `{"jobs": [...]}` */
export interface JobsBody {
  jobs: Job[];
}

export interface CurlResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
  /** The body parsed as JSON (by default as `{"jobs": [...]}`). */
  json<T = JobsBody>(): T;
}

export interface CurlOptions {
  method?: string;
  /** Sent as `Rtot-Secret`. */
  secret?: string;
  /** Request body, sent as is (`--data-binary`). */
  data?: string | Buffer;
  headers?: Record<string, string>;
  /** Accept a self-signed certificate. */
  insecure?: boolean;
}

/** Run curl and parse its `-i` output (skipping any `100 Continue`). */
export function curl(url: string, options: CurlOptions = {}): Promise<CurlResponse> {
  const args = ['-sS', '-i', '--max-time', '30'];
  if (options.method !== undefined) args.push('-X', options.method);
  if (options.secret !== undefined) args.push('-H', `Rtot-Secret: ${options.secret}`);
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    args.push('-H', `${name}: ${value}`);
  }
  if (options.data !== undefined) args.push('--data-binary', '@-');
  if (options.insecure) args.push('-k');
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn('curl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.data ?? '');
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) {
        reject(new Error(`curl ${args.join(' ')} failed (${code}): ${stderr}`));
        return;
      }
      let rest = Buffer.concat(chunks).toString('utf8');
      for (;;) {
        const end = rest.indexOf('\r\n\r\n');
        const head = end === -1 ? rest : rest.slice(0, end);
        rest = end === -1 ? '' : rest.slice(end + 4);
        const lines = head.split('\r\n');
        const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(lines[0] ?? '')?.[1]);
        if (status >= 100 && status < 200) continue;
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        const body = rest;
        resolve({ status, headers, body, json: <T>() => JSON.parse(body) as T });
        return;
      }
    });
  });
}

/** True while a process with this pid exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A fresh temporary directory and its removal. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A small client bound to one server and secret. */
export function client(server: { url: string }, secret: string) {
  const call = (route: string, options: CurlOptions = {}) =>
    curl(`${server.url}${route}`, { secret, ...options });
  return {
    call,
    /** POST a script; asserts 201 and returns the job. */
    async post(script: string, query = ''): Promise<Job> {
      const response = await call(`/jobs${query}`, { data: script });
      if (response.status !== 201) {
        throw new Error(`POST /jobs answered ${response.status}: ${response.body}`);
      }
      const [job, ...others] = response.json().jobs;
      if (job === undefined || others.length > 0) {
        throw new Error(`POST /jobs answered ${response.body}`);
      }
      return job;
    },
    /** Poll GET /jobs/:id until it is 200 (complete); returns the job. */
    async complete(id: number, timeoutMs = 10_000): Promise<Job> {
      return waitFor(
        `job ${id} to complete`,
        async () => {
          const response = await call(`/jobs/${id}`);
          if (response.status === 200) return response.json().jobs[0];
          if (response.status !== 202) throw new Error(`GET /jobs/${id}: ${response.status}`);
          return undefined;
        },
        timeoutMs,
      );
    },
  };
}

export { REPO_ROOT, type Exit };
