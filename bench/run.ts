/**
 * `pnpm bench`: overthere beside a baseline measured in the same run, with the
 * ratio. Pick suites with `pnpm bench spawn output rss`; default: all.
 * Results are also written to bench/results/latest.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { spawnBenchmarks } from './spawn-throughput.js';
import { outputBenchmarks } from './output-throughput.js';
import { rssBenchmarks } from './live-tasks-rss.js';
import { httpBenchmarks } from './http-agent.js';
import { levityBenchmarks } from './levity.js';
import { sshBenchmarks } from './ssh.js';
import { natsBenchmarks } from './nats.js';
import { smartmobBenchmarks } from './smartmob.js';
import { dockerBenchmarks } from './docker.js';
import { narcBenchmarks } from './narc.js';
import type { BenchResult } from './report.js';
import { printResults } from './report.js';

const suites: Record<string, () => Promise<BenchResult[]>> = {
  spawn: spawnBenchmarks,
  output: outputBenchmarks,
  rss: rssBenchmarks,
  http: httpBenchmarks,
  levity: levityBenchmarks,
  ssh: sshBenchmarks,
  nats: natsBenchmarks,
  smartmob: smartmobBenchmarks,
  docker: dockerBenchmarks,
  narc: narcBenchmarks,
};

const chosen = process.argv.slice(2).filter((name) => !name.startsWith('-'));
const names = chosen.length > 0 ? chosen : Object.keys(suites);
const results: BenchResult[] = [];
for (const name of names) {
  const suite = suites[name];
  if (!suite) throw new Error(`unknown suite ${name}; known: ${Object.keys(suites).join(', ')}`);
  process.stderr.write(`running ${name}…\n`);
  const suiteResults = await suite();
  printResults(suiteResults);
  results.push(...suiteResults);
}
const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
await mkdir(resultsDir, { recursive: true });
await writeFile(
  `${resultsDir}latest.json`,
  JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2),
);
