import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskInfo } from './task.js';
import { createFileTaskStore } from './task-store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'overthere-task-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function record(
  id: string,
  state: TaskInfo['state'] = 'running',
  createdAt = '2026-01-01T00:00:00.000Z',
): TaskInfo {
  return {
    id,
    spec: { command: ['true'] },
    runtime: 'memory',
    state,
    createdAt,
    restarts: 0,
  } as unknown as TaskInfo;
}

const journal = () => join(dir, 'tasks.jsonl');

describe('file task store', () => {
  it('keeps the newest version of each record across a reopen, and forgets deleted ones', async () => {
    const store = await createFileTaskStore({ dir });
    await Promise.all([
      store.save(record('a')),
      store.save(record('b', 'running', '2026-01-02T00:00:00.000Z')),
    ]);
    await store.save(record('a', 'exited'));
    await mkdir(store.outputDir('b')!, { recursive: true });
    await store.delete('b');
    await store.save(record('c', 'running', '2025-12-31T00:00:00.000Z'));
    await store.close?.();
    await expect(stat(join(dir, 'tasks', 'b'))).rejects.toMatchObject({ code: 'ENOENT' });

    const reopened = await createFileTaskStore({ dir });
    const loaded = await reopened.load();
    expect(loaded.map((task) => [task.id, task.state])).toEqual([
      ['c', 'running'],
      ['a', 'exited'],
    ]);
    await reopened.close?.();
  });

  it('group-commits saves made while a write is in flight, newest version only', async () => {
    const store = await createFileTaskStore({ dir });
    const before = (await readFile(journal(), 'utf8')).length;
    const saves = [];
    for (let index = 0; index < 200; index += 1)
      saves.push(store.save(record(`t${index % 10}`, index < 190 ? 'running' : 'exited')));
    await Promise.all(saves);
    const lines = (await readFile(journal(), 'utf8')).slice(before).trimEnd().split('\n');
    // One batch of the first tick (10 tasks), not 200 lines.
    expect(lines.length).toBeLessThanOrEqual(20);
    const reopened = await createFileTaskStore({ dir });
    expect((await reopened.load()).every((task) => task.state === 'exited')).toBe(true);
    await Promise.all([store.close?.(), reopened.close?.()]);
  });

  it('ignores a torn last line and unreadable lines', async () => {
    const first = await createFileTaskStore({ dir });
    await first.save(record('kept', 'exited'));
    await first.close?.();
    await appendFile(journal(), 'not json\n{"id":"torn","sta');
    const store = await createFileTaskStore({ dir });
    expect((await store.load()).map((task) => task.id)).toEqual(['kept']);
    // Compacted at open: the torn line is gone and new lines start a line.
    await store.save(record('after'));
    await store.close?.();
    const reopened = await createFileTaskStore({ dir });
    expect((await reopened.load()).map((task) => task.id).sort()).toEqual(['after', 'kept']);
    await reopened.close?.();
  });

  it('compacts the journal once it is mostly old versions', async () => {
    const store = await createFileTaskStore({ dir });
    const padding = 'x'.repeat(2000);
    for (let index = 0; index < 800; index += 1) {
      await store.save({ ...record('busy', 'running'), padding } as unknown as TaskInfo);
    }
    await store.close?.();
    // 800 versions of ~2 KB would be 1.6 MB; compaction keeps it near one.
    expect((await stat(journal())).size).toBeLessThan(1024 * 1024 + 10_000);
    const reopened = await createFileTaskStore({ dir });
    expect(await reopened.load()).toHaveLength(1);
    await reopened.close?.();
  });

  it('moves records of the per-task layout into the journal', async () => {
    await mkdir(join(dir, 'tasks', 'old'), { recursive: true });
    await writeFile(
      join(dir, 'tasks', 'old', 'task.json'),
      JSON.stringify(record('old', 'exited')),
    );
    await mkdir(join(dir, 'tasks', 'bad'), { recursive: true });
    await writeFile(join(dir, 'tasks', 'bad', 'task.json'), '{');
    const store = await createFileTaskStore({ dir });
    expect((await store.load()).map((task) => task.id)).toEqual(['old']);
    await expect(stat(join(dir, 'tasks', 'old', 'task.json'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await store.close?.();
    const reopened = await createFileTaskStore({ dir });
    expect((await reopened.load()).map((task) => task.id)).toEqual(['old']);
    await reopened.close?.();
  });

  it('rejects an invalid id', async () => {
    const store = await createFileTaskStore({ dir });
    expect(() => store.save(record('../x'))).toThrow(/invalid task id/);
    await store.close?.();
  });
});
