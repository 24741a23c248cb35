import { existsSync } from 'node:fs';
import { mkdtemp, readFile, realpath, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OverthereError, type Runtime } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';
import { collect, isAlive, run, waitForDeath } from './helpers.js';

const hasBash = existsSync('/bin/bash');

let runtime: Runtime;
let workDir: string;

beforeAll(async () => {
  runtime = createLocalRuntime();
  workDir = await realpath(await mkdtemp(path.join(os.tmpdir(), 'runtime-local-test-')));
});

afterAll(async () => {
  await runtime.dispose();
  await rm(workDir, { recursive: true, force: true });
});

async function expectError(
  promise: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<OverthereError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(OverthereError.is(error), `expected an OverthereError, got ${String(error)}`).toBe(true);
  const overthere = error as OverthereError;
  expect(overthere.code).toBe(code);
  if (message) expect(overthere.message).toMatch(message);
  return overthere;
}

describe('runtime', () => {
  it('has id local and declares what it enforces', () => {
    expect(runtime.id).toBe('local');
    expect(runtime.capabilities).toMatchObject({
      stdin: true,
      tty: true,
      signals: true,
      processGroups: true,
      user: true,
      isolation: 'process',
      sandboxes: false,
      adopt: false,
    });
    expect([...runtime.capabilities.limits].sort()).toEqual([
      'diskBytes',
      'memoryBytes',
      'openFiles',
    ]);
  });

  it('reports free memory and disk', async () => {
    const capacity = await runtime.capacity();
    expect(capacity.memoryBytes).toBeGreaterThan(0);
    expect(capacity.diskBytes).toBeGreaterThan(0);
  });
});

describe('command, env and cwd', () => {
  it('passes argv without a shell', async () => {
    const { stdout, status } = await run(runtime, {
      command: ['printf', '%s|', 'a b', '$HOME', '*', ''],
    });
    expect(stdout.toString()).toBe('a b|$HOME|*||');
    expect(status).toEqual({ code: 0, signal: null, reason: 'exited' });
  });

  it('sets env over the base environment', async () => {
    // The base environment is copied when the runtime is created.
    const withBase = createLocalRuntime({
      env: { ...process.env, OVERTHERE_TEST_BASE: 'from-agent' },
    });
    try {
      const { stdout } = await run(withBase, {
        command: ['sh', '-c', 'echo "$OVERTHERE_TEST_BASE/$FOO"'],
        env: { FOO: 'bar baz' },
      });
      expect(stdout.toString()).toBe('from-agent/bar baz\n');
    } finally {
      await withBase.dispose();
    }
  });

  it('starts from an empty environment with inheritEnv false', async () => {
    const { stdout } = await run(runtime, {
      command: ['env'],
      env: { ONLY: 'this' },
      inheritEnv: false,
    });
    expect(stdout.toString()).toBe('ONLY=this\n');
  });

  it('uses the env option as the base environment', async () => {
    const custom = createLocalRuntime({ env: { BASE: 'custom', PATH: process.env.PATH } });
    try {
      const { stdout } = await run(custom, { command: ['env'] });
      expect(stdout.toString().split('\n').sort().join('\n')).toBe(
        ['', 'BASE=custom', `PATH=${process.env.PATH}`].join('\n'),
      );
    } finally {
      await custom.dispose();
    }
  });

  it('runs in cwd', async () => {
    const { stdout } = await run(runtime, { command: ['pwd'], cwd: workDir });
    expect(stdout.toString()).toBe(`${workDir}\n`);
  });
});

