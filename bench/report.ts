import { spawn } from 'node:child_process';

/** One comparison: overthere's number beside the baseline's, and their ratio. */
export interface BenchResult {
  name: string;
  unit: string;
  /** Higher is better for rates, lower for latencies and memory. */
  better: 'higher' | 'lower';
  overthere: number;
  baseline: number | undefined;
  baselineName: string | undefined;
  /** overthere / baseline, oriented so that > 1 means overthere is better. */
  ratio: number | undefined;
  /** The issue's target for the ratio or the absolute value, for the printout. */
  target?: string;
  extra?: Record<string, number>;
}

/** Build a result; the ratio is oriented so that ≥ 1 means overthere is at least as good. */
export function compare(
  name: string,
  unit: string,
  better: 'higher' | 'lower',
  overthere: number,
  baseline?: { name: string; value: number },
  target?: string,
  extra?: Record<string, number>,
): BenchResult {
  const ratio =
    baseline === undefined
      ? undefined
      : better === 'higher'
        ? overthere / baseline.value
        : baseline.value / overthere;
  return {
    name,
    unit,
    better,
    overthere,
    baseline: baseline?.value,
    baselineName: baseline?.name,
    ratio,
    ...(target === undefined ? {} : { target }),
    ...(extra === undefined ? {} : { extra }),
  };
}

const format = (value: number | undefined) =>
  value === undefined ? '-' : value >= 100 ? value.toFixed(0) : value.toFixed(2);

/** Print results as an aligned table on stdout. */
export function printResults(results: readonly BenchResult[]): void {
  for (const result of results) {
    const baseline =
      result.baseline === undefined
        ? ''
        : `  ${result.baselineName}: ${format(result.baseline)} ${result.unit}`;
    const ratio = result.ratio === undefined ? '' : `  ratio ${result.ratio.toFixed(2)}×`;
    const target = result.target ? `  (target ${result.target})` : '';
    const extra = result.extra
      ? `  [${Object.entries(result.extra)
          .map(([key, value]) => `${key} ${format(value)}`)
          .join(', ')}]`
      : '';
    process.stdout.write(
      `${result.name}: ${format(result.overthere)} ${result.unit}${baseline}${ratio}${target}${extra}\n`,
    );
  }
}

/** The q-quantile (0..1) of `values`. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

/** Run `task` `total` times with at most `concurrency` at once; returns per-run latencies (ms) and wall time. */
export async function runConcurrently(
  total: number,
  concurrency: number,
  task: () => Promise<void>,
): Promise<{ latenciesMs: number[]; wallMs: number }> {
  const latenciesMs: number[] = [];
  let started = 0;
  const begin = performance.now();
  const worker = async () => {
    while (started < total) {
      started += 1;
      const t0 = performance.now();
      await task();
      latenciesMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { latenciesMs, wallMs: performance.now() - begin };
}

/** The baseline for task start→exit: `/bin/true` by raw child_process.spawn, in its own group like a task. */
export function rawSpawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.resume();
    child.stderr.resume();
    child.once('error', reject);
    child.once('close', () => resolve());
  });
}
