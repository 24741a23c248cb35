/**
 * The streaming benchmark's Node sides, each in a fresh process so that
 * neither inherits the bench process's heap (its collections slowed a
 * baseline run inside it to half its speed):
 * - `pipe-to-tcp`: `head -c 1G /dev/zero` through a Node pipe into a loopback
 *   TCP socket, counted by the reader; prints the milliseconds.
 * - `http-client URL ID`: follows the stdout of the gated 1 GiB task ID on the
 *   agent at URL as raw chunked HTTP with Node's http client, lets the task
 *   start once it follows, and prints the milliseconds from then to the end.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const GIB = 1024 ** 3;

async function pipeToTcp(): Promise<number> {
  let received = 0;
  const server = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const child = spawn('head', ['-c', String(GIB), '/dev/zero'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      child.stdout.pipe(socket);
      child.once('error', reject);
    });
    socket.once('close', () => resolve());
  });
  while (received < GIB) await new Promise((resolve) => setImmediate(resolve));
  const ms = performance.now() - start;
  server.close();
  return ms;
}

async function httpClient(url: string, id: string): Promise<number> {
  let start = 0;
  const bytes = await new Promise<number>((resolve, reject) => {
    const req = request(`${url}/v1/tasks/${id}/output?follow=1&stream=stdout`, (res) => {
      let count = 0;
      res.on('data', (chunk: Buffer) => {
        count += chunk.length;
      });
      res.once('end', () => resolve(count));
      res.once('error', reject);
      // Following now: let the task start writing.
      start = performance.now();
      startGatedTask(url, id).catch(reject);
    });
    req.once('error', reject);
    req.end();
  });
  if (bytes !== GIB) throw new Error(`streamed ${bytes} bytes`);
  return performance.now() - start;
}

/** The line a gated task (see http-agent.ts) waits for on stdin before it writes its 1 GiB. */
export async function startGatedTask(url: string, id: string): Promise<void> {
  const response = await fetch(`${url}/v1/tasks/${id}/stdin?eof=1`, { method: 'POST', body: '\n' });
  if (response.status !== 204)
    throw new Error(`stdin: ${response.status} ${await response.text()}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, url, id] = process.argv.slice(2);
  const ms = mode === 'pipe-to-tcp' ? await pipeToTcp() : await httpClient(url ?? '', id ?? '');
  process.stdout.write(`${ms}\n`);
}