describe('output', () => {
  it('is binary-exact on stdout and stderr', async () => {
    const outFile = path.join(workDir, 'random-out');
    const errFile = path.join(workDir, 'random-err');
    const { stdout, stderr, status } = await run(runtime, {
      command: [
        'sh',
        '-c',
        `head -c 100000 /dev/urandom | tee ${outFile}; head -c 70000 /dev/urandom | tee ${errFile} >&2`,
      ],
    });
    expect(status.code).toBe(0);
    expect(stdout.length).toBe(100_000);
    expect(stdout.equals(await readFile(outFile))).toBe(true);
    expect(stderr.length).toBe(70_000);
    expect(stderr.equals(await readFile(errFile))).toBe(true);
  });

  it('keeps output without a trailing newline as is', async () => {
    const { stdout, stderr } = await run(runtime, { command: ['printf', 'abc'] });
    expect(stdout.toString()).toBe('abc');
    expect(stderr.length).toBe(0);
  });

  it('keeps interleaved writes on their own streams', async () => {
    const { stdout, stderr } = await run(runtime, {
      command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done'],
    });
    expect(stdout.toString()).toBe('out1\nout2\nout3\nout4\nout5\n');
    expect(stderr.toString()).toBe('err1\nerr2\nerr3\nerr4\nerr5\n');
  });

  it('delivers output as Buffers while the process runs', async () => {
    const process = await runtime.spawn(
      { command: ['sh', '-c', 'echo first; read x'], stdin: 'pipe' },
      { taskId: 't' },
    );
    const first = await new Promise<unknown>((resolve) => process.stdout.once('data', resolve));
    expect(Buffer.isBuffer(first)).toBe(true);
    expect(String(first)).toBe('first\n');
    process.stdin!.end('\n');
    expect((await process.wait()).code).toBe(0);
  });
});

describe('stdin', () => {
  it('pipes stdin to the process, binary-exact', async () => {
    const input = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
    const { stdout, status } = await run(runtime, { command: ['cat'], stdin: 'pipe' }, input);
    expect(status.code).toBe(0);
    expect(stdout.equals(input)).toBe(true);
  });

  it('gives an immediate end of file without stdin: pipe', async () => {
    const { stdout, status, process } = await run(runtime, { command: ['cat'] });
    expect(process.stdin).toBeUndefined();
    expect(stdout.length).toBe(0);
    expect(status.code).toBe(0);
  });
});

describe('exit status', () => {
  it('reports the exit code', async () => {
    const { status } = await run(runtime, { command: ['sh', '-c', 'exit 7'] });
    expect(status).toEqual({ code: 7, signal: null, reason: 'exited' });
  });

  it('reports the signal that ended the process', async () => {
    const process = await runtime.spawn({ command: ['sleep', '1000'] }, { taskId: 't' });
    await process.signal('SIGTERM');
    expect(await process.wait()).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });
  });

  it('accepts short and numeric signal names', async () => {
    const process = await runtime.spawn({ command: ['sleep', '1000'] }, { taskId: 't' });
    await process.signal('9');
    expect(await process.wait()).toMatchObject({ signal: 'SIGKILL', reason: 'signalled' });
  });

  it('rejects an unknown signal with INVALID_ARGUMENT', async () => {
    const process = await runtime.spawn({ command: ['sleep', '1000'] }, { taskId: 't' });
    await expectError(process.signal('SIGNOPE'), 'INVALID_ARGUMENT');
    await process.signal('KILL');
    await process.wait();
  });

  it('does not fail to signal a process that has ended', async () => {
    const { process } = await run(runtime, { command: ['true'] });
    await expect(process.signal('SIGTERM')).resolves.toBeUndefined();
    await expect(process.signal('SIGTERM', { group: false })).resolves.toBeUndefined();
  });

  it('rejects resize without a tty with UNSUPPORTED', async () => {
    const process = await runtime.spawn({ command: ['sleep', '1000'] }, { taskId: 't' });
    await expectError(process.resize({ cols: 80, rows: 24 }), 'UNSUPPORTED');
    await process.signal('SIGKILL');
    await process.wait();
  });
});

