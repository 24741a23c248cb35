/**
 * Docker runtime beside the raw Engine API, measured in the same run:
 * - task start→exit of `true` through a supervisor (latency at c=1, throughput
 *   at c=1 and c=4) vs create+start+wait+remove over the Engine API socket;
 * - exec into a warm sandbox (start→first byte, start→exit) vs a raw exec
 *   (create, start, inspect);
 * - container output throughput (32 MiB on stdout) vs a raw attach.
 * The baseline speaks HTTP to /var/run/docker.sock with node:http (keep-alive),
 * using the same container settings (no network, docker-init).
 */
import { Agent, request } from 'node:http';
import { createSupervisor } from '@overthere/core';
import { createDockerRuntime } from '@overthere/runtime-docker';
import { compare, quantile, runConcurrently, type BenchResult } from './report.js';

const SOCKET = '/var/run/docker.sock';
const IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';
const OUTPUT_BYTES = 32 * 1024 * 1024;
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** One Engine API call; resolves with the body (read to its end). */
function engine(
  method: string,
  path: string,
  body?: unknown,
  onData?: (chunk: Buffer) => void,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        socketPath: SOCKET,
        agent,
        method,
        path: `/v1.41${path}`,
        headers: payload
          ? { 'Content-Type': 'application/json', 'Content-Length': payload.length }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => (onData ? onData(chunk) : chunks.push(chunk)));
        res.on('end', () => {
          const text = Buffer.concat(chunks);
          if ((res.statusCode ?? 500) >= 400) {
            reject(new Error(`${method} ${path}: ${res.statusCode} ${text.toString()}`));
          } else {
            resolve(text);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const HOST_CONFIG = { Init: true, NetworkMode: 'none' };

/** The raw sequence a task amounts to: create, start, wait, remove. */
async function rawTask(cmd: string[]): Promise<void> {
  const created = JSON.parse(
    (
      await engine('POST', '/containers/create', {
        Image: IMAGE,
        Cmd: cmd,
        HostConfig: HOST_CONFIG,
      })
    ).toString(),
  ) as { Id: string };
  await engine('POST', `/containers/${created.Id}/start`);
  await engine('POST', `/containers/${created.Id}/wait`);
  await engine('DELETE', `/containers/${created.Id}?force=1`);
}

/** Raw output throughput: create, attach (streaming response), start, read to the end, wait, remove. */
async function rawOutput(): Promise<number> {
  const created = JSON.parse(
    (
      await engine('POST', '/containers/create', {
        Image: IMAGE,
        Cmd: ['head', '-c', String(OUTPUT_BYTES), '/dev/zero'],
        AttachStdout: true,
        AttachStderr: true,
        HostConfig: HOST_CONFIG,
      })
    ).toString(),
  ) as { Id: string };
  let bytes = 0;
  let attachedResolve: () => void = () => undefined;
  const attached = new Promise<void>((resolve) => (attachedResolve = resolve));
  const output = new Promise<void>((resolve, reject) => {
    const req = request(
      {
        socketPath: SOCKET,
        method: 'POST',
        path: `/v1.41/containers/${created.Id}/attach?stream=1&stdout=1&stderr=1`,
      },
      (res) => {
        attachedResolve();
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', resolve);
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
  await attached;
  await engine('POST', `/containers/${created.Id}/start`);
  await output;
  await engine('POST', `/containers/${created.Id}/wait`);
  await engine('DELETE', `/containers/${created.Id}?force=1`);
  return bytes;
}

/** Raw exec: create, start (response streams until the process ends), inspect. */
async function rawExec(containerId: string): Promise<{ firstByteMs: number; exitMs: number }> {
  const t0 = performance.now();
  let firstByteMs = Number.NaN;
  const created = JSON.parse(
    (
      await engine('POST', `/containers/${containerId}/exec`, {
        Cmd: ['echo', 'hi'],
        AttachStdout: true,
        AttachStderr: true,
      })
    ).toString(),
  ) as { Id: string };
  await engine('POST', `/exec/${created.Id}/start`, { Detach: false, Tty: false }, () => {
    if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - t0;
  });
  await engine('GET', `/exec/${created.Id}/json`);
  return { firstByteMs, exitMs: performance.now() - t0 };
}

export async function dockerBenchmarks(): Promise<BenchResult[]> {
  const runtime = await createDockerRuntime({
    agentId: `bench-${process.pid}`,
    defaultImage: IMAGE,
  });
  const supervisor = await createSupervisor({ runtime, ttlMs: 0 });
  const results: BenchResult[] = [];
  const viaSupervisor = async () => {
    const task = await supervisor.create({ command: ['true'] });
    await supervisor.wait(task.id);
  };
  const raw = () => rawTask(['true']);
  try {
    // Task start→exit, latency at c=1 and throughput at c=1 and c=4, rounds alternated.
    for (const [concurrency, total] of [
      [1, 24],
      [4, 48],
    ] as const) {
      await runConcurrently(4, concurrency, raw);
      await runConcurrently(4, concurrency, viaSupervisor);
      const rawRuns = { latenciesMs: [] as number[], wallMs: 0 };
      const ours = { latenciesMs: [] as number[], wallMs: 0 };
      for (let round = 0; round < 4; round += 1) {
        const r = await runConcurrently(total / 4, concurrency, raw);
        const o = await runConcurrently(total / 4, concurrency, viaSupervisor);
        rawRuns.latenciesMs.push(...r.latenciesMs);
        rawRuns.wallMs += r.wallMs;
        ours.latenciesMs.push(...o.latenciesMs);
        ours.wallMs += o.wallMs;
      }
      if (concurrency === 1) {
        results.push(
          compare(
            'docker task start→exit p50 (c=1)',
            'ms',
            'lower',
            quantile(ours.latenciesMs, 0.5),
            { name: 'raw create+start+wait+remove', value: quantile(rawRuns.latenciesMs, 0.5) },
            '≥ 1.0× (ours ≤ raw)',
            {
              'p99 ms': quantile(ours.latenciesMs, 0.99),
              'raw p99 ms': quantile(rawRuns.latenciesMs, 0.99),
            },
          ),
        );
      }
      const rate = (run: { wallMs: number }) => (total / run.wallMs) * 1000;
      results.push(
        compare(`docker task throughput c=${concurrency}`, 'tasks/s', 'higher', rate(ours), {
          name: 'raw Engine API (no attach)',
          value: rate(rawRuns),
        }),
      );
    }

    // Exec into a warm sandbox.
    const sandbox = await runtime.createSandbox({}, { taskId: 'bench-sandbox' });
    try {
      const firstByte: number[] = [];
      const exit: number[] = [];
      const rawFirstByte: number[] = [];
      const rawExit: number[] = [];
      const execOnce = async () => {
        const t0 = performance.now();
        const child = await sandbox.spawn({ command: ['echo', 'hi'] }, { taskId: 'bench-exec' });
        child.stdout.once('data', () => firstByte.push(performance.now() - t0));
        child.stdout.resume();
        child.stderr.resume();
        await child.wait();
        exit.push(performance.now() - t0);
      };
      for (let index = 0; index < 5; index += 1) {
        await execOnce();
        await rawExec(sandbox.id);
      }
      firstByte.length = 0;
      exit.length = 0;
      for (let index = 0; index < 30; index += 1) {
        await execOnce();
        const r = await rawExec(sandbox.id);
        rawFirstByte.push(r.firstByteMs);
        rawExit.push(r.exitMs);
      }
      results.push(
        compare('sandbox exec start→first byte p50', 'ms', 'lower', quantile(firstByte, 0.5), {
          name: 'raw exec',
          value: quantile(rawFirstByte, 0.5),
        }),
        compare(
          'sandbox exec start→exit p50',
          'ms',
          'lower',
          quantile(exit, 0.5),
          { name: 'raw exec create+start+inspect', value: quantile(rawExit, 0.5) },
          '< 50 ms',
          { 'p99 ms': quantile(exit, 0.99) },
        ),
      );
    } finally {
      await sandbox.destroy();
    }

    // Output throughput: 32 MiB on stdout.
    const oursOutput = async () => {
      const t0 = performance.now();
      const child = await runtime.spawn(
        { command: ['head', '-c', String(OUTPUT_BYTES), '/dev/zero'] },
        { taskId: 'bench-output' },
      );
      let bytes = 0;
      child.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
      child.stderr.resume();
      await child.wait();
      if (bytes !== OUTPUT_BYTES) throw new Error(`lost output: ${bytes} of ${OUTPUT_BYTES}`);
      return performance.now() - t0;
    };
    const rawOutputTimed = async () => {
      const t0 = performance.now();
      await rawOutput();
      return performance.now() - t0;
    };
    await oursOutput();
    await rawOutputTimed();
    const ourTimes: number[] = [];
    const rawTimes: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      ourTimes.push(await oursOutput());
      rawTimes.push(await rawOutputTimed());
    }
    const mibPerSecond = (ms: number) => OUTPUT_BYTES / 1024 / 1024 / (ms / 1000);
    results.push(
      compare(
        'docker container output throughput (32 MiB stdout)',
        'MiB/s',
        'higher',
        mibPerSecond(quantile(ourTimes, 0.5)),
        { name: 'raw attach', value: mibPerSecond(quantile(rawTimes, 0.5)) },
      ),
    );
  } finally {
    await supervisor.close();
    await runtime.dispose();
    agent.destroy();
  }
  return results;
}
