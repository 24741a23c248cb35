/**
 * smartmob-agent (a separate process on 127.0.0.1, as deployed) beside raw
 * `child_process.spawn` of the same command:
 *
 * - create → first console line: POST /create-process (fetch) for a small tar.gz
 *   served from loopback, then the WebSocket console until its first line
 *   (download, unpack, Procfile, spawn, output log, WebSocket); the baseline
 *   spawns `sh -c` with the same command and waits for its first stdout byte;
 * - console lines/s: a process that prints 200 000 lines, read through the
 *   WebSocket (one text frame per line); the baseline reads the same command's
 *   stdout through a pipe and counts newlines.
 */
import { spawn } from 'node:child_process';
import { buildArchive } from '../apps/smartmob/test/archives.js';
import {
  openConsole,
  startAgent,
  startFileServer,
  tempDir,
} from '../apps/smartmob/test/helpers.js';
import { compare, quantile, type BenchResult } from './report.js';

const READY_COMMAND = 'echo ready; exec sleep 60';
const CHATTY_LINES = 200_000;
const CHATTY_COMMAND = `seq 1 ${CHATTY_LINES}; exec sleep 60`;

/** Raw spawn → first stdout byte, in ms. */
function rawFirstLine(command: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: true,
    });
    child.once('error', reject);
    child.stdout.once('data', () => {
      resolve(performance.now() - started);
      process.kill(-(child.pid as number), 'SIGKILL');
    });
  });
}

/** Raw pipe lines/s for `seq 1 N`. */
function rawLinesPerSecond(lines: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('seq', ['1', String(lines)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let count = 0;
    child.once('error', reject);
    child.stdout.on('data', (chunk: Buffer) => {
      for (let index = chunk.indexOf(10); index !== -1; index = chunk.indexOf(10, index + 1)) {
        count += 1;
      }
    });
    child.once('close', () => {
      if (count !== lines) reject(new Error(`raw pipe counted ${count} lines`));
      else resolve((lines / (performance.now() - started)) * 1000);
    });
  });
}

export async function smartmobBenchmarks(): Promise<BenchResult[]> {
  const files = await startFileServer();
  const data = await tempDir('smartmob-bench-');
  const agent = await startAgent(data.dir, ['--quiet', '--kill-grace', '1s']);
  const results: BenchResult[] = [];
  const ws = agent.url.replace('http', 'ws');
  // fetch, not curl, so no client process start is in the numbers.
  const post = async (route: string, body: unknown) => {
    const response = await fetch(`${agent.url}${route}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text };
  };
  const createProcess = (_agent: unknown, body: unknown) => post('/create-process', body);
  const remove = async (slug: string) => {
    const response = await post(`/delete-process/${slug}`, {});
    if (response.status !== 200) throw new Error(`delete ${slug}: ${response.status}`);
  };
  try {
    const readyUrl = files.serve('ready.tar.gz', {
      body: await buildArchive('tar.gz', [{ name: 'Procfile', data: `web: ${READY_COMMAND}\n` }]),
    });
    const ours: number[] = [];
    const raw: number[] = [];
    for (let round = 0; round < 22; round += 1) {
      raw.push(await rawFirstLine(READY_COMMAND));
      const started = performance.now();
      const created = await createProcess(agent, {
        app: 'bench',
        node: `ready.${round}`,
        process_type: 'web',
        source_url: readyUrl,
      });
      if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
      const console = await openConsole(`${ws}/attach-console/bench.ready.${round}`);
      await console.waitForLines(1);
      ours.push(performance.now() - started);
      await console.close();
      await remove(`bench.ready.${round}`);
    }
    // The first two warm up both sides.
    ours.splice(0, 2);
    raw.splice(0, 2);
    results.push(
      compare(
        'smartmob create → first console line (tar.gz, fetch + ws) p50',
        'ms',
        'lower',
        quantile(ours, 0.5),
        { name: 'raw spawn → first stdout byte', value: quantile(raw, 0.5) },
        undefined,
        { 'p90 ms': quantile(ours, 0.9), 'raw p90 ms': quantile(raw, 0.9) },
      ),
    );

    const chattyUrl = files.serve('chatty.tar.gz', {
      body: await buildArchive('tar.gz', [{ name: 'Procfile', data: `web: ${CHATTY_COMMAND}\n` }]),
    });
    const rates: number[] = [];
    const rawRates: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      rawRates.push(await rawLinesPerSecond(CHATTY_LINES));
      const created = await createProcess(agent, {
        app: 'bench',
        node: `chatty.${round}`,
        process_type: 'web',
        source_url: chattyUrl,
      });
      if (created.status !== 201) throw new Error(`create: ${created.status}`);
      const console = await openConsole(`${ws}/attach-console/bench.chatty.${round}`);
      await console.waitForLines(1, 30_000);
      const started = performance.now();
      const firstCount = console.lines.length;
      await console.waitForLines(CHATTY_LINES, 120_000);
      rates.push(((CHATTY_LINES - firstCount) / (performance.now() - started)) * 1000);
      if (console.lines[CHATTY_LINES - 1] !== String(CHATTY_LINES)) {
        throw new Error(`last line ${console.lines[CHATTY_LINES - 1]}`);
      }
      await console.close();
      await remove(`bench.chatty.${round}`);
    }
    results.push(
      compare(
        `smartmob console lines/s through the WebSocket (${CHATTY_LINES} lines)`,
        'lines/s',
        'higher',
        quantile(rates, 0.5),
        { name: 'raw pipe', value: quantile(rawRates, 0.5) },
      ),
    );
  } finally {
    await agent.stop();
    await files.close();
    await data.remove();
  }
  return results;
}