describe('process group', () => {
  it('signals the whole group, grandchildren included', async () => {
    const process = await runtime.spawn(
      { command: ['sh', '-c', 'sleep 1000 & echo $!; wait'] },
      { taskId: 't' },
    );
    const stdout = collect(process.stdout);
    const grandchild = Number((await stdout.waitFor(/^(\d+)\n/))[1]);
    expect(isAlive(grandchild)).toBe(true);
    await process.signal('SIGTERM');
    expect(await process.wait()).toMatchObject({ signal: 'SIGTERM' });
    expect(await waitForDeath([grandchild])).toEqual([]);
  });

  it('kills the group once the main process was signalled alone', async () => {
    const process = await runtime.spawn(
      { command: ['sh', '-c', 'sleep 1000 & echo $!; wait'] },
      { taskId: 't' },
    );
    const stdout = collect(process.stdout);
    const grandchild = Number((await stdout.waitFor(/^(\d+)\n/))[1]);
    await process.signal('SIGTERM', { group: false });
    expect(await process.wait()).toMatchObject({ signal: 'SIGTERM' });
    expect(await waitForDeath([grandchild])).toEqual([]);
  });

  it('kills grandchildren when the main process exits on its own', async () => {
    const { stdout, status } = await run(runtime, {
      // One grandchild holds stdout, the other does not.
      command: ['sh', '-c', 'sleep 1000 & echo $!; sleep 1000 >/dev/null 2>&1 & echo $!'],
    });
    expect(status.code).toBe(0);
    const pids = stdout.toString().trim().split('\n').map(Number);
    expect(pids).toHaveLength(2);
    expect(await waitForDeath(pids)).toEqual([]);
  });

  it.skipIf(!hasBash)('kills descendants that moved to another group of the session', async () => {
    // bash job control puts the background job in a process group of its own.
    const { stdout, status } = await run(runtime, {
      command: ['bash', '-c', 'set -m; sleep 1000 & echo $!'],
    });
    expect(status.code).toBe(0);
    const job = Number(stdout.toString().trim());
    expect(await waitForDeath([job])).toEqual([]);
  });

  it('ends the output of a descendant that left the session after drainTimeoutMs', async () => {
    const quick = createLocalRuntime({ drainTimeoutMs: 200 });
    let escaped = 0;
    try {
      // The main process exits only once its child is a session leader (field 6 of stat).
      const escape =
        'setsid sleep 1000 & p=$!; until [ "$(cut -d" " -f6 /proc/$p/stat)" = "$p" ]; do :; done; echo $p';
      const process = await quick.spawn({ command: ['sh', '-c', escape] }, { taskId: 't' });
      const stdout = collect(process.stdout);
      escaped = Number((await stdout.waitFor(/^(\d+)\n/))[1]);
      expect((await process.wait()).code).toBe(0);
      expect((await stdout.done).toString()).toBe(`${escaped}\n`);
      // The documented limit: setsid escapes the watch.
      expect(isAlive(escaped)).toBe(true);
    } finally {
      if (escaped > 0 && isAlive(escaped)) globalThis.process.kill(escaped, 'SIGKILL');
      await quick.dispose();
    }
  });
});

describe('scripts', () => {
  it('runs a script without #! with the default shell, and removes the file', async () => {
    const { stdout, status } = await run(runtime, { script: 'echo "$0"; ps -o args= -p $$' });
    expect(status.code).toBe(0);
    const [file, args] = stdout.toString().split('\n');
    expect(file).toMatch(/overthere-local-\d+\/test-[0-9a-f]+$/);
    expect(args).toBe(`/bin/sh ${file}`);
    expect(existsSync(file!)).toBe(false);
  });

  it('runs a script without #! with the shell option', async () => {
    const bashRuntime = createLocalRuntime({ shell: '/bin/bash' });
    try {
      const { stdout } = await run(bashRuntime, { script: 'echo "${BASH_VERSION:+bash}"' });
      expect(stdout.toString()).toBe('bash\n');
    } finally {
      await bashRuntime.dispose();
    }
  });

  it('runs a script with #! by its interpreter, with the optional argument', async () => {
    const { stdout, status } = await run(runtime, {
      script: '#!/bin/sh -e\necho before\nfalse\necho not reached\n',
    });
    expect(stdout.toString()).toBe('before\n');
    expect(status.code).toBe(1);
  });

  it('writes the script with mode 0700', async () => {
    const { stdout } = await run(runtime, { script: '#!/bin/sh\nstat -c %a "$0"\n' });
    expect(stdout.toString()).toBe('700\n');
  });

  it('runs a script with env, cwd and stdin', async () => {
    const { stdout } = await run(
      runtime,
      {
        script: '#!/bin/sh\nread line\necho "$line $GREETING $(pwd)"\n',
        env: { GREETING: 'hi' },
        cwd: workDir,
        stdin: 'pipe',
      },
      'input\n',
    );
    expect(stdout.toString()).toBe(`input hi ${workDir}\n`);
  });
});

