/**
 * A task writing 1 GiB: captured through the durable OutputLog (file store)
 * beside a raw pipe read of the same command.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileTaskStore, createSupervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { compare, type BenchResult } from './report.js';

const BYTES = 1024 ** 3;
const COMMAND = ['head', '-c', String(BYTES), '/dev/zero'];

function rawPipeRead(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(COMMAND[0]!, COMMAND.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let bytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    child.once('error', reject);
    child.once('close', () => resolve(bytes));
  });
}

export async function outputBenchmarks(): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'overthere-bench-output-'));
  const runtime = createLocalRuntime();
  const supervisor = await createSupervisor({ runtime, store: await createFileTaskStore({ dir }) });
  const mbPerSecond = (ms: number) => BYTES / 1024 / 1024 / (ms / 1000);
  try {
    let rawMs = Number.POSITIVE_INFINITY;
    let oursMs = Number.POSITIVE_INFINITY;
    let rssGrowth = 0;
    // Best of 3 each, alternating, so page-cache and CPU noise hit both alike.
    for (let round = 0; round < 3; round += 1) {
      let start = performance.now();
      const bytes = await rawPipeRead();
      if (bytes !== BYTES) throw new Error(`raw read ${bytes} bytes`);
      rawMs = Math.min(rawMs, performance.now() - start);

      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const sampler = setInterval(() => {
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }, 50);
      start = performance.now();
      const task = await supervisor.create({ command: COMMAND });
      await supervisor.wait(task.id);
      oursMs = Math.min(oursMs, performance.now() - start);
      clearInterval(sampler);
      rssGrowth = Math.max(rssGrowth, rssPeak - rssBefore);
      const captured = supervisor.output(task.id).bytes('stdout');
      if (captured !== BYTES) throw new Error(`captured ${captured} bytes`);
      await supervisor.remove(task.id);
    }
    return [
      compare(
        '1 GiB output through the durable OutputLog',
        'MB/s',
        'higher',
        mbPerSecond(oursMs),
        { name: 'raw pipe read', value: mbPerSecond(rawMs) },
        '≥ 0.8×',
        {
          'agent RSS growth MiB': rssGrowth / 1024 / 1024,
        },
      ),
    ];
  } finally {
    await supervisor.close();
    await runtime.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
