import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { descendantsOf, waitForDeath } from './helpers.js';

const repositoryRoot = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/sigkill-agent.ts', import.meta.url));

it('leaves no descendant alive when the agent is killed with SIGKILL', async () => {
  // From the repository root, tsx maps the workspace packages to their sources (tsconfig paths).
  const agent = spawn(process.execPath, ['--import', 'tsx', fixture], {
    cwd: repositoryRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => agent.once('exit', resolve));
  try {
    const report = await new Promise<string>((resolve, reject) => {
      createInterface({ input: agent.stdout }).once('line', resolve);
      agent.once('exit', (code) => reject(new Error(`agent exited early with ${code}`)));
    });
    const { pids } = JSON.parse(report) as { pids: number[] };
    expect(pids.length).toBeGreaterThanOrEqual(7);

    const descendants = await descendantsOf(agent.pid!);
    // Every task, at least one grandchild per task but the first, and the watchdog.
    expect(descendants).toEqual(expect.arrayContaining(pids));
    expect(descendants.length).toBeGreaterThanOrEqual(pids.length * 2);

    agent.kill('SIGKILL');
    await exited;
    expect(await waitForDeath(descendants, 5_000)).toEqual([]);
  } finally {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await exited;
  }
});
