import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { OverthereError } from './errors.js';
import { createMemoryRuntime } from './memory-runtime.js';
import type { MemoryRuntimeOptions } from './memory-runtime.js';
import type { ExitStatus, Process, Runtime } from './runtime.js';
import type { TaskSpec } from './task-spec.js';

const context = { taskId: 'test' };
const runtimes: Runtime[] = [];

function memory(options?: MemoryRuntimeOptions): Runtime {
  const runtime = createMemoryRuntime(options);
  runtimes.push(runtime);
  return runtime;
}

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.dispose()));
});

function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

interface Watched {
  /** Everything the process wrote, once it has ended. */
  done: Promise<Result>;
  /** Resolves with the stdout so far once it contains `text`. */
  until: (text: string) => Promise<string>;
}

/** Read a process's output from the start, so nothing written early is missed. */
function watch(child: Process): Watched {
  let stdout = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const check of waiters) check();
  });
  const done = finish(child);
  return {
    done,
    until: (text) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!stdout.includes(text)) return;
          waiters.delete(check);
          resolve(stdout);
        };
        waiters.add(check);
        check();
        done.then(
          () => reject(new Error(`ended before ${JSON.stringify(text)}: ${stdout}`)),
          reject,
        );
      }),
  };
}

interface Result {
  stdout: string;
  stderr: string;
  exit: ExitStatus;
}

async function finish(child: Process): Promise<Result> {
  const [stdout, stderr, exit] = await Promise.all([
    collect(child.stdout),
    collect(child.stderr),
    child.wait(),
  ]);
  return { stdout: stdout.toString(), stderr: stderr.toString(), exit };
}

async function run(runtime: Runtime, spec: TaskSpec): Promise<Result> {
  return finish(await runtime.spawn(spec, context));
}

/** True when `promise` has not settled after the event loop had a few turns. */
async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let turn = 0; turn < 5; turn += 1) await new Promise((resolve) => setImmediate(resolve));
  return !settled;
}

const exited = (code: number): ExitStatus => ({ code, signal: null, reason: 'exited' });
const signalled = (signal: string): ExitStatus => ({ code: null, signal, reason: 'signalled' });

