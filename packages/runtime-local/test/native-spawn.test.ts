// The native spawner (posix_spawn addon) against real processes: what a child
// gets (session, signals, descriptors, PATH lookup) must match the Node spawner.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noopLogger } from '@overthere/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNativeSpawner, nativeSpawnSupport } from '../src/native-spawn.js';
import {
  createSpawner,
  SpawnError,
  type SpawnRequest,
  type Spawner,
  type WatchTable,
} from '../src/spawner.js';
import { waitForDeath } from './helpers.js';

const support = nativeSpawnSupport();

/** The Node spawner as the watchdog, reading the native spawner's shared table. */
const nodeSpawner = (watchTable: WatchTable | undefined) =>
  createSpawner({ logger: noopLogger, ...(watchTable === undefined ? {} : { watchTable }) });

describe('native spawn', () => {
  it('is built and loads (required in CI; elsewhere the Node spawner stands in)', () => {
    if (!process.env.CI && !support.available) {
      console.warn(`native spawn unavailable here: ${support.reason}`);
      return;
    }
    expect(support).toEqual({ available: true });
  });
});

describe.runIf(support.available)('native spawner', () => {
  const env = Object.freeze({ PATH: process.env.PATH ?? '/usr/bin:/bin', GREETING: 'hi' });
  let spawner: Spawner;
  let dir: string;

  beforeAll(async () => {
    spawner = createNativeSpawner(nodeSpawner)!;
    dir = await mkdtemp(join(tmpdir(), 'overthere-native-'));
  });
  afterAll(async () => {
    await spawner.close();
    await rm(dir, { recursive: true, force: true });
  });

  function request(file: string, args: string[], more: Partial<SpawnRequest> = {}): SpawnRequest {
    return { file, args, cwd: '/', env, credentials: undefined, stdin: false, ...more };
  }

  async function collect(stream: NodeJS.ReadableStream): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString();
  }

  async function run(req: SpawnRequest, input?: string) {
    const child = await spawner.spawn(req);
    if (input !== undefined) child.stdin!.end(input);
    const [stdout, stderr, exit] = await Promise.all([
      collect(child.stdout),
      collect(child.stderr),
      child.exit,
    ]);
    return { pid: child.pid, stdout, stderr, exit };
  }

  it('hands back pipes of a child in its own session, stdin with EOF, and its exit', async () => {
    const result = await run(
      request('sh', ['-c', 'echo "$GREETING $(cat)"; ps -o sid= -p $$; echo oops >&2; exit 3'], {
        stdin: true,
      }),
      'there',
    );
    const [greeting, sid] = result.stdout.trim().split('\n');
    expect(greeting).toBe('hi there');
    expect(Number(sid)).toBe(result.pid);
    expect(result.stderr).toBe('oops\n');
    expect(result.exit).toEqual({ code: 3, signal: null, groupKilled: true });
  });

  it('gives /dev/null as stdin when none is asked', async () => {
    const result = await run(request('sh', ['-c', 'readlink /proc/self/fd/0; cat']));
    expect(result.stdout).toBe('/dev/null\n');
  });

  it('starts the child with default signal dispositions, nothing blocked, only fds 0-2', async () => {
    // Node ignores SIGPIPE; a child must not inherit that (`yes | head` relies on it).
    const signals = await run(request('grep', ['-E', '^Sig(Blk|Ign)', '/proc/self/status']));
    const [blocked, ignored] = [...signals.stdout.matchAll(/^Sig\w+:\s+([0-9a-f]+)$/gm)].map(
      (match) => BigInt(`0x${match[1]}`),
    );
    expect(blocked).toBe(0n);
    // Except glibc's two internal signals (32, 33): its posix_spawn leaves them
    // ignored, and every glibc program sets them up for itself.
    expect(ignored! & ~0x180000000n).toBe(0n);
    const fds = await run(request('sh', ['-c', 'ls /proc/$$/fd']));
    expect(fds.stdout.trim().split('\n').map(Number).sort()).toEqual([0, 1, 2]);
    // With SIGPIPE ignored, `yes` would complain of a broken pipe instead of dying quietly.
    const piped = await run(request('sh', ['-c', 'yes | head -c 2']));
    expect(piped).toMatchObject({ stdout: 'y\n', stderr: '' });
  });

  it('reports a death by signal', async () => {
    const result = await run(request('sh', ['-c', 'kill -TERM $$']));
    expect(result.exit).toEqual({ code: null, signal: 'SIGTERM', groupKilled: true });
  });

  it("finds programs in the task's PATH (not the agent's), and relative ones against cwd", async () => {
    const tool = join(dir, 'only-here');
    await writeFile(tool, '#!/bin/sh\necho "found $1"\n', { mode: 0o755 });
    const viaPath = await run(
      request('only-here', ['one'], { env: { PATH: `/nonexistent:${dir}`, X: '1' } }),
    );
    expect(viaPath.stdout).toBe('found one\n');
    const relative = await run(request('./only-here', ['two'], { cwd: dir }));
    expect(relative.stdout).toBe('found two\n');
  });

  it('runs an executable without #! under /bin/sh, like execvp', async () => {
    const script = join(dir, 'no-shebang');
    await writeFile(script, 'echo "plain $0"\n', { mode: 0o755 });
    const result = await run(request(script, []));
    expect(result.stdout).toBe(`plain ${script}\n`);
  });

  it("rejects with Node's wording and the OS error when the program cannot start", async () => {
    const missing = spawner.spawn(request('no-such-program-here', []));
    await expect(missing).rejects.toBeInstanceOf(SpawnError);
    await expect(missing).rejects.toMatchObject({
      code: 'ENOENT',
      message: 'spawn no-such-program-here ENOENT',
    });
    const plain = join(dir, 'not-executable');
    await writeFile(plain, 'data');
    await chmod(plain, 0o644);
    await expect(
      spawner.spawn(request('not-executable', [], { env: { PATH: dir } })),
    ).rejects.toMatchObject({ code: 'EACCES' });
    await expect(
      spawner.spawn(request('/bin/true', [], { cwd: '/nonexistent' })),
    ).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('sees every exit of many children at once', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => run(request('sh', ['-c', `exit ${i % 7}`]))),
    );
    expect(results.map((result) => result.exit.code)).toEqual(
      Array.from({ length: 200 }, (_, i) => i % 7),
    );
  });

  it('marks its children in the shared table: the watchdog, closing or killed, kills them', async () => {
    const own = createNativeSpawner(nodeSpawner)!;
    const child = await own.spawn(request('sh', ['-c', 'sleep 1000 & sleep 1000']));
    const registered = await own.spawn(request('sh', ['-c', 'sleep 1000']));
    const released = await own.spawn(request('sleep', ['1000']));
    own.unregister(released.pid);
    // A watchdog killed meanwhile (after its first second) is replaced, and the
    // new one reads the same table.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const first = own.pid!;
    process.kill(first, 'SIGKILL');
    const deadline = Date.now() + 3_000;
    while ((own.pid === undefined || own.pid === first) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(own.pid).not.toBe(first);
    await own.close();
    expect(await waitForDeath([child.pid, registered.pid])).toEqual([]);
    expect(await child.exit).toEqual({ code: null, signal: 'SIGKILL', groupKilled: true });
    expect(() => process.kill(released.pid, 0)).not.toThrow();
    process.kill(-released.pid, 'SIGKILL');
    expect(await released.exit).toEqual({ code: null, signal: 'SIGKILL', groupKilled: true });
  });

  it('registers its children with the watchdog: closing it kills them', async () => {
    const own = createNativeSpawner(nodeSpawner)!;
    const child = await own.spawn(request('sh', ['-c', 'sleep 1000 & sleep 1000']));
    await own.close();
    expect(await waitForDeath([child.pid])).toEqual([]);
    expect(await child.exit).toEqual({ code: null, signal: 'SIGKILL', groupKilled: true });
  });

  it('reads output on its own thread: every byte in order, in chunks of up to 256 KiB', async () => {
    // od numbers every 16-byte line: any lost, repeated or reordered byte shows.
    const child = await spawner.spawn(
      request('sh', ['-c', 'head -c 1048576 /dev/zero | od -A d -v -w16 -t x1']),
    );
    let text = '';
    let largest = 0;
    for await (const chunk of child.stdout) {
      largest = Math.max(largest, (chunk as Buffer).length);
      text += (chunk as Buffer).toString();
    }
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(1048576 / 16 + 1);
    for (let line = 0; line < lines.length - 1; line += 1) {
      expect(lines[line]!.startsWith(String(line * 16).padStart(7, '0'))).toBe(true);
    }
    expect(largest).toBeLessThanOrEqual(256 * 1024);
    expect(await child.exit).toEqual({ code: 0, signal: null, groupKilled: true });
  });

  it('gathers small writes into the chunk the event loop has not taken yet', async () => {
    const child = await spawner.spawn(
      request('sh', ['-c', 'i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done']),
    );
    // A busy event loop: meanwhile the shell writes many lines, one write each.
    const until = Date.now() + 150;
    while (Date.now() < until) {
      // spin
    }
    const chunks: Buffer[] = [];
    for await (const chunk of child.stdout) chunks.push(chunk as Buffer);
    const lines = Buffer.concat(chunks).toString().trimEnd().split('\n');
    expect(lines).toHaveLength(3000);
    expect(lines.every((line, index) => line === `line ${index}`)).toBe(true);
    // Each write its own chunk came to 90-180 chunks here; gathered, to 1.
    expect(chunks.length).toBeLessThan(20);
  });

  it('stops reading a pipe its reader does not take from: the writer blocks, memory stays bounded', async () => {
    const child = await spawner.spawn(
      request('sh', ['-c', 'head -c 67108864 /dev/zero; echo done >&2']),
    );
    const stderr = collect(child.stderr);
    // Nobody reads stdout for a while: the addon reads 512 KiB ahead (plus a chunk), no more.
    await new Promise((resolve) => setTimeout(resolve, 300));
    let held = 0;
    for (let chunk: Buffer | null; (chunk = child.stdout.read() as Buffer | null) !== null;) {
      held += chunk.length;
    }
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(512 * 1024 + 256 * 1024);
    expect(await Promise.race([child.exit.then(() => 'exited'), Promise.resolve('running')])).toBe(
      'running',
    );
    let bytes = held;
    for await (const chunk of child.stdout) bytes += (chunk as Buffer).length;
    expect(bytes).toBe(67108864);
    expect(await stderr).toBe('done\n');
    expect((await child.exit).code).toBe(0);
  });

  it('kills what the task left in its group when it exits, and can cut pipes held open outside it', async () => {
    // A background child in the group, and one in a session of its own holding stdout.
    const child = await spawner.spawn(
      request('sh', [
        '-c',
        // The shell exits once the second one is in a session of its own.
        'sleep 1000 & echo $!; setsid sleep 1000 & echo $!; ' +
          'while [ "$(ps -o sid= -p $!)" -eq $$ ]; do sleep 0.01; done; exit 0',
      ]),
    );
    const stdoutText: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdoutText.push(chunk.toString()));
    expect(await child.exit).toEqual({ code: 0, signal: null, groupKilled: true });
    while (stdoutText.join('').split('\n').length < 3) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const [inGroup, outside] = stdoutText.join('').trim().split('\n').map(Number);
    expect(await waitForDeath([inGroup!])).toEqual([]);
    // The escaped one still holds the pipe: no end until it is cut.
    expect(child.stdout.readableEnded).toBe(false);
    const ended = new Promise((resolve) => child.stdout.once('end', resolve));
    child.output!.cut();
    await ended;
    process.kill(outside!, 'SIGKILL');
    expect(await waitForDeath([outside!])).toEqual([]);
  });
});
