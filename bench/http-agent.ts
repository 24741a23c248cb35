/**
 * The HTTP agent under load, in its own process as deployed:
 * - `/v1` exec of `/bin/true` (create + wait for exit, in one request) driven by
 *   autocannon at concurrency 1, 8 and 32, and at 8 as two requests, beside raw
 *   `child_process.spawn` at the same concurrency, and at 8 beside a Go webhook
 *   server (bench/go-webhook, built when `go` is on PATH) under the same load;
 * - a 1 GiB task output streamed to an HTTP client (curl, and Node's http
 *   client, which alone took a sixth of the machine), beside a Node pipe →
 *   TCP socket; the Node sides run in fresh processes (bench/stream-child.ts).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { compare, runConcurrently, type BenchResult, rawSpawnTrue } from './report.js';
import { startGatedTask } from './stream-child.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const GIB = 1024 ** 3;

/** A server started for the benchmark: the agent, or the Go webhook. */
interface Server {
  url: string;
  child: ChildProcess;
}

/**
 * The Go webhook baseline, built into a temp dir; undefined (with the reason
 * printed) when there is no Go toolchain.
 */
function buildGoWebhook(outDir: string): string | undefined {
  const binary = join(outDir, 'go-webhook');
  try {
    execFileSync('go', ['build', '-o', binary, '.'], {
      cwd: join(REPO_ROOT, 'bench/go-webhook'),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return binary;
  } catch (error) {
    process.stderr.write(`Go webhook baseline not measured: ${(error as Error).message}\n`);
    return undefined;
  }
}

/** Start a server that prints `listening on <url>` on stdout or stderr; resolves to its URL. */
async function startServer(
  command: string,
  args: string[],
  output: 'stdout' | 'stderr',
): Promise<Server> {
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    stdio: [
      'ignore',
      output === 'stdout' ? 'pipe' : 'ignore',
      output === 'stderr' ? 'pipe' : 'ignore',
    ],
  });
  const lines = createInterface({ input: child[output]! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /listening on (https?:\/\/[^\s,]+)/.exec(line);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code}`)));
  });
  return { url, child };
}

/** Start overthere-agent: the build when there is one (as deployed), else the sources through tsx. */
async function startAgent(dataDir: string): Promise<Server> {
  const built = join(REPO_ROOT, 'apps/agent/dist/main.js');
  const entry = existsSync(built) ? [built] : ['--import', 'tsx', 'apps/agent/src/main.ts'];
  return startServer(
    process.execPath,
    [
      ...entry,
      // The default output cap (64 MiB): the follower holds the task back rather than lose bytes.
      ...['--port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--ttl', '60s'],
    ],
    'stderr',
  );
}

async function stopServer(server: Server): Promise<void> {
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  await exited;
}

/** How an exec is asked for. */
type ExecForm = 'wait' | 'two-requests' | 'go-webhook';

/**
 * Execs of /bin/true, `connections` at once, for `durationS` seconds: one
 * `POST /v1/tasks?wait=1` each (a webhook's way: the answer is the final
 * task), or a create and then a `GET …/wait`, or one `POST /hooks/run` to
 * the Go webhook.
 */
async function execLoad(
  url: string,
  connections: number,
  durationS: number,
  form: ExecForm = 'wait',
): Promise<{ rate: number; p50: number; p99: number; errors: number }> {
  const create = {
    method: 'POST' as const,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command: ['/bin/true'] }),
  };
  const result = await autocannon({
    url,
    connections,
    duration: durationS,
    requests:
      form === 'two-requests'
        ? [
            {
              ...create,
              path: '/v1/tasks',
              onResponse: (_status: number, body: string, context: object) => {
                (context as { id?: string }).id = (JSON.parse(body) as { id: string }).id;
              },
            },
            {
              method: 'GET',
              setupRequest: (req, context: object) => ({
                ...req,
                path: `/v1/tasks/${(context as { id?: string }).id ?? ''}/wait`,
              }),
            },
          ]
        : [
            {
              ...create,
              path: form === 'go-webhook' ? '/hooks/run' : '/v1/tasks?wait=1',
              onResponse: (status: number, body: string) => {
                const answer = JSON.parse(body) as { state?: string; exitCode?: number };
                if (status !== 201 || (answer.state !== 'exited' && answer.exitCode !== 0)) {
                  throw new Error(`exec did not end: ${status} ${body}`);
                }
              },
            },
          ],
  });
  const requestsPerExec = form === 'two-requests' ? 2 : 1;
  return {
    rate: result.requests.average / requestsPerExec,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx,
  };
}

/** Which HTTP client reads the stream: curl, or Node's http client (in a process of its own). */
type StreamClient = 'curl' | 'node';

/** Runs a mode of bench/stream-child.ts in a fresh Node process; resolves to the milliseconds it prints. */
function streamChild(...args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./stream-child.ts', import.meta.url)), ...args],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve(Number(out))
        : reject(new Error(`stream-child ${args[0]} exited with ${code}`)),
    );
  });
}

/**
 * A task that writes 1 GiB once it reads a line on stdin: its reader attaches
 * first. Started before, a task this fast has written past the default
 * 64 MiB of retention by the time a reader arrives, and the reader starts at
 * the oldest byte kept.
 */
async function createGatedTask(url: string): Promise<string> {
  const response = await fetch(`${url}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      command: ['sh', '-c', `read go && exec head -c ${GIB} /dev/zero`],
      stdin: 'pipe',
    }),
  });
  return ((await response.json()) as { id: string }).id;
}