describe('createMemoryRuntime', () => {
  it('declares the memory capabilities and reports the configured capacity', async () => {
    const runtime = memory({ capacity: { tasks: 3, memoryBytes: 1024 } });
    expect(runtime.id).toBe('memory');
    expect(runtime.capabilities).toEqual({
      stdin: true,
      tty: false,
      signals: true,
      processGroups: true,
      user: false,
      limits: [],
      isolation: 'none',
      sandboxes: true,
      adopt: false,
    });
    expect(await runtime.capacity()).toEqual({ tasks: 3, memoryBytes: 1024 });
    expect(await memory().capacity()).toEqual({});
    expect(memory({ id: 'other' }).id).toBe('other');
  });

  describe('built-in programs', () => {
    it('echo writes its arguments and a newline to stdout', async () => {
      const result = await run(memory(), { command: ['echo', 'hello', 'world'] });
      expect(result).toEqual({ stdout: 'hello world\n', stderr: '', exit: exited(0) });
      expect((await run(memory(), { command: ['echo', '-n', 'x'] })).stdout).toBe('x');
    });

    it('echo-err writes to stderr only', async () => {
      const result = await run(memory(), { command: ['echo-err', 'oops'] });
      expect(result).toEqual({ stdout: '', stderr: 'oops\n', exit: exited(0) });
    });

    it('print-args writes each argument on its own line', async () => {
      const result = await run(memory(), { command: ['print-args', 'a b', '', '$HOME'] });
      expect(result.stdout).toBe('a b\n\n$HOME\n');
    });

    it('true, false and exit report their codes, wrapped to 0–255', async () => {
      const runtime = memory();
      expect((await run(runtime, { command: ['true'] })).exit).toEqual(exited(0));
      expect((await run(runtime, { command: ['false'] })).exit).toEqual(exited(1));
      expect((await run(runtime, { command: ['exit', '42'] })).exit).toEqual(exited(42));
      expect((await run(runtime, { command: ['exit', '256'] })).exit).toEqual(exited(0));
      expect((await run(runtime, { command: ['exit', '-1'] })).exit).toEqual(exited(255));
    });

    it('write emits raw bytes, NUL included, without a newline', async () => {
      const bytes = Buffer.from([0, 1, 2, 255, 10, 0, 13]);
      const child = await memory().spawn(
        { command: ['write', 'stderr', bytes.toString('base64')] },
        context,
      );
      const [stdout, stderr] = await Promise.all([collect(child.stdout), collect(child.stderr)]);
      expect(stdout.length).toBe(0);
      expect(stderr.equals(bytes)).toBe(true);
    });

    it('cat copies stdin to stdout until EOF', async () => {
      const child = await memory().spawn({ command: ['cat'], stdin: 'pipe' }, context);
      const { done, until } = watch(child);
      child.stdin?.write('one\n');
      await until('one\n');
      child.stdin?.end('two');
      expect(await done).toEqual({ stdout: 'one\ntwo', stderr: '', exit: exited(0) });
    });

    it('cat without a stdin pipe sees an immediate EOF', async () => {
      const child = await memory().spawn({ command: ['cat'] }, context);
      expect(child.stdin).toBeUndefined();
      expect(await finish(child)).toEqual({ stdout: '', stderr: '', exit: exited(0) });
    });

    it('sleep rejects an invalid interval', async () => {
      const result = await run(memory(), { command: ['sleep', 'soon'] });
      expect(result.exit).toEqual(exited(1));
      expect(result.stderr).toContain('invalid time interval');
    });

    it('yes writes count lines, waiting for a slow reader', async () => {
      const child = await memory().spawn({ command: ['yes', '20000', 'line'] }, context);
      // Nobody reads yet: the writer must be held back, not buffer everything.
      expect(await isPending(child.wait())).toBe(true);
      const result = await finish(child);
      expect(result.stdout).toBe('line\n'.repeat(20000));
      expect(result.exit).toEqual(exited(0));
    });

    it('seq prints 1 to n, one per line', async () => {
      expect((await run(memory(), { command: ['seq', '3'] })).stdout).toBe('1\n2\n3\n');
      expect((await run(memory(), { command: ['seq', 'x'] })).exit).toEqual(exited(1));
    });

    it('finds a program by basename when the command is a path', async () => {
      expect((await run(memory(), { command: ['/bin/echo', 'x'] })).stdout).toBe('x\n');
    });
  });

  describe('environment and working directory', () => {
    it('starts from the base environment and adds spec.env', async () => {
      const runtime = memory({ env: { BASE: 'base', SHARED: 'base' } });
      const all = await run(runtime, { command: ['printenv'], env: { SHARED: 'spec' } });
      expect(all.stdout).toBe('BASE=base\nSHARED=spec\n');
      expect((await run(runtime, { command: ['printenv', 'BASE'] })).stdout).toBe('base\n');
    });

    it('inheritEnv false drops the base environment', async () => {
      const runtime = memory({ env: { BASE: 'base' } });
      const result = await run(runtime, {
        command: ['printenv'],
        env: { ONLY: 'me' },
        inheritEnv: false,
      });
      expect(result.stdout).toBe('ONLY=me\n');
      const missing = await run(runtime, { command: ['printenv', 'BASE'], inheritEnv: false });
      expect(missing).toEqual({ stdout: '', stderr: '', exit: exited(1) });
    });

    it("defaults the base environment to this process's", async () => {
      process.env.OVERTHERE_MEMORY_TEST = 'inherited';
      try {
        const result = await run(memory(), { command: ['printenv', 'OVERTHERE_MEMORY_TEST'] });
        expect(result.stdout).toBe('inherited\n');
      } finally {
        delete process.env.OVERTHERE_MEMORY_TEST;
      }
    });

    it('runs in spec.cwd, or / by default', async () => {
      const runtime = memory();
      expect((await run(runtime, { command: ['pwd'] })).stdout).toBe('/\n');
      expect((await run(runtime, { command: ['pwd'], cwd: '/srv/app' })).stdout).toBe('/srv/app\n');
      expect((await run(memory({ cwd: '/home' }), { command: ['pwd'] })).stdout).toBe('/home\n');
    });

    it('fails to spawn in a directory that does not exist', async () => {
      const runtime = memory();
      for (const cwd of ['/nonexistent', '/nonexistent/deeper', 'relative/path']) {
        const failure = runtime.spawn({ command: ['pwd'], cwd }, context);
        await expect(failure).rejects.toSatisfy((error) =>
          OverthereError.hasCode(error, 'SPAWN_FAILED'),
        );
      }
      const limited = memory({ directories: ['/work/', '/tmp'] });
      expect((await run(limited, { command: ['pwd'], cwd: '/work' })).stdout).toBe('/work\n');
      await expect(limited.spawn({ command: ['pwd'], cwd: '/srv' }, context)).rejects.toThrow(
        /no such directory \/srv/,
      );
    });
  });

  describe('spawn failures', () => {
    it('rejects an unknown program with SPAWN_FAILED like ENOENT', async () => {
      const error: unknown = await memory()
        .spawn({ command: ['nosuch', 'x'] }, context)
        .catch((caught: unknown) => caught);
      expect(OverthereError.hasCode(error, 'SPAWN_FAILED')).toBe(true);
      expect((error as Error).message).toBe('spawn nosuch ENOENT');
    });

    it('rejects an empty command with SPAWN_FAILED', async () => {
      for (const command of [[], ['']]) {
        await expect(memory().spawn({ command }, context)).rejects.toSatisfy((error) =>
          OverthereError.hasCode(error, 'SPAWN_FAILED'),
        );
      }
    });

    it('rejects a spec with both or neither of command and script', async () => {
      for (const spec of [{}, { command: ['true'], script: 'true' }]) {
        await expect(memory().spawn(spec, context)).rejects.toSatisfy((error) =>
          OverthereError.hasCode(error, 'INVALID_ARGUMENT'),
        );
      }
    });

    it('rejects tty and user as UNSUPPORTED', async () => {
      const runtime = memory();
      for (const spec of [
        { command: ['true'], tty: { cols: 80, rows: 24 } },
        { command: ['true'], user: 'nobody' },
      ]) {
        await expect(runtime.spawn(spec, context)).rejects.toSatisfy((error) =>
          OverthereError.hasCode(error, 'UNSUPPORTED'),
        );
      }
    });
  });

  describe('process contract', () => {
    it('has no OS pid, no handle, and resize is UNSUPPORTED', async () => {
      const child = await memory().spawn({ command: ['true'] }, context);
      expect(child.pid).toBeUndefined();
      expect(child.handle).toBeUndefined();
      await expect(child.resize({ cols: 80, rows: 24 })).rejects.toSatisfy((error) =>
        OverthereError.hasCode(error, 'UNSUPPORTED'),
      );
      await finish(child);
    });

    it('resolves wait only after stdout and stderr have ended', async () => {
      const child = await memory().spawn({ command: ['echo', 'x'] }, context);
      const order: string[] = [];
      child.stdout.on('end', () => order.push('stdout'));
      child.stderr.on('end', () => order.push('stderr'));
      child.stdout.resume();
      child.stderr.resume();
      await child.wait();
      order.push('wait');
      expect(order).toEqual(expect.arrayContaining(['stdout', 'stderr']));
      expect(order.at(-1)).toBe('wait');
    });

    it('drains streams nobody reads, so wait still resolves', async () => {
      const child = await memory().spawn({ command: ['yes', '100'] }, context);
      expect(await child.wait()).toEqual(exited(0));
      expect(child.stdout.readableEnded).toBe(true);
    });

    it('resolves every wait() with the same status, also after the end', async () => {
      const child = await memory().spawn({ command: ['exit', '3'] }, context);
      const [first, second] = await Promise.all([child.wait(), child.wait()]);
      expect(first).toEqual(exited(3));
      expect(second).toEqual(exited(3));
      expect(await child.wait()).toEqual(exited(3));
    });

    it('discards writes to stdin after the process ended', async () => {
      const child = await memory().spawn({ command: ['true'], stdin: 'pipe' }, context);
      await child.wait();
      await new Promise<void>((resolve, reject) =>
        child.stdin?.write('late', (error) => (error ? reject(error) : resolve())),
      );
      child.stdin?.end();
    });
  });

  describe('signals', () => {
    it('SIGTERM ends a program without a handler as signalled', async () => {
      const child = await memory().spawn({ command: ['sleep', '3600'] }, context);
      const done = finish(child);
      await child.signal('SIGTERM');
      expect((await done).exit).toEqual(signalled('SIGTERM'));
    });

    it('accepts short names and numbers', async () => {
      const child = await memory().spawn({ command: ['sleep', '3600'] }, context);
      const done = finish(child);
      await child.signal('hup');
      expect((await done).exit).toEqual(signalled('SIGHUP'));
      const other = await memory().spawn({ command: ['sleep', '3600'] }, context);
      const otherDone = finish(other);
      await other.signal('9');
      expect((await otherDone).exit).toEqual(signalled('SIGKILL'));
    });

    it('a handler replaces the default action; SIGKILL still ends it', async () => {
      const child = await memory().spawn({ command: ['trap-term'] }, context);
      const { done, until } = watch(child);
      await until('ready\n');
      await child.signal('SIGTERM');
      await until('term\n');
      expect(await isPending(done)).toBe(true);
      await child.signal('SIGKILL');
      expect(await done).toEqual({
        stdout: 'ready\nterm\n',
        stderr: '',
        exit: signalled('SIGKILL'),
      });
    });

    it('trap exits with the given code on its signal', async () => {
      const child = await memory().spawn({ command: ['trap', 'SIGUSR1', '7'] }, context);
      const { done, until } = watch(child);
      await until('ready\n');
      await child.signal('SIGUSR1');
      expect((await done).exit).toEqual(exited(7));
    });

    it('ignores signals whose default action is not to terminate', async () => {
      const child = await memory().spawn({ command: ['sleep', '3600'] }, context);
      const done = finish(child);
      for (const signal of ['SIGCHLD', 'SIGWINCH', 'SIGCONT', 'SIGSTOP'])
        await child.signal(signal);
      expect(await isPending(done)).toBe(true);
      await child.signal('SIGINT');
      expect((await done).exit).toEqual(signalled('SIGINT'));
    });

    it('rejects an unknown signal with INVALID_ARGUMENT', async () => {
      const child = await memory().spawn({ command: ['sleep', '3600'] }, context);
      const done = finish(child);
      await expect(child.signal('SIGNOPE')).rejects.toSatisfy((error) =>
        OverthereError.hasCode(error, 'INVALID_ARGUMENT'),
      );
      await child.signal('SIGKILL');
      await done;
    });

    it('signalling a process that has ended is not an error', async () => {
      const child = await memory().spawn({ command: ['true'] }, context);
      await finish(child);
      await expect(child.signal('SIGTERM')).resolves.toBeUndefined();
      await expect(child.signal('SIGKILL', { group: false })).resolves.toBeUndefined();
    });

    it('a program cannot handle SIGKILL', async () => {
      const runtime = memory({
        programs: {
          stubborn: ({ onSignal }) => {
            onSignal('SIGKILL', () => undefined);
            return 0;
          },
        },
      });
      const result = await run(runtime, { command: ['stubborn'] });
      expect(result.exit).toEqual(exited(1));
      expect(result.stderr).toBe('SIGKILL cannot be caught\n');
    });
  });

  describe('process groups', () => {
    it('a group signal ends the program and its child together', async () => {
      const child = await memory().spawn({ command: ['spawn-child'] }, context);
      const { done, until } = watch(child);
      const firstLine = await until('\n');
      expect(firstLine).toMatch(/^\d+\n$/);
      await child.signal('SIGTERM');
      expect((await done).exit).toEqual(signalled('SIGTERM'));
    });

    it('a child outliving its parent keeps the streams open and wait pending', async () => {
      const child = await memory().spawn({ command: ['spawn-child'] }, context);
      const { done, until } = watch(child);
      await until('\n');
      await child.signal('SIGKILL', { group: false });
      expect(await isPending(done)).toBe(true);
      await child.signal('SIGTERM');
      expect((await done).exit).toEqual(signalled('SIGKILL'));
    });

    it('children run registered programs and share stdout', async () => {
      const runtime = memory({
        programs: {
          parent: async ({ spawn, stdout }) => {
            const status = await spawn(['echo', 'from child']).wait();
            stdout.write(`child exited ${status.code ?? 'null'}\n`);
            expect(() => spawn(['nosuch'])).toThrow('spawn nosuch ENOENT');
          },
        },
      });
      const result = await run(runtime, { command: ['parent'] });
      expect(result.stdout).toBe('from child\nchild exited 0\n');
      expect(result.exit).toEqual(exited(0));
    });
  });

  describe('registered programs', () => {
    it('receive argv, env, cwd and stdin, and may override built-ins', async () => {
      const runtime = memory({
        env: {},
        programs: {
          echo: ({ stdout }) => {
            stdout.write('overridden\n');
          },
          inspect: async ({ argv, env, cwd, stdin, stdout }) => {
            let input = '';
            for await (const chunk of stdin ?? []) input += String(chunk);
            stdout.write(JSON.stringify({ argv, env, cwd, input }));
            return 5;
          },
        },
      });
      expect((await run(runtime, { command: ['echo', 'x'] })).stdout).toBe('overridden\n');
      const child = await runtime.spawn(
        { command: ['inspect', 'a'], env: { K: 'v' }, cwd: '/data', stdin: 'pipe' },
        context,
      );
      child.stdin?.end('in');
      const result = await finish(child);
      expect(JSON.parse(result.stdout)).toEqual({
        argv: ['inspect', 'a'],
        env: { K: 'v' },
        cwd: '/data',
        input: 'in',
      });
      expect(result.exit).toEqual(exited(5));
    });

    it('exit() ends the process at once and later output is dropped', async () => {
      const runtime = memory({
        programs: {
          quitter: async ({ stdout, exit, signal }) => {
            stdout.write('before\n');
            exit(9);
            expect(signal.aborted).toBe(true);
            await new Promise((resolve) => setImmediate(resolve));
            stdout.write('after\n');
            return 0;
          },
        },
      });
      expect(await run(runtime, { command: ['quitter'] })).toEqual({
        stdout: 'before\n',
        stderr: '',
        exit: exited(9),
      });
    });

    it('a program that throws exits 1 with the message on stderr', async () => {
      const runtime = memory({
        programs: {
          broken: () => {
            throw new Error('kaput');
          },
        },
      });
      expect(await run(runtime, { command: ['broken'] })).toEqual({
        stdout: '',
        stderr: 'kaput\n',
        exit: exited(1),
      });
    });
  });

  describe('scripts', () => {
    it('run line by line with quoting, comments and a shebang', async () => {
      const script = [
        '#!/bin/sh',
        'echo "hello  world" it\\\'s # a comment',
        '',
        "echo-err 'to stderr'",
        'nosuch',
        'echo done',
      ].join('\n');
      const result = await run(memory(), { script });
      expect(result).toEqual({
        stdout: "hello  world it's\ndone\n",
        stderr: 'to stderr\nnosuch: not found\n',
        exit: exited(0),
      });
    });

    it('end with the status of the last command, or at exit', async () => {
      const runtime = memory();
      expect((await run(runtime, { script: 'true\nfalse' })).exit).toEqual(exited(1));
      expect(await run(runtime, { script: 'echo a\nexit 4\necho b' })).toEqual({
        stdout: 'a\n',
        stderr: '',
        exit: exited(4),
      });
    });
  });

  describe('sandboxes', () => {
    it('give processes their env and cwd, and destroy ends every one', async () => {
      const runtime = memory({ env: { BASE: '1' } });
      const sandbox = await runtime.createSandbox!({ env: { BOX: 'yes' }, cwd: '/box' }, context);
      expect(sandbox.id).toMatch(/^memory-sandbox-/);
      const env = await finish(await sandbox.spawn({ command: ['printenv'] }, context));
      expect(env.stdout).toBe('BASE=1\nBOX=yes\n');
      const cwd = await finish(await sandbox.spawn({ command: ['pwd'] }, context));
      expect(cwd.stdout).toBe('/box\n');

      const first = finish(await sandbox.spawn({ command: ['sleep', '3600'] }, context));
      const second = finish(await sandbox.spawn({ command: ['trap-term'] }, context));
      const outside = await runtime.spawn({ command: ['sleep', '3600'] }, context);
      const outsideDone = finish(outside);
      await sandbox.destroy();
      expect((await first).exit).toEqual(signalled('SIGKILL'));
      expect((await second).exit).toEqual(signalled('SIGKILL'));
      expect(await isPending(outsideDone)).toBe(true);
      await sandbox.destroy();
      await expect(sandbox.spawn({ command: ['true'] }, context)).rejects.toSatisfy((error) =>
        OverthereError.hasCode(error, 'FAILED_PRECONDITION'),
      );
      await outside.signal('SIGTERM');
      await outsideDone;
    });
  });

  describe('dispose', () => {
    it('ends every live process and refuses new ones', async () => {
      const runtime = createMemoryRuntime();
      const sleeping = finish(await runtime.spawn({ command: ['sleep', '3600'] }, context));
      const trapping = finish(await runtime.spawn({ command: ['trap-term'] }, context));
      const group = finish(await runtime.spawn({ command: ['spawn-child'] }, context));
      await runtime.dispose();
      for (const result of await Promise.all([sleeping, trapping, group])) {
        expect(result.exit).toEqual(signalled('SIGKILL'));
      }
      await expect(runtime.spawn({ command: ['true'] }, context)).rejects.toSatisfy((error) =>
        OverthereError.hasCode(error, 'UNAVAILABLE'),
      );
      await runtime.dispose();
    });
  });
});
