/**
 * Agent RSS with 1000 live `sleep` tasks, in a fresh Node process so the
 * number is the agent's own and not this benchmark's leftovers. It runs the
 * built packages when they exist (`pnpm build`), as an agent is deployed: the
 * TypeScript loader alone adds tens of MiB.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compare, type BenchResult } from './report.js';

const TASKS = 1000;

export async function rssBenchmarks(): Promise<BenchResult[]> {
  const script = fileURLToPath(new URL('./live-tasks-agent.mjs', import.meta.url));
  const built = ['core', 'runtime-local'].map((name) =>
    fileURLToPath(new URL(`../packages/${name}/dist/index.js`, import.meta.url)),
  );
  const sources = ['core', 'runtime-local'].map((name) =>
    fileURLToPath(new URL(`../packages/${name}/src/index.ts`, import.meta.url)),
  );
  const fromDist = built.every((file) => existsSync(file));
  const args = fromDist
    ? [script, String(TASKS), ...built]
    : ['--import', 'tsx', script, String(TASKS), ...sources];
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
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
  const { idleRss, liveRss, spawnerRss } = JSON.parse(output) as {
    idleRss: number;
    liveRss: number;
    spawnerRss: number;
  };
  const mib = (bytes: number) => bytes / 1024 / 1024;
  return [
    compare(
      `agent + spawner RSS with ${TASKS} live sleep tasks (${fromDist ? 'built' : 'sources under tsx'})`,
      'MiB',
      'lower',
      mib(liveRss + spawnerRss),
      { name: 'idle agent', value: mib(idleRss) },
      '< 150 MB',
      {
        // The spawner process forks the tasks; it is part of the agent's footprint.
        'agent MiB': mib(liveRss),
        'spawner MiB': mib(spawnerRss),
        'agent per task KiB': (liveRss - idleRss) / 1024 / TASKS,
      },
    ),
  ];
}
