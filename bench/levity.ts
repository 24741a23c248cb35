/**
 * levity over gRPC beside raw `child_process.spawn`, with `levityd` as a
 * separate process on 127.0.0.1 (as deployed):
 *
 * - round trip of `/bin/true`: StartTask, then QueryTask until Finished
 *   (polled back to back), at concurrency 1 — what `levity start` + polling
 *   `levity query` costs without the CLI's own process start;
 * - StartTask throughput at concurrency 8 (each starts `/bin/true`);
 * - the same round trip through the `levity` CLI (one process per call), for
 *   scale: mostly Node's start-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLevityClient, type LevityClient } from '../apps/levity/src/levity-client.js';
import { compare, quantile, runConcurrently, type BenchResult, rawSpawnTrue } from './report.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const BUILT_CLI = fileURLToPath(new URL('../apps/levity/dist/levity.js', import.meta.url));

/** Start levityd (sources through tsx) and wait for its `Listening on` line. */
async function startLevityd(): Promise<{ address: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'apps/levity/src/levityd-main.ts', '127.0.0.1:0', '--task-ttl', '10s'],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /Listening on (\S+)\n/.exec(stderr);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`levityd exited (${code}):\n${stderr}`)));
  });
  child.stderr.resume();
  return { address, child };
}

async function roundTrip(client: LevityClient): Promise<void> {
  const id = await client.start({ binary: '/bin/true' });
  for (;;) {
    const status = await client.query(id);
    if (status.state === 'Finished') return;
    if (status.state !== 'Running' && status.state !== 'Signalled') {
      throw new Error(`task ${id} ended ${status.state}`);
    }
  }
}

function runCli(args: readonly string[]): Promise<string> {
  const argv = existsSync(BUILT_CLI)
    ? [BUILT_CLI, ...args]
    : ['--import', 'tsx', 'apps/levity/src/levity-main.ts', ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.resume();
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`levity ${args.join(' ')}: ${code}`)),
    );
  });
}

async function cliRoundTrip(address: string): Promise<void> {
  const id = (await runCli(['-a', address, 'start', '/bin/true'])).trim();
  while (!(await runCli(['-a', address, 'query', id])).startsWith('Finished')) {
    // The CLI's start-up is the poll interval.
  }
}

export async function levityBenchmarks(): Promise<BenchResult[]> {
  const { address, child } = await startLevityd();
  const client = createLevityClient({ address, timeoutMs: 10_000 });
  const results: BenchResult[] = [];
  try {
    // Round trip at concurrency 1: alternate rounds so machine noise hits both alike.
    await runConcurrently(20, 1, rawSpawnTrue);
    await runConcurrently(20, 1, () => roundTrip(client));
    const raw: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < 4; round += 1) {
      raw.push(...(await runConcurrently(50, 1, rawSpawnTrue)).latenciesMs);
      ours.push(...(await runConcurrently(50, 1, () => roundTrip(client))).latenciesMs);
    }
    results.push(
      compare(
        'levity StartTask + QueryTask→Finished /bin/true c=1 p50',
        'ms',
        'lower',
        quantile(ours, 0.5),
        { name: 'raw spawn', value: quantile(raw, 0.5) },
        undefined,
        { 'p99 ms': quantile(ours, 0.99), 'raw p99 ms': quantile(raw, 0.99) },
      ),
    );

    // StartTask throughput at concurrency 8.
    const total = 800;
    await runConcurrently(40, 8, rawSpawnTrue);
    await runConcurrently(40, 8, async () => void (await client.start({ binary: '/bin/true' })));
    let rawWallMs = 0;
    let oursWallMs = 0;
    const startLatencies: number[] = [];
    for (let round = 0; round < 4; round += 1) {
      rawWallMs += (await runConcurrently(total / 4, 8, rawSpawnTrue)).wallMs;
      const run = await runConcurrently(
        total / 4,
        8,
        async () => void (await client.start({ binary: '/bin/true' })),
      );
      oursWallMs += run.wallMs;
      startLatencies.push(...run.latenciesMs);
    }
    results.push(
      compare(
        'levity StartTask /bin/true c=8 throughput',
        'tasks/s',
        'higher',
        (total / oursWallMs) * 1000,
        { name: 'raw spawn', value: (total / rawWallMs) * 1000 },
        undefined,
        { 'p50 ms': quantile(startLatencies, 0.5), 'p99 ms': quantile(startLatencies, 0.99) },
      ),
    );

    // The CLI, one process per call (a handful: each costs a Node start-up).
    const cli: number[] = [];
    await cliRoundTrip(address);
    for (let index = 0; index < 8; index += 1) {
      const t0 = performance.now();
      await cliRoundTrip(address);
      cli.push(performance.now() - t0);
    }
    results.push(
      compare(
        `levity CLI start + query→Finished /bin/true p50 (${existsSync(BUILT_CLI) ? 'built' : 'tsx'})`,
        'ms',
        'lower',
        quantile(cli, 0.5),
      ),
    );
  } finally {
    client.close();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  return results;
}
