// Child of live-tasks-rss.ts: an agent that holds N live `sleep` tasks and reports its RSS,
// and that of the runtime's spawner process (its child; see runtime-local's spawner.ts).
// Plain JavaScript, so it can run on the built packages without a TypeScript loader:
// argv is the task count, then the module paths of core and runtime-local.
import { readFileSync, readdirSync } from 'node:fs';

const count = Number(process.argv[2] ?? 1000);
const { createSupervisor } = await import(process.argv[3] ?? '@overthere/core');
const { createLocalRuntime } = await import(process.argv[4] ?? '@overthere/runtime-local');
const runtime = createLocalRuntime();
const supervisor = await createSupervisor({ runtime });
const settle = async () => {
  global.gc?.();
  await new Promise((resolve) => setTimeout(resolve, 500));
  return process.memoryUsage().rss;
};
const idleRss = await settle();
const ids = [];
for (let started = 0; started < count; started += 50) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(50, count - started) }, () =>
      supervisor.create({ command: ['sleep', '600'] }),
    ),
  );
  ids.push(...batch.map((task) => task.id));
}
const liveRss = await settle();
const spawnerRss = spawnerRssBytes();
const live = supervisor.list({ state: 'running' }).length;
if (live !== count) throw new Error(`only ${live} of ${count} tasks running`);
await supervisor.close();
await runtime.dispose();
process.stdout.write(JSON.stringify({ idleRss, liveRss, spawnerRss }));

/** VmRSS of this process's child named overthere-spawner. */
function spawnerRssBytes() {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (!new RegExp(`^PPid:\\s*${process.pid}$`, 'm').test(status)) continue;
      if (!readFileSync(`/proc/${entry}/cmdline`, 'latin1').startsWith('overthere-spawner'))
        continue;
      return Number(/^VmRSS:\s*(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  throw new Error('no spawner process found');
}
