/**
 * narc: `task.start` → SSH shell prompt latency, beside doing the same by
 * hand with the docker CLI in the same run:
 *
 * - narc: publish `task.start` on NATS, then `sshpass ssh -tt TASK@127.0.0.1`
 *   (retried while the task is not there yet) until the shell's prompt shows;
 * - baseline: `docker run -d` of an idle container, then `docker exec -t … sh`
 *   until the prompt shows.
 *
 * Both use the test image, no network, and a PTY for the shell. The narc agent
 * runs in this process on the shared nats-server of `scripts/services.sh`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openNatsConnection } from '@overthere/transport-nats';
import { createNarcAgent } from '../apps/narc/src/narc-agent.js';
import { compare, quantile, type BenchResult } from './report.js';

const NATS_URL = process.env.OVERTHERE_NATS_URL ?? 'nats://127.0.0.1:4222';
const IMAGE = process.env.OVERTHERE_TEST_IMAGE ?? 'overthere-test:busybox';
const RUNS = 8;
/** busybox sh's prompt for root ends in `# ` (its banner has none), then line-editor escapes. */
const PROMPT = /[#$] /;

/** Start `file args`, resolve with the child once stdout ends with a prompt, or undefined if it exits first. */
function untilPrompt(file: string, args: readonly string[]): Promise<ChildProcess | undefined> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let done = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (!done && PROMPT.test(output)) {
        done = true;
        resolve(child);
      }
    });
    child.stderr.resume();
    child.stdin.on('error', () => undefined);
    child.once('error', reject);
    child.once('close', () => {
      if (!done) resolve(undefined);
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('close', () => resolve()));
}

function docker(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(stdout.trim()) : reject(new Error(`docker ${args[0]}: ${stderr}`)),
    );
  });
}

/** `docker run -d` + `docker exec -t sh` until the prompt; ms. */
async function baselineOnce(): Promise<number> {
  const started = performance.now();
  const id = await docker(['run', '-d', '--network', 'none', '--init', IMAGE, 'sleep', '3600']);
  const shell = await untilPrompt('docker', ['exec', '-t', id, 'sh']);
  const elapsed = performance.now() - started;
  if (shell === undefined) throw new Error('docker exec ended before a prompt');
  shell.kill('SIGKILL');
  await exited(shell);
  await docker(['rm', '-f', id]);
  return elapsed;
}

/** narc task.start latency to the SSH shell prompt, then the median of docker's. */
export async function narcBenchmarks(): Promise<BenchResult[]> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'overthere-bench-narc-'));
  const agent = await createNarcAgent({
    agentId: `bench-${process.pid}`,
    nats: { servers: NATS_URL },
    dataDir,
    sshPort: 0,
    image: IMAGE,
    pool: `bench${process.pid}`,
  });
  const connection = await openNatsConnection({ servers: NATS_URL });
  const narcMs: number[] = [];
  const baselineMs: number[] = [];
  try {
    for (let run = 0; run < RUNS; run += 1) {
      const task = `bench-${process.pid}-${run}`;
      const token = randomBytes(12).toString('hex');
      const started = performance.now();
      connection.publish('task.start', JSON.stringify({ task, secure_token: token }));
      let shell: ChildProcess | undefined;
      for (let attempt = 0; shell === undefined; attempt += 1) {
        if (attempt > 200) throw new Error(`no prompt from task ${task}`);
        // Until the task exists the login is refused (exit 255) and tried again.
        shell = await untilPrompt('sshpass', [
          '-p',
          token,
          'ssh',
          '-tt',
          '-p',
          String(agent.ssh.port),
          '-F',
          '/dev/null',
          '-o',
          'StrictHostKeyChecking=no',
          '-o',
          'UserKnownHostsFile=/dev/null',
          '-o',
          'LogLevel=ERROR',
          '-o',
          'PubkeyAuthentication=no',
          '-o',
          'NumberOfPasswordPrompts=1',
          `${task}@127.0.0.1`,
        ]);
      }
      narcMs.push(performance.now() - started);
      shell.stdin?.write('exit\n');
      await exited(shell);
      // The container goes with the shell; wait for it before the next run.
      while (agent.tasks().some((info) => info.id === task)) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      baselineMs.push(await baselineOnce());
    }
  } finally {
    await connection.close();
    await agent.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return [
    compare(
      'narc task.start → SSH shell prompt (median)',
      'ms',
      'lower',
      quantile(narcMs, 0.5),
      { name: 'docker run -d + docker exec -t sh', value: quantile(baselineMs, 0.5) },
      undefined,
      { narcP95: quantile(narcMs, 0.95), baselineP95: quantile(baselineMs, 0.95) },
    ),
  ];
}
