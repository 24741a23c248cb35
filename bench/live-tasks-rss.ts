/**
 * Agent RSS with 1000 live `sleep` tasks, in a fresh Node process so the
 * number is the agent's own and not this benchmark's leftovers.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compare, type BenchResult } from './report.js';

const TASKS = 1000;

export async function rssBenchmarks(): Promise<BenchResult[]> {
  const script = fileURLToPath(new URL('./live-tasks-agent.ts', import.meta.url));
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, String(TASKS)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`agent exited ${code}`)),
    );
  });
  const { idleRss, liveRss } = JSON.parse(output) as { idleRss: number; liveRss: number };
  const mib = (bytes: number) => bytes / 1024 / 1024;
  return [
    compare(
      `agent RSS with ${TASKS} live sleep tasks`,
      'MiB',
      'lower',
      mib(liveRss),
      { name: 'idle agent', value: mib(idleRss) },
      '< 150 MB',
      {
        'per task KiB': (liveRss - idleRss) / 1024 / TASKS,
      },
    ),
  ];
}