/** Milliseconds for curl to read a gated 1 GiB task's stdout as raw chunked HTTP, from its start. */
async function streamToCurl(url: string): Promise<number> {
  const id = await createGatedTask(url);
  const curl = spawn(
    'curl',
    [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      `${url}/v1/tasks/${id}/output?follow=1&stream=stdout`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const bytes = new Promise<number>((resolve, reject) => {
    let out = '';
    curl.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    curl.once('error', reject);
    curl.once('close', (code) =>
      code === 0 ? resolve(Number(out)) : reject(new Error(`curl exited with ${code}`)),
    );
  });
  // curl has connected well before this.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  await startGatedTask(url, id);
  const received = await bytes;
  const ms = performance.now() - start;
  if (received !== GIB) throw new Error(`streamed ${received} bytes`);
  return ms;
}

export async function httpBenchmarks(): Promise<BenchResult[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'overthere-bench-http-'));
  const goWebhook = buildGoWebhook(dataDir);
  const agent = await startAgent(join(dataDir, 'agent'));
  const results: BenchResult[] = [];
  try {
    await execLoad(agent.url, 4, 2); // warm up
    for (const [connections, form] of [
      [1, 'wait'],
      [8, 'wait'],
      [32, 'wait'],
      [8, 'two-requests'],
    ] as const) {
      const ours = await execLoad(agent.url, connections, 8, form);
      const raw = await runConcurrently(connections * 100, connections, rawSpawnTrue);
      const rawRate = ((connections * 100) / raw.wallMs) * 1000;
      const extra = { 'request p50 ms': ours.p50, 'request p99 ms': ours.p99, errors: ours.errors };
      const name = `/v1 exec /bin/true (${form === 'wait' ? 'POST ?wait=1' : 'create, then GET /wait'}) c=${connections}`;
      results.push(
        compare(
          name,
          'execs/s',
          'higher',
          ours.rate,
          { name: 'raw spawn', value: rawRate },
          undefined,
          extra,
        ),
      );
      if (connections === 8 && form === 'wait' && goWebhook !== undefined) {
        // The target's yardstick, under the same load right after ours.
        const go = await startServer(goWebhook, [], 'stdout');
        try {
          await execLoad(go.url, 4, 1, 'go-webhook'); // warm up
          const theirs = await execLoad(go.url, connections, 8, 'go-webhook');
          results.push(
            compare(
              `${name} vs Go webhook`,
              'execs/s',
              'higher',
              ours.rate,
              { name: 'Go webhook (net/http + os/exec)', value: theirs.rate },
              '≥ 1.0× (2200/s measured elsewhere)',
              { 'Go p50 ms': theirs.p50, 'Go errors': theirs.errors },
            ),
          );
        } finally {
          await stopServer(go);
        }
      }
    }
    // Best of 3 each, alternating, so CPU and page-cache noise hit all alike.
    let rawMs = Number.POSITIVE_INFINITY;
    const oursMs: Record<StreamClient, number> = {
      curl: Number.POSITIVE_INFINITY,
      node: Number.POSITIVE_INFINITY,
    };
    for (let round = 0; round < 3; round += 1) {
      rawMs = Math.min(rawMs, await streamChild('pipe-to-tcp'));
      oursMs.curl = Math.min(oursMs.curl, await streamToCurl(agent.url));
      const id = await createGatedTask(agent.url);
      oursMs.node = Math.min(oursMs.node, await streamChild('http-client', agent.url, id));
    }
    const mbPerSecond = (ms: number) => GIB / 1024 / 1024 / (ms / 1000);
    for (const client of ['curl', 'node'] as const) {
      results.push(
        compare(
          `1 GiB task output streamed to ${client === 'curl' ? 'curl' : "Node's http client"}`,
          'MB/s',
          'higher',
          mbPerSecond(oursMs[client]),
          { name: 'Node pipe → TCP socket', value: mbPerSecond(rawMs) },
          client === 'curl' ? '≥ 0.9×' : undefined,
        ),
      );
    }
  } finally {
    await stopServer(agent);
    await rm(dataDir, { recursive: true, force: true });
  }
  return results;
}
