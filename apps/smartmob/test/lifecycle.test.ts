/**
 * Supervised processes: restarts with growing delays, delete with kill
 * escalation, a console that resumes without losing or repeating lines, and
 * the agent's own lifecycle (SIGTERM, SIGKILL, restart restoring processes
 * with their earlier output).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildArchive } from './archives.js';
import {
  createProcess,
  curl,
  openConsole,
  pidsMatching,
  processExists,
  startAgent,
  startFileServer,
  statusOf,
  tempDir,
  waitFor,
  waitForStatus,
  type FileServer,
  type RunningAgent,
} from './helpers.js';

let files: FileServer;

beforeAll(async () => {
  files = await startFileServer();
});

afterAll(async () => {
  await files?.close();
});

/** Serve a Procfile with one `web` entry; returns the URL. */
async function serveProcfile(name: string, command: string): Promise<string> {
  return files.serve(name, {
    body: await buildArchive('tar.gz', [{ name: 'Procfile', data: `web: ${command}\n` }]),
  });
}

const ws = (agent: RunningAgent) => agent.url.replace('http', 'ws');

describe('supervised processes', () => {
  let agent: RunningAgent;
  let data: { dir: string; remove(): Promise<void> };

  beforeAll(async () => {
    data = await tempDir('smartmob-life-');
    agent = await startAgent(data.dir);
  });

  afterAll(async () => {
    await agent?.stop();
    await data?.remove();
  });

  it('restarts a process that exits, with growing delays, counting restarts', async () => {
    const url = await serveProcfile('exits', 'echo "start $(date +%s%3N)"; exit 3');
    expect(
      (
        await createProcess(agent, {
          app: 'life',
          node: 'exits',
          process_type: 'web',
          source_url: url,
        })
      ).status,
    ).toBe(201);
    const console = await openConsole(`${ws(agent)}/attach-console/life.exits`);
    const lines = await console.waitForLines(5, 20_000);
    const starts = lines.slice(0, 5).map((line) => Number(/^start (\d+)$/.exec(line)?.[1]));
    const gaps = starts.slice(1).map((time, index) => time - (starts[index] as number));
    // 100 ms, then 200, 400, 800 (--restart-initial-delay 100ms, factor 2).
    gaps.forEach((gap, index) => expect(gap).toBeGreaterThanOrEqual(100 * 2 ** index - 5));
    expect(gaps[3]).toBeGreaterThan((gaps[0] as number) + 500);
    const status = await waitForStatus(
      agent,
      'life.exits',
      (current) => (current.restarts ?? 0) >= 4,
    );
    expect(status).toMatchObject({ state: 'processing', exit: { code: 3, signal: null } });
    await console.close();
    expect((await curl(`${agent.url}/delete-process/life.exits`, { data: '{}' })).status).toBe(200);
  }, 30_000);

  it('delete stops a process for good: SIGTERM, the grace period, SIGKILL; no restart follows', async () => {
    const marker = `smartmob-stubborn-${randomBytes(4).toString('hex')}`;
    const url = await serveProcfile(
      'stubborn',
      `trap "echo ignoring TERM" TERM; echo ready; while true; do sleep 0.05; done # ${marker}`,
    );
    await createProcess(agent, {
      app: 'life',
      node: 'stubborn',
      process_type: 'web',
      source_url: url,
    });
    const console = await openConsole(`${ws(agent)}/attach-console/life.stubborn`);
    await console.waitForLines(1);
    const { pid } = await waitForStatus(
      agent,
      'life.stubborn',
      (status) => status.pid !== undefined,
    );
    expect(processExists(pid as number)).toBe(true);
    expect(await pidsMatching(marker)).toContain(pid);

    const started = Date.now();
    const response = await curl(`${agent.url}/delete-process/life.stubborn`, { data: '{}' });
    const took = Date.now() - started;
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({});
    // It ignored SIGTERM (and said so), so it took the 1 s grace and a SIGKILL.
    expect(took).toBeGreaterThanOrEqual(900);
    expect(console.lines).toContain('ignoring TERM');
    expect(processExists(pid as number)).toBe(false);
    expect(await statusOf(agent, 'life.stubborn')).toBeUndefined();
    // Past several restart delays: still nothing running.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await pidsMatching(marker)).toEqual([]);
    await console.close();
  }, 30_000);

  it('a reconnecting console resumes at its cursor without losing or repeating lines', async () => {
    // 100 numbered lines every 20 ms.
    const url = await serveProcfile(
      'chatty',
      'i=0; while true; do seq $i $((i+99)) | sed "s/^/line /"; i=$((i+100)); sleep 0.02; done',
    );
    await createProcess(agent, {
      app: 'life',
      node: 'chatty',
      process_type: 'web',
      source_url: url,
    });
    const expected = (from: number, count: number) =>
      Array.from({ length: count }, (_, index) => `line ${from + index}`);

    const first = await openConsole(`${ws(agent)}/attach-console/life.chatty`);
    await first.waitForLines(150);
    await first.close();
    const received = [...first.lines];
    expect(received).toEqual(expected(0, received.length));

    // Lines keep coming while nobody listens; the next connection picks up where the first stopped.
    const second = await openConsole(
      `${ws(agent)}/attach-console/life.chatty?cursor=${received.length}`,
    );
    await second.waitForLines(700);
    await second.close();
    received.push(...second.lines);
    expect(received).toEqual(expected(0, received.length));

    // A cursor past several checkpoints (every 256 lines), and one at 0 that replays from the start.
    const third = await openConsole(`${ws(agent)}/attach-console/life.chatty?cursor=600`);
    expect((await third.waitForLines(10)).slice(0, 10)).toEqual(expected(600, 10));
    await third.close();
    const replay = await openConsole(`${ws(agent)}/attach-console/life.chatty`);
    expect((await replay.waitForLines(300)).slice(0, 300)).toEqual(expected(0, 300));
    await replay.close();
    expect((await curl(`${agent.url}/delete-process/life.chatty`, { data: '{}' })).status).toBe(
      200,
    );
  }, 30_000);
});

