// Child of live-tasks-rss.ts: an agent that holds N live `sleep` tasks and reports its RSS.
import { createSupervisor } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';

const count = Number(process.argv[2] ?? 1000);
const runtime = createLocalRuntime();
const supervisor = await createSupervisor({ runtime });
const settle = async () => {
  global.gc?.();
  await new Promise((resolve) => setTimeout(resolve, 500));
  return process.memoryUsage().rss;
};
const idleRss = await settle();
const ids: string[] = [];
for (let started = 0; started < count; started += 50) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(50, count - started) }, () =>
      supervisor.create({ command: ['sleep', '600'] }),
    ),
  );
  ids.push(...batch.map((task) => task.id));
}
const liveRss = await settle();
const live = supervisor.list({ state: 'running' }).length;
if (live !== count) throw new Error(`only ${live} of ${count} tasks running`);
await supervisor.close();
await runtime.dispose();
process.stdout.write(JSON.stringify({ idleRss, liveRss }));