describe('spawn failures', () => {
  it('rejects an empty command with SPAWN_FAILED', async () => {
    await expectError(
      runtime.spawn({ command: [] }, { taskId: 't' }),
      'SPAWN_FAILED',
      /empty command/,
    );
  });

  it('rejects a missing binary with SPAWN_FAILED and the OS reason', async () => {
    await expectError(
      runtime.spawn({ command: ['nosuchbinary-overthere'] }, { taskId: 't' }),
      'SPAWN_FAILED',
      /spawn nosuchbinary-overthere ENOENT/,
    );
  });

  it('rejects a missing binary behind limits or a tty too', async () => {
    await expectError(
      runtime.spawn(
        { command: ['nosuchbinary-overthere'], limits: { openFiles: 64 } },
        { taskId: 't' },
      ),
      'SPAWN_FAILED',
      /ENOENT/,
    );
    await expectError(
      runtime.spawn(
        { command: ['nosuchbinary-overthere'], tty: { cols: 80, rows: 24 } },
        { taskId: 't' },
      ),
      'SPAWN_FAILED',
      /ENOENT/,
    );
  });

  it('rejects a missing script interpreter with SPAWN_FAILED', async () => {
    await expectError(
      runtime.spawn({ script: '#!/nonexistent/interpreter\n' }, { taskId: 't' }),
      'SPAWN_FAILED',
      /\/nonexistent\/interpreter ENOENT/,
    );
  });

  it('rejects a bad cwd with SPAWN_FAILED', async () => {
    await expectError(
      runtime.spawn({ command: ['true'], cwd: '/nope/not/here' }, { taskId: 't' }),
      'SPAWN_FAILED',
      /cwd \/nope\/not\/here does not exist/,
    );
    await expectError(
      runtime.spawn({ command: ['true'], cwd: '/etc/passwd' }, { taskId: 't' }),
      'SPAWN_FAILED',
      /not a directory/,
    );
  });

  it('rejects an unknown user with SPAWN_FAILED', async () => {
    await expectError(
      runtime.spawn({ command: ['true'], user: 'no-such-user-overthere' }, { taskId: 't' }),
      'SPAWN_FAILED',
      /unknown user no-such-user-overthere/,
    );
  });

  it('rejects both or neither of command and script with INVALID_ARGUMENT', async () => {
    await expectError(
      runtime.spawn({ command: ['true'], script: 'true' }, { taskId: 't' }),
      'INVALID_ARGUMENT',
    );
    await expectError(runtime.spawn({}, { taskId: 't' }), 'INVALID_ARGUMENT');
  });

  it('rejects bad specs with INVALID_ARGUMENT', async () => {
    await expectError(
      runtime.spawn({ command: ['echo', 'a\0b'] }, { taskId: 't' }),
      'INVALID_ARGUMENT',
    );
    await expectError(
      runtime.spawn({ command: ['true'], tty: { cols: 0, rows: 24 } }, { taskId: 't' }),
      'INVALID_ARGUMENT',
    );
    await expectError(
      runtime.spawn({ command: ['true'], limits: { memoryBytes: -1 } }, { taskId: 't' }),
      'INVALID_ARGUMENT',
    );
  });
});

describe.skipIf(process.getuid?.() !== 0)('user (as root)', () => {
  it('runs as another user, by name or uid, without root groups', async () => {
    const { stdout } = await run(runtime, {
      command: ['sh', '-c', 'id -u; id -g; id -G; echo "$HOME $USER"'],
      user: 'nobody',
    });
    const [uid, gid, groups, home] = stdout.toString().split('\n');
    expect(uid).toBe('65534');
    expect(groups!.split(' ')).not.toContain('0');
    expect(gid).not.toBe('0');
    expect(home).toMatch(/ nobody$/);
    const byUid = await run(runtime, { command: ['id', '-u'], user: 65534 });
    expect(byUid.stdout.toString()).toBe('65534\n');
  });

  it('runs a script as another user', async () => {
    const { stdout, status } = await run(runtime, { script: 'id -u', user: 'nobody' });
    expect(status.code).toBe(0);
    expect(stdout.toString()).toBe('65534\n');
  });

  it('runs a tty as another user, without root groups', async () => {
    const { stdout } = await run(runtime, {
      command: ['id', '-G'],
      user: 'nobody',
      tty: { cols: 80, rows: 24 },
    });
    expect(stdout.toString().trim().split(' ')).not.toContain('0');
    expect(stdout.toString().trim()).not.toBe('');
  });
});

