// Many tasks at once: 200 concurrent tasks, 50 of them followed over HTTP by
// the package's client; every byte arrives and memory stays bounded.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { TaskInfo } from '@overthere/core';
import { numbered, sh, startAgent, type TestAgent } from './helpers.js';

const TASKS = 200;
const FOLLOWERS = 50;
const LINES = 20_000;

let t: TestAgent;
beforeAll(async () => {
  t = await startAgent();
});
afterAll(async () => {
  await t.close();
});

it(`runs ${TASKS} concurrent tasks with ${FOLLOWERS} followers: every byte delivered, RSS bounded`, async () => {
  const expected = numbered(LINES);
  // Warm up (module loading, first spawn) before the baseline.
  await t.client.wait((await t.client.create({ command: ['true'] })).id);
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  try {
    // Every task waits for EOF on stdin, so all of them are running at once.
    const tasks: TaskInfo[] = await Promise.all(
      Array.from({ length: TASKS }, () =>
        t.client.create({ command: sh(`read line; seq 1 ${LINES}`), stdin: 'pipe' }),
      ),
    );
    expect((await t.client.list({ state: 'running' })).length).toBeGreaterThanOrEqual(TASKS);
    const followed = tasks.filter((_, index) => index % (TASKS / FOLLOWERS) === 0);
    const followers = followed.map(async (task) => {
      const chunks: Buffer[] = [];
      let end: TaskInfo | undefined;
      for await (const event of t.client.output(task.id, { follow: true })) {
        if (event.type === 'frame') chunks.push(event.data);
        else if (event.type === 'end') end = event.task;
        else throw new Error(`unexpected ${event.type}`);
      }
      return { text: Buffer.concat(chunks).toString(), end };
    });
    await Promise.all(tasks.map((task) => t.client.closeStdin(task.id)));
    const results = await Promise.all(followers);
    expect(results).toHaveLength(FOLLOWERS);
    for (const result of results) {
      expect(result.end?.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
      expect(result.text.length).toBe(expected.length);
      expect(result.text === expected).toBe(true);
    }
    const finals = await Promise.all(tasks.map((task) => t.client.wait(task.id)));
    expect(finals.every((task) => task.exit?.code === 0)).toBe(true);
    for (const task of tasks) {
      expect((await t.supervisor.output(task.id).text('stdout')).length).toBe(expected.length);
    }
  } finally {
    clearInterval(sampler);
  }
  const grewMiB = (peak - baseline) / 1024 / 1024;
  console.log(
    `load: RSS baseline ${(baseline / 1048576).toFixed(0)} MiB, peak +${grewMiB.toFixed(0)} MiB`,
  );
  expect(grewMiB).toBeLessThan(200);
});