describe('backoff reset', () => {
  it('a run longer than --restart-reset-after brings the delay back to the initial one', async () => {
    const data = await tempDir('smartmob-reset-');
    // Runs of 400 ms count as stable past 300 ms: every restart waits the initial 100 ms.
    const agent = await startAgent(data.dir, ['--restart-reset-after', '300ms']);
    try {
      const url = await serveProcfile('stable', 'echo "start $(date +%s%3N)"; sleep 0.4; exit 1');
      await createProcess(agent, {
        app: 'reset',
        node: 'web',
        process_type: 'web',
        source_url: url,
      });
      const console = await openConsole(`${ws(agent)}/attach-console/reset.web`);
      const lines = await console.waitForLines(5, 20_000);
      const starts = lines.slice(0, 5).map((line) => Number(/^start (\d+)$/.exec(line)?.[1]));
      const gaps = starts.slice(1).map((time, index) => time - (starts[index] as number));
      // Without the reset they would be 500, 600, 800, 1200 ms.
      expect(gaps[3]).toBeLessThan((gaps[0] as number) + 350);
      await console.close();
    } finally {
      await agent.stop();
      await data.remove();
    }
  }, 30_000);
});

describe('the agent itself', () => {
  it('SIGTERM stops processes gracefully and exits 0; a restart starts them again with their earlier output', async () => {
    const data = await tempDir('smartmob-restart-');
    const marker = `smartmob-service-${randomBytes(4).toString('hex')}`;
    const url = await serveProcfile(
      'service',
      `trap "echo stopping gracefully; exit 0" TERM; echo "up $$"; while true; do sleep 0.05; done # ${marker}`,
    );
    try {
      let agent = await startAgent(data.dir);
      await createProcess(agent, {
        app: 'svc',
        node: 'web.0',
        process_type: 'web',
        source_url: url,
      });
      const console = await openConsole(`${ws(agent)}/attach-console/svc.web.0`);
      await console.waitForLines(1);
      const { pid } = await waitForStatus(agent, 'svc.web.0', (status) => status.pid !== undefined);
      expect(await pidsMatching(marker)).toContain(pid);

      expect(await agent.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(processExists(pid as number)).toBe(false);
      expect(await pidsMatching(marker)).toEqual([]);
      expect((await console.closed).code).toBe(1001);
      // The process's own output went to the agent's stdout, with time and slug.
      expect(agent.stdout()).toMatch(/^\S+Z svc\.web\.0: up \d+$/m);

      agent = await startAgent(data.dir);
      const restored = await waitForStatus(
        agent,
        'svc.web.0',
        (status) => status.pid !== undefined,
      );
      expect(restored.pid).not.toBe(pid);
      expect(restored.state).toBe('processing');
      const replay = await openConsole(`${ws(agent)}/attach-console/svc.web.0`);
      // The group's SIGTERM also ends the shell's `sleep`, which dash reports as "Terminated".
      const lines = await waitFor('the new run in the replay', () =>
        replay.lines.includes(`up ${restored.pid}`) ? replay.lines : undefined,
      );
      expect(lines.filter((line) => line !== 'Terminated')).toEqual([
        `up ${pid}`,
        'stopping gracefully',
        `up ${restored.pid}`,
      ]);
      await replay.close();

      // Killed outright, the agent leaves no process behind; the next one starts it again.
      expect(await agent.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
      await waitFor(
        'the service to die with the agent',
        async () => ((await pidsMatching(marker)).length === 0 ? true : undefined),
        5_000,
      );
      agent = await startAgent(data.dir);
      const again = await waitForStatus(agent, 'svc.web.0', (status) => status.pid !== undefined);
      expect(processExists(again.pid as number)).toBe(true);
      expect(again.restarts).toBeGreaterThanOrEqual(2);
      expect(await agent.stop('SIGINT')).toEqual({ code: 0, signal: null });
      expect(await pidsMatching(marker)).toEqual([]);
    } finally {
      await data.remove();
    }
  }, 60_000);
});