describe('tty', () => {
  const tty = { cols: 100, rows: 30 };

  it('runs under a pseudo-terminal of the given size', async () => {
    const { stdout, stderr, status } = await run(runtime, {
      command: ['sh', '-c', 'tty; stty size'],
      tty,
    });
    expect(stdout.toString()).toMatch(/^\/dev\/pts\/\d+\r\n30 100\r\n$/);
    expect(stderr.length).toBe(0);
    expect(status).toEqual({ code: 0, signal: null, reason: 'exited' });
  });

  it('resizes the terminal', async () => {
    const process = await runtime.spawn({ command: ['sh'], tty }, { taskId: 't' });
    const stdout = collect(process.stdout);
    process.stdin!.write('stty size\n');
    await stdout.waitFor(/30 100\r\n/);
    await process.resize({ cols: 120, rows: 40 });
    process.stdin!.write('stty size\n');
    await stdout.waitFor(/40 120\r\n/);
    process.stdin!.write('exit 3\n');
    expect(await process.wait()).toEqual({ code: 3, signal: null, reason: 'exited' });
    // Resizing after the end is not an error.
    await process.resize({ cols: 80, rows: 24 });
  });

  it('passes bytes through unchanged', async () => {
    const { stdout } = await run(runtime, { command: ['printf', '\\377\\376\\200abc'], tty });
    expect([...stdout]).toEqual([0xff, 0xfe, 0x80, 0x61, 0x62, 0x63]);
  });

  it('gives the process end of file when stdin ends', async () => {
    const { stdout, status } = await run(runtime, { command: ['cat'], tty }, 'hello\n');
    expect(status).toEqual({ code: 0, signal: null, reason: 'exited' });
    // The terminal's echo of the input, then what cat wrote.
    expect(stdout.toString()).toBe('hello\r\nhello\r\n');
  });

  it('keeps the exit status of a process that closes its terminal before exiting', async () => {
    // cat, tr and most of coreutils close stdin, stdout and stderr just before
    // they exit. The terminal must stay up until the process has ended: a
    // hang-up (the master closed) would end it with SIGHUP. The sleep stands
    // for work done after letting go of the terminal.
    const { status } = await run(runtime, {
      command: ['sh', '-c', 'exec </dev/null >/dev/null 2>&1; sleep 0.2; exit 3'],
      tty,
    });
    expect(status).toEqual({ code: 3, signal: null, reason: 'exited' });
  });

  it('keeps every byte of output written right before the end', async () => {
    // When seq exits, more than the 4 KiB the kernel hands out per read of a
    // terminal master can still be pending.
    const expected = Array.from({ length: 20_000 }, (_, i) => `${i + 1}\r\n`).join('');
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const { stdout, status } = await run(runtime, { command: ['seq', '1', '20000'], tty });
      expect(status.code).toBe(0);
      expect(stdout.length).toBe(expected.length);
      expect(stdout.toString()).toBe(expected);
    }
  });

  it('reports signals and kills the group', async () => {
    const process = await runtime.spawn(
      { command: ['sh', '-c', 'sleep 1000 & echo $!; wait'], tty },
      { taskId: 't' },
    );
    const stdout = collect(process.stdout);
    const grandchild = Number((await stdout.waitFor(/^(\d+)\r\n/))[1]);
    await process.signal('SIGTERM', { group: false });
    expect(await process.wait()).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });
    expect(await waitForDeath([grandchild])).toEqual([]);
  });

  it('delivers a signal sent right after spawn', async () => {
    const process = await runtime.spawn({ command: ['sleep', '1000'], tty }, { taskId: 't' });
    await process.signal('SIGKILL');
    expect(await process.wait()).toMatchObject({ signal: 'SIGKILL', reason: 'signalled' });
  });

  it('does not leak terminal masters into other tasks', async () => {
    const holder = await runtime.spawn({ command: ['sleep', '1000'], tty }, { taskId: 't' });
    const listFds = 'ls -l /proc/self/fd/ | grep -c ptmx || true';
    const piped = await run(runtime, { command: ['sh', '-c', listFds] });
    expect(piped.stdout.toString().trim()).toBe('0');
    if (hasBash) {
      const inTty = await run(runtime, { command: ['sh', '-c', listFds], tty });
      expect(inTty.stdout.toString().trim()).toBe('0');
    }
    await holder.signal('SIGKILL');
    await holder.wait();
  });
});

