/**
 * Start→exit of `/bin/true`: supervisor + runtime-local beside raw
 * `child_process.spawn`, at concurrency 1 and 16.
 */
import { createSupervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { compare, quantile, runConcurrently, type BenchResult, rawSpawnTrue } from './report.js';

export async function spawnBenchmarks(): Promise<BenchResult[]> {
  const runtime = createLocalRuntime();
  const supervisor = await createSupervisor({ runtime, ttlMs: 0 });
  const viaSupervisor = async () => {
    const task = await supervisor.create({ command: ['/bin/true'] });
    await supervisor.wait(task.id);
  };
  const results: BenchResult[] = [];
  try {
    for (const [concurrency, total] of [
      [1, 400],
      [16, 1600],
    ] as const) {
      // Warm both paths, then alternate rounds so machine noise hits both alike.
      await runConcurrently(20, concurrency, rawSpawnTrue);
      await runConcurrently(20, concurrency, viaSupervisor);
      const raw = { latenciesMs: [] as number[], wallMs: 0 };
      const ours = { latenciesMs: [] as number[], wallMs: 0 };
      for (let round = 0; round < 4; round += 1) {
        const r = await runConcurrently(total / 4, concurrency, rawSpawnTrue);
        const o = await runConcurrently(total / 4, concurrency, viaSupervisor);
        raw.latenciesMs.push(...r.latenciesMs);
        raw.wallMs += r.wallMs;
        ours.latenciesMs.push(...o.latenciesMs);
        ours.wallMs += o.wallMs;
      }
      const rate = (run: { wallMs: number }) => (total / run.wallMs) * 1000;
      results.push(
        compare(
          `spawn /bin/true c=${concurrency} throughput`,
          'tasks/s',
          'higher',
          rate(ours),
          { name: 'raw spawn', value: rate(raw) },
          '≥ 0.9×',
          {
            'p50 ms': quantile(ours.latenciesMs, 0.5),
            'p99 ms': quantile(ours.latenciesMs, 0.99),
            'raw p50 ms': quantile(raw.latenciesMs, 0.5),
            'raw p99 ms': quantile(raw.latenciesMs, 0.99),
          },
        ),
      );
    }
  } finally {
    await supervisor.close();
    await runtime.dispose();
  }
  return results;
}
