/**
 * Test helpers: a real `smartmob-agent` subprocess (the TypeScript source
 * through tsx), a real HTTP file server on 127.0.0.1 serving archives built
 * in the test, curl as the HTTP client and `ws` as the WebSocket client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  exitOf,
  spawnSource,
  runSource,
  testEnv,
  type Exit,
} from '../../../test-support/app-process.js';
import { waitFor as sharedWaitFor } from '../../../test-support/wait-for.js';

const MAIN = path.join('apps', 'smartmob', 'src', 'main.ts');

/** Flags that keep the tests fast: short restart delays and kill grace. */
export const FAST_FLAGS = [
  '--restart-initial-delay',
  '100ms',
  '--restart-max-delay',
  '2s',
  '--restart-reset-after',
  '5s',
  '--kill-grace',
  '1s',
  '--log-level',
  'warn',
];

/** Run the CLI to its end (for --help, --version, bad flags). */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Exit & { stdout: string; stderr: string }> {
  return runSource(MAIN, args, testEnv('SMARTMOB_', env));
}

/** A running agent. */
export interface RunningAgent {
  url: string;
  dataDir: string;
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/** Start `smartmob-agent --port 0 --data-dir DIR …args` and wait for its "listening on" line. */
export async function startAgent(
  dataDir: string,
  args: readonly string[] = [],
  env: Record<string, string> = {},
): Promise<RunningAgent> {
  const child = spawnSource(
    MAIN,
    ['--port', '0', '--data-dir', dataDir, ...FAST_FLAGS, ...args],
    testEnv('SMARTMOB_', env),
  );
  let stdout = '';
  let stderr = '';
  const exited = exitOf(child);
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`smartmob-agent did not start in 20 s:\n${stderr}`));
    }, 20_000);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /listening on (http\S+?),? /.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((exit) => {
      clearTimeout(timer);
      reject(new Error(`smartmob-agent exited (${JSON.stringify(exit)}) early:\n${stderr}`));
    });
  });
  return {
    url,
    dataDir,
    process: child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** One file the file server serves. */
export interface ServedFile {
  body: Buffer;
  contentType?: string;
  status?: number;
  /** Wait this long before answering (timeouts). */
  delayMs?: number;
}

/** A real HTTP server on 127.0.0.1 serving files from a map. */
export interface FileServer {
  url: string;
  files: Map<string, ServedFile>;
  /** Serve `body` at `/name`; returns its URL. */
  serve(name: string, file: ServedFile): string;
  close(): Promise<void>;
}

export async function startFileServer(): Promise<FileServer> {
  const files = new Map<string, ServedFile>();
  const server: Server = createServer((request, response) => {
    const file = files.get(request.url ?? '/');
    const answer = () => {
      if (file === undefined) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      response.writeHead(file.status ?? 200, {
        'content-type': file.contentType ?? 'application/octet-stream',
        'content-length': file.body.length,
      });
      response.end(file.body);
    };
    if (file?.delayMs) setTimeout(answer, file.delayMs).unref();
    else answer();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    files,
    serve(name, file) {
      files.set(`/${name}`, file);
      return `${url}/${name}`;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface CurlResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

/** Run curl (`-i`) and parse status, headers and body. */
export function curl(
  url: string,
  options: { method?: string; data?: string; headers?: Record<string, string> } = {},
): Promise<CurlResponse> {
  const args = ['-sS', '-i', '--max-time', '30'];
  if (options.method !== undefined) args.push('-X', options.method);
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    args.push('-H', `${name}: ${value}`);
  }
  if (options.data !== undefined) args.push('--data-binary', '@-');
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
      const text = Buffer.concat(chunks).toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      const lines = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = text.slice(end + 4);
      resolve({
        status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(lines[0] ?? '')?.[1]),
        headers,
        body,
        json: <T>() => JSON.parse(body) as T,
      });
    });
  });
}

/** The process status document. */
export interface StatusDocument {
  app: string;
  slug: string;
  attach: string;
  details: string;
  status: string;
  delete: string;
  state: string;
  node: string;
  process_type: string;
  error?: string;
  pid?: number;
  restarts?: number;
  exit?: { code: number | null; signal: string | null };
  next_restart_at?: string;
}

/** POST a create request; returns the response. */
export function createProcess(agent: { url: string }, body: unknown): Promise<CurlResponse> {
  return curl(`${agent.url}/create-process`, { data: JSON.stringify(body) });
}

/** GET the status, or undefined on 404. */
export async function statusOf(
  agent: { url: string },
  slug: string,
): Promise<StatusDocument | undefined> {
  const response = await curl(`${agent.url}/process-status/${slug}`);
  if (response.status === 404) return undefined;
  if (response.status !== 200)
    throw new Error(`status ${slug}: ${response.status} ${response.body}`);
  return response.json<StatusDocument>();
}

/** Poll the status until `accept` says yes. */
export async function waitForStatus(
  agent: { url: string },
  slug: string,
  accept: (status: StatusDocument) => boolean,
  timeoutMs = 15_000,
): Promise<StatusDocument> {
  let last: StatusDocument | undefined;
  return waitFor(
    `${slug} status (last: ${JSON.stringify(last)})`,
    async () => {
      last = await statusOf(agent, slug);
      return last !== undefined && accept(last) ? last : undefined;
    },
    timeoutMs,
  );
}

/** {@link sharedWaitFor} with this suite's longer default (an agent fetches and unpacks first). */
export function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  return sharedWaitFor(what, probe, timeoutMs);
}

/** A console connection: the lines received so far, and a way to wait for more. */
export interface Console {
  lines: string[];
  /** Resolves when at least `count` lines arrived. */
  waitForLines(count: number, timeoutMs?: number): Promise<string[]>;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

/** Connect a WebSocket to an attach URL. Rejects with the HTTP status when the upgrade is refused. */
export async function openConsole(url: string): Promise<Console> {
  const socket = new WebSocket(url);
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  /** The waiter is woken only once this many lines are in (cheap for floods of lines). */
  let wanted = 0;
  socket.on('message', (data, isBinary) => {
    if (isBinary) throw new Error('binary frame on the console');
    lines.push((data as Buffer).toString('utf8'));
    if (lines.length >= wanted) wake?.();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      wake?.();
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_request, response) => {
      reject(new Error(`upgrade refused: ${response.statusCode}`));
    });
    socket.once('error', reject);
  });
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  return {
    lines,
    async waitForLines(count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      wanted = count;
      while (lines.length < count) {
        if (isClosed) throw new Error(`console closed after ${lines.length} of ${count} lines`);
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(
            `only ${lines.length} of ${count} lines after ${timeoutMs} ms: ${lines.slice(-5).join(' | ')}`,
          );
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return lines;
    },
    closed,
    async close() {
      if (socket.readyState === WebSocket.CLOSED) return;
      socket.close();
      await closed;
    },
  };
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

/** Pids of processes whose command line contains `marker` (from /proc: no procps needed). */
export async function pidsMatching(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const commandLine = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (commandLine.includes(marker)) pids.push(Number(name));
  }
  return pids;
}

/** A fresh temporary directory and its removal. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