describe('limits', () => {
  it('makes a large allocation fail with memoryBytes', async () => {
    const allocate = ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=128M', 'count=1'];
    const limited = await run(runtime, {
      command: allocate,
      limits: { memoryBytes: 64 * 1024 * 1024 },
    });
    expect(limited.status.code).not.toBe(0);
    expect(limited.stderr.toString()).toMatch(/memory/i);
    const roomy = await run(runtime, {
      command: allocate,
      limits: { memoryBytes: 1024 * 1024 * 1024 },
    });
    expect(roomy.status.code).toBe(0);
  });

  it('limits open files', async () => {
    const { stdout } = await run(runtime, {
      command: ['sh', '-c', 'ulimit -n; ulimit -H -n'],
      limits: { openFiles: 32 },
    });
    expect(stdout.toString()).toBe('32\n32\n');
  });

  it('limits the size of written files with diskBytes', async () => {
    const file = path.join(workDir, 'big');
    const { stdout } = await run(runtime, {
      command: ['sh', '-c', `head -c 10000 /dev/zero > ${file}; echo $?`],
      limits: { diskBytes: 4096 },
    });
    expect(Number(stdout.toString())).toBeGreaterThan(128); // SIGXFSZ
    expect((await stat(file)).size).toBe(4096);
  });

  it('applies limits to scripts and ttys too', async () => {
    const script = await run(runtime, { script: 'ulimit -n', limits: { openFiles: 40 } });
    expect(script.stdout.toString()).toBe('40\n');
    const tty = await run(runtime, {
      command: ['sh', '-c', 'ulimit -n'],
      tty: { cols: 80, rows: 24 },
      limits: { openFiles: 48 },
    });
    expect(tty.stdout.toString()).toBe('48\r\n');
  });
});

describe('dispose', () => {
  it('kills every process and refuses new ones', async () => {
    const disposable = createLocalRuntime();
    const plain = await disposable.spawn({ command: ['sleep', '1000'] }, { taskId: 'a' });
    const withChild = await disposable.spawn(
      { command: ['sh', '-c', 'sleep 1000 & echo $!; wait'] },
      { taskId: 'b' },
    );
    const inTty = await disposable.spawn(
      { command: ['sleep', '1000'], tty: { cols: 80, rows: 24 } },
      { taskId: 'c' },
    );
    const grandchild = Number((await collect(withChild.stdout).waitFor(/^(\d+)\n/))[1]);
    const pids = [plain.pid!, withChild.pid!, inTty.pid!, grandchild];
    expect(pids.every(isAlive)).toBe(true);
    await disposable.dispose();
    expect(await plain.wait()).toMatchObject({ signal: 'SIGKILL', reason: 'signalled' });
    expect(await withChild.wait()).toMatchObject({ signal: 'SIGKILL' });
    expect(await inTty.wait()).toMatchObject({ signal: 'SIGKILL' });
    expect(await waitForDeath(pids)).toEqual([]);
    await expectError(disposable.spawn({ command: ['true'] }, { taskId: 'd' }), 'UNAVAILABLE');
    await disposable.dispose(); // idempotent
  });

  it('removes its temp directory', async () => {
    const tempDir = path.join(workDir, 'scripts');
    const disposable = createLocalRuntime({ tempDir });
    const process = await disposable.spawn({ script: 'sleep 1000' }, { taskId: 'a' });
    expect(existsSync(tempDir)).toBe(true);
    await disposable.dispose();
    await process.wait();
    expect(existsSync(tempDir)).toBe(false);
  });
});
