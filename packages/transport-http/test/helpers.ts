/** Shared pieces of the integration tests: a real agent on 127.0.0.1, curl, waiting. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSupervisor, type Supervisor, type SupervisorOptions } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import {
  createHttpAgent,
  createHttpClient,
  type HttpAgent,
  type HttpAgentOptions,
  type HttpClient,
} from '@overthere/transport-http';
import type { Runtime } from '@overthere/core';

export const TOKEN = 'test-token-0123456789';

/** A running agent and everything needed to talk to it. */
export interface TestAgent {
  runtime: Runtime;
  supervisor: Supervisor;
  agent: HttpAgent;
  client: HttpClient;
  url: string;
  /** `-H Authorization: Bearer …` for curl. */
  auth: string[];
  close(): Promise<void>;
}

/** Start a supervisor on the local runtime and serve it on 127.0.0.1. */
export async function startAgent(
  options: Partial<Omit<HttpAgentOptions, 'supervisor'>> & {
    supervisor?: Partial<Omit<SupervisorOptions, 'runtime'>>;
  } = {},
): Promise<TestAgent> {
  const runtime = createLocalRuntime();
  const supervisor = await createSupervisor({ runtime, ...options.supervisor });
  const { supervisor: _ignored, ...agentOptions } = options;
  const agent = await createHttpAgent({ runtime, token: TOKEN, ...agentOptions, supervisor });
  const token = 'token' in options ? options.token : TOKEN;
  const client = createHttpClient({
    baseUrl: agent.url,
    ...(token === undefined ? {} : { token }),
  });
  return {
    runtime,
    supervisor,
    agent,
    client,
    url: agent.url,
    auth: token === undefined ? [] : ['-H', `Authorization: Bearer ${token}`],
    async close() {
      await agent.close();
      await supervisor.close();
      await runtime.dispose();
    },
  };
}

/** What curl received. */
export interface CurlResult {
  /** Final status (1xx interim responses skipped). */
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: Buffer;
  exitCode: number | null;
  stderr: string;
}

function parseResponse(raw: Buffer): Pick<CurlResult, 'status' | 'headers' | 'body'> {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return { status: 0, headers: {}, body: rest };
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
    rest = rest.subarray(end + 4);
    if (status >= 100 && status < 200) continue;
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0)
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    return { status, headers, body: rest };
  }
}

/** Run curl (`-sS -i`, 30 s cap) and parse its answer. */
export function curl(args: readonly string[], input?: Buffer | string): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '-i', '--max-time', '30', ...args], {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    if (input !== undefined) child.stdin?.end(input);
    child.once('close', (exitCode) => {
      resolve({ ...parseResponse(Buffer.concat(out)), exitCode, stderr });
    });
  });
}

/** curl's answer body as JSON. */
export function json<T = Record<string, unknown>>(result: CurlResult): T {
  return JSON.parse(result.body.toString()) as T;
}

/** A long-running curl whose output is read as it arrives. */
export interface CurlStream {
  child: ChildProcess;
  /** Everything received so far (headers included, as `-i` prints them). */
  received(): Buffer;
  /** The body received so far. */
  body(): Buffer;
  /** Resolves once `predicate` holds for the body (rejects if curl exits first). */
  until(predicate: (body: Buffer) => boolean): Promise<Buffer>;
  /** Resolves with the final result once curl exits. */
  done: Promise<CurlResult>;
}

/** Start curl in streaming mode (`-N`). */
export function curlStream(args: readonly string[]): CurlStream {
  const child = spawn('curl', ['-sS', '-i', '-N', '--max-time', '60', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  const checks = new Set<() => void>();
  let exited = false;
  const received = () => Buffer.concat(out);
  const body = () => parseResponse(received()).body;
  child.stdout.on('data', (chunk: Buffer) => {
    out.push(chunk);
    for (const check of checks) check();
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<CurlResult>((resolve) => {
    child.once('close', (exitCode) => {
      exited = true;
      for (const check of checks) check();
      resolve({ ...parseResponse(received()), exitCode, stderr });
    });
  });
  return {
    child,
    received,
    body,
    done,
    until: (predicate) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const current = body();
          if (predicate(current)) {
            checks.delete(check);
            resolve(current);
          } else if (exited) {
            checks.delete(check);
            reject(
              new Error(
                `curl exited before the condition held; got ${current.length} bytes: ${stderr}`,
              ),
            );
          }
        };
        checks.add(check);
        check();
      }),
  };
}

/** Poll `condition` (cheaply, every 10 ms) until it holds, bounded by `ms`. For state outside our events. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The value of one sample of the metrics text, e.g. `overthere_open_streams{kind="output"}`. */
export function metricValue(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}

/** `/bin/sh -c script` as a TaskSpec command. */
export function sh(script: string): string[] {
  return ['/bin/sh', '-c', script];
}

/** The lines `1\n` … `count\n`. */
export function numbered(count: number): string {
  return Array.from({ length: count }, (_, index) => `${index + 1}\n`).join('');
}
