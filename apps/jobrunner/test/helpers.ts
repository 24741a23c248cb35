/**
 * Drive a real `jobrunner` process (the source, through tsx) with real `curl`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  REPO_ROOT as repoRoot,
  exitOf as exited,
  spawnSource,
  type Exit as ExitResult,
} from '../../../test-support/app-process.js';
import { waitFor } from '../../../test-support/wait-for.js';

export { waitFor };

const mainScript = 'apps/jobrunner/src/main.ts';

/** Run `node --import tsx apps/jobrunner/src/main.ts` from the repo root. */
export function spawnJobrunner(
  args: string[],
  env: Record<string, string | undefined>,
): ChildProcess {
  return spawnSource(mainScript, args, { ...process.env, JOBRUNNER_PORT: '0', ...env });
}

/** Run jobrunner to completion (for --help, bad config…). */
export async function runJobrunner(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<ExitResult & { stdout: string; stderr: string }> {
  const child = spawnJobrunner(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const result = await exited(child);
  return { ...result, stdout, stderr };
}

/** A listening jobrunner. */
export interface Server {
  url: string;
  child: ChildProcess;
  stderr(): string;
  /** Send a signal and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<ExitResult>;
}

/** Start jobrunner and wait for its "listening on" line. */
export async function startServer(env: Record<string, string | undefined> = {}): Promise<Server> {
  const child = spawnJobrunner([], env);
  let stderr = '';
  child.stdout!.resume();
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`jobrunner did not start:\n${stderr}`)),
      20_000,
    );
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`jobrunner exited with ${code}:\n${stderr}`));
    });
  });
  return {
    // With a token it listens on 0.0.0.0; tests reach it through loopback.
    url: url.replace('//0.0.0.0:', '//127.0.0.1:'),
    child,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      const done = exited(child);
      child.kill(signal);
      return done;
    },
  };
}

/** What curl returned. */
export interface CurlResult {
  /** curl's own exit code (0 = transfer complete). */
  exitCode: number | null;
  status: number;
  body: Buffer;
  text: string;
  json(): unknown;
}

/** `curl -s` with the status code written to stderr. */
export function curl(args: string[], input?: string | Buffer): Promise<CurlResult> {
  const child = spawn('curl', ['-s', '-w', '%{stderr}%{http_code}', ...args], {
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  if (input !== undefined) child.stdin!.end(input);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      const body = Buffer.concat(out);
      const text = body.toString();
      resolve({
        exitCode: code,
        status: Number(err.trim().slice(-3)),
        body,
        text,
        json: () => JSON.parse(text) as unknown,
      });
    });
  });
}

/** A JSON API client on top of curl. */
export function client(url: string, headers: string[] = []) {
  const h = headers.flatMap((header) => ['-H', header]);
  return {
    get: (path: string) => curl([...h, `${url}${path}`]),
    delete: (path: string) => curl([...h, '-X', 'DELETE', `${url}${path}`]),
    /** `curl --data-binary @-`: a form Content-Type, as `curl -d` sends. */
    post: (body: unknown, extra: string[] = []) =>
      curl(
        [...h, ...extra, '--data-binary', '@-', `${url}/`],
        typeof body === 'string' ? body : JSON.stringify(body),
      ),
  };
}

/** A running `curl -sN` on an attach URL, collecting what arrives. */
export interface Attach {
  output(): Buffer;
  /** Resolves with curl's exit code and everything received. */
  done: Promise<{ exitCode: number | null; body: Buffer }>;
  child: ChildProcess;
}

export function attach(url: string, headers: string[] = []): Attach {
  const child = spawn('curl', ['-sN', ...headers.flatMap((h) => ['-H', h]), url], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<{ exitCode: number | null; body: Buffer }>((resolve) => {
    child.once('close', (code) => resolve({ exitCode: code, body: Buffer.concat(chunks) }));
  });
  return { output: () => Buffer.concat(chunks), done, child };
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeoutMs`. */

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export { repoRoot, exited, type ExitResult };
