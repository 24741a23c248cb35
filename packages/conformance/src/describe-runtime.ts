/**
 * `describeRuntime`: the vitest suite that proves a Runtime keeps the
 * contract in `@overthere/core` (runtime.ts), directly and through a Supervisor.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createSupervisor } from '@overthere/core';
import type { Process, Runtime, Supervisor, TaskSpec } from '@overthere/core';
import type { FixtureSpec, RuntimeFixtures } from './fixtures.js';
import {
  capture,
  describeError,
  hasCode,
  outcome,
  procAlive,
  procAliveAfter,
  procStat,
  rejection,
  within,
  suiteSettings,
} from './helpers.js';

/** Everything of a TaskSpec but what to run. */
export type BaseTaskSpec = Omit<TaskSpec, 'command' | 'script'>;

/** Options for {@link describeRuntime}. */
export interface DescribeRuntimeOptions {
  /** Shown in the suite's name, e.g. `local` or `docker (busybox)`. */
  name: string;
  /**
   * Makes the runtime under test. Called once while vitest collects the suite
   * (its `capabilities` decide which tests run) and once more for the
   * `dispose` test. The suite disposes of every runtime it creates.
   */
  createRuntime: () => Runtime | Promise<Runtime>;
  /**
   * The programs the suite runs. Default {@link shellFixtures}; fields given
   * here replace those (so a partial set overrides just what differs).
   */
  fixtures?: Partial<RuntimeFixtures>;
  /**
   * Merged under every spec the suite runs (its `env` merged too), e.g.
   * `{ runtimeOptions: { docker: { image: 'busybox' } } }`. Also the sandbox
   * spec's `env` and `runtimeOptions`.
   */
  baseSpec?: BaseTaskSpec;
  /**
   * Multiplies every bound on waiting (and every test timeout), for runtimes
   * that are slow to start processes, such as containers or VMs. Default 1.
   */
  timeScale?: number;
}

/** How many suites use each variable the suites put into `process.env`. */
const borrowedEnv = new Map<string, number>();

/**
 * Set `process.env[name]` when it is unset, until the last suite using it
 * releases it (several suites may run in one file, collected before any runs).
 */
function borrowEnv(name: string, value: string): () => void {
  const users = borrowedEnv.get(name);
  if (users === undefined) {
    if (process.env[name] !== undefined) return () => undefined; // the user's own
    process.env[name] = value;
  }
  borrowedEnv.set(name, (users ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (borrowedEnv.get(name) ?? 1) - 1;
    if (left > 0) {
      borrowedEnv.set(name, left);
    } else {
      borrowedEnv.delete(name);
      delete process.env[name];
    }
  };
}

/**
 * Register the runtime conformance suite with vitest. Call it at the top level
 * of a test file:
 *
 * ```ts
 * import { describeRuntime } from '@overthere/conformance';
 * describeRuntime({ name: 'local', createRuntime: () => createLocalRuntime() });
 * ```
 *
 * Tests that need a capability the runtime declares absent
 * (`runtime.capabilities`: stdin, tty, signals, processGroups, user,
 * sandboxes) are skipped; for tty, stdin and user the suite checks instead
 * that asking for them is `UNSUPPORTED`.
 */
export function describeRuntime(options: DescribeRuntimeOptions): void {
  const { fixtures, waitMs: WAIT_MS, testMs: TEST_MS, spec } = suiteSettings(options);
  const base = options.baseSpec ?? {};
  const context = () => ({ taskId: `conformance-${randomUUID()}` });

  describe(`runtime conformance: ${options.name}`, async () => {
    // Put the base variable in this process's environment before the runtime
    // exists, for runtimes that snapshot the agent's environment.
    const { name: baseName, value: baseValue } = fixtures.baseEnv;
    const releaseBaseEnv = borrowEnv(baseName, baseValue);

    const runtimes: Runtime[] = [];
    const create = async (): Promise<Runtime> => {
      const created = await options.createRuntime();
      runtimes.push(created);
      return created;
    };
    // Created while collecting: `it.skipIf` needs the capabilities now.
    const runtime = await create();
    const capabilities = runtime.capabilities;

    afterAll(async () => {
      try {
        await Promise.all(runtimes.map((each) => within(each.dispose(), WAIT_MS, 'dispose()')));
      } finally {
        releaseBaseEnv();
      }
    });

    const spawn = (fragment: FixtureSpec, extra?: BaseTaskSpec): Promise<Process> =>
      runtime.spawn(spec(fragment, extra), context());

    /** Spawn, read everything, wait (bounded) for the end. */
    const run = async (fragment: FixtureSpec, extra?: BaseTaskSpec) => {
      const child = await spawn(fragment, extra);
      return outcome(child, capture(child), WAIT_MS);
    };

    const exitedWith = (code: number) => ({ code, signal: null, reason: 'exited' });
    const signalledBy = (signal: string) => ({ code: null, signal, reason: 'signalled' });

    describe('declarations', () => {
      it('declares well-formed capabilities', () => {
        expect(typeof runtime.id).toBe('string');
        expect(runtime.id.length).toBeGreaterThan(0);
        for (const key of ['stdin', 'tty', 'signals', 'processGroups', 'user'] as const) {
          expect(typeof capabilities[key], key).toBe('boolean');
        }
        expect(['none', 'process', 'container', 'vm']).toContain(capabilities.isolation);
        const limitKeys = ['memoryBytes', 'diskBytes', 'cpus', 'pids', 'openFiles'];
        for (const limit of capabilities.limits) expect(limitKeys).toContain(limit);
        expect(typeof runtime.createSandbox === 'function').toBe(capabilities.sandboxes);
        if (capabilities.adopt) expect(typeof runtime.adopt).toBe('function');
      });

      it('reports capacity as non-negative numbers', async () => {
        const capacity = await within(runtime.capacity(), WAIT_MS, 'capacity()');
        for (const [key, value] of Object.entries(capacity)) {
          if (value === undefined) continue;
          expect(typeof value, key).toBe('number');
          expect(value, key).toBeGreaterThanOrEqual(0);
        }
      });
    });

    describe('spawn and argv', () => {
      it(
        'passes every argument through unchanged, without a shell',
        async () => {
          const args = ['plain', 'two  words', '', '$HOME', '*', 'quote"d', "it's", 'ünï'];
          const result = await run(fixtures.printArgs(args));
          expect(result.stdout.toString()).toBe(args.map((arg) => `${arg}\n`).join(''));
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it(
        'runs a program and reports its output and exit',
        async () => {
          const result = await run(fixtures.echo('hello overthere'));
          expect(result.stdout.toString()).toBe('hello overthere\n');
          expect(result.stderr.length).toBe(0);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it(
        'gives no stdin unless the spec asks for a pipe',
        async () => {
          const child = await spawn(fixtures.cat());
          expect(child.stdin).toBeUndefined();
          // With no stdin, cat sees EOF at once.
          const result = await outcome(child, capture(child), WAIT_MS);
          expect(result.stdout.length).toBe(0);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it(
        'resolves wait() only after stdout and stderr have ended',
        async () => {
          const child = await spawn(fixtures.interleaved());
          const captured = capture(child);
          await within(child.wait(), WAIT_MS, 'wait()');
          expect([...captured.endOrder].sort()).toEqual(['stderr', 'stdout']);
        },
        TEST_MS,
      );
    });

    describe('environment', () => {
      it(
        'sets spec.env on top of the base environment',
        async () => {
          const value = 'a value with spaces, = and $dollars';
          const set = await run(fixtures.printEnv('OVERTHERE_CONFORMANCE_SET'), {
            env: { OVERTHERE_CONFORMANCE_SET: value },
          });
          expect(set.stdout.toString().replace(/\n$/, '')).toBe(value);
          const inherited = await run(fixtures.printEnv(baseName));
          expect(inherited.stdout.toString().replace(/\n$/, '')).toBe(baseValue);
        },
        TEST_MS,
      );

      it(
        'lets spec.env override a base variable',
        async () => {
          const result = await run(fixtures.printEnv(baseName), {
            env: { [baseName]: 'overridden' },
          });
          expect(result.stdout.toString().replace(/\n$/, '')).toBe('overridden');
        },
        TEST_MS,
      );

      it(
        'with inheritEnv false, starts from spec.env alone',
        async () => {
          const extra = { env: { OVERTHERE_CONFORMANCE_ONLY: 'only' }, inheritEnv: false };
          const dropped = await run(fixtures.printEnv(baseName), extra);
          expect(dropped.stdout.toString().replace(/\n$/, '')).toBe('');
          const kept = await run(fixtures.printEnv('OVERTHERE_CONFORMANCE_ONLY'), extra);
          expect(kept.stdout.toString().replace(/\n$/, '')).toBe('only');
        },
        TEST_MS,
      );
    });

    describe('working directory', () => {
      it(
        'runs in spec.cwd',
        async () => {
          const result = await run(fixtures.printCwd(), { cwd: fixtures.directory });
          expect(result.stdout.toString().replace(/\n$/, '')).toBe(fixtures.directory);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );
    });

    describe('output', () => {
      /** Random bytes that surely include NUL, newline, CR and 0xff, and end without a newline. */
      const awkwardBytes = (): Buffer => {
        const bytes = randomBytes(512);
        bytes.set([0x00, 0x0a, 0x0d, 0xff, 0x00, 0x1b, 0x80], 0);
        bytes[bytes.length - 1] = 0x00;
        return bytes;
      };

      for (const stream of ['stdout', 'stderr'] as const) {
        it(
          `carries arbitrary bytes on ${stream} exactly, NUL included, no newline added`,
          async () => {
            const bytes = awkwardBytes();
            const result = await run(fixtures.writeBytes(stream, bytes));
            const other = stream === 'stdout' ? 'stderr' : 'stdout';
            expect(result[stream].equals(bytes), `${stream} differs from what was written`).toBe(
              true,
            );
            expect(result[other].length).toBe(0);
            expect(result.exit).toEqual(exitedWith(0));
          },
          TEST_MS,
        );
      }

      it(
        'keeps stdout and stderr apart',
        async () => {
          const result = await run(fixtures.interleaved());
          expect(result.stdout.toString()).toBe('out1\nout2\n');
          expect(result.stderr.toString()).toBe('err1\nerr2\n');
        },
        TEST_MS,
      );

      it(
        'delivers output larger than a pipe buffer completely and in order',
        async () => {
          const count = 30_000;
          const result = await run(fixtures.lines(count));
          const expected = Array.from({ length: count }, (_, index) => `${index + 1}\n`).join('');
          expect(result.stdout.length).toBe(expected.length);
          expect(result.stdout.toString() === expected, 'stdout differs').toBe(true);
        },
        TEST_MS,
      );
    });

    describe('stdin', () => {
      it.skipIf(!capabilities.stdin)(
        'delivers bytes written to a stdin pipe, and EOF when it is ended',
        async () => {
          const child = await spawn(fixtures.cat(), { stdin: 'pipe' });
          const captured = capture(child);
          expect(child.stdin).toBeDefined();
          const first = Buffer.from('first line\n');
          const rest = randomBytes(4096);
          rest[0] = 0x00;
          child.stdin?.write(first);
          // cat echoes it before EOF: the pipe is live, not buffered until the end.
          await within(captured.untilStdout('first line\n'), WAIT_MS, 'stdin reaching the process');
          child.stdin?.end(rest);
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.stdout.equals(Buffer.concat([first, rest])), 'stdout differs').toBe(true);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.stdin)(
        'gives EOF at once when stdin is ended without data',
        async () => {
          const child = await spawn(fixtures.cat(), { stdin: 'pipe' });
          const captured = capture(child);
          child.stdin?.end();
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.stdout.length).toBe(0);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it.skipIf(capabilities.stdin)(
        'rejects a stdin pipe as UNSUPPORTED when it declares no stdin',
        async () => {
          const error = await rejection(spawn(fixtures.cat(), { stdin: 'pipe' }));
          expect(hasCode(error, 'UNSUPPORTED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );
    });

    describe('exit status', () => {
      for (const code of [0, 1, 42]) {
        it(
          `reports exit code ${code} as reason exited`,
          async () => {
            const result = await run(fixtures.exit(code));
            expect(result.exit).toEqual(exitedWith(code));
          },
          TEST_MS,
        );
      }
    });

    describe('signals', () => {
      it.skipIf(!capabilities.signals)(
        'SIGTERM ends a process as signalled, with code null',
        async () => {
          const child = await spawn(fixtures.exitOnTerm());
          const captured = capture(child);
          await within(captured.untilStdout('ready'), WAIT_MS, 'the fixture printing ready');
          await child.signal('SIGTERM');
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.exit).toEqual(signalledBy('SIGTERM'));
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        'a process that traps SIGTERM keeps running; SIGKILL ends it',
        async () => {
          const child = await spawn(fixtures.trapTerm());
          const captured = capture(child);
          await within(captured.untilStdout('ready'), WAIT_MS, 'the fixture printing ready');
          await child.signal('SIGTERM');
          await within(captured.untilStdout('term'), WAIT_MS, 'the trapped SIGTERM being reported');
          expect(captured.stdoutEnded()).toBe(false);
          await child.signal('SIGKILL');
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.exit).toEqual(signalledBy('SIGKILL'));
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        'delivers SIGUSR1 to a program that exits 0 on it',
        async () => {
          const child = await spawn(fixtures.exitOnSignal('SIGUSR1'));
          const captured = capture(child);
          await within(captured.untilStdout('ready'), WAIT_MS, 'the fixture printing ready');
          await child.signal('SIGUSR1');
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.processGroups)(
        'a signal to the group also ends the group member',
        async () => {
          const child = await spawn(fixtures.groupWithChild());
          const captured = capture(child);
          const firstLine = await within(captured.untilStdout('\n'), WAIT_MS, 'the child pid');
          const memberPid = Number(firstLine.split('\n')[0]?.trim());
          // Look into /proc only when its pids are this host's: the runtime
          // shares the host's pid space, reports an OS pid that /proc shows,
          // and the member /proc shows is in that process's group.
          const leader = child.pid === undefined ? undefined : procStat(child.pid);
          const member = Number.isInteger(memberPid) ? procStat(memberPid) : undefined;
          const useProc =
            (capabilities.isolation === 'none' || capabilities.isolation === 'process') &&
            leader !== undefined &&
            member !== undefined &&
            member.pgrp === leader.pgrp;
          if (useProc) expect(procAlive(memberPid)).toBe(true);

          await child.signal('SIGTERM');
          // A member that survived would keep stdout open, and this would time out.
          const result = await outcome(child, captured, WAIT_MS);
          expect(result.exit).toEqual(signalledBy('SIGTERM'));
          if (useProc) {
            expect(
              await procAliveAfter(memberPid, 1_000),
              `group member ${memberPid} is still running`,
            ).toBe(false);
          }
        },
        TEST_MS,
      );

      it(
        'signalling a process that has ended is not an error',
        async () => {
          const child = await spawn(fixtures.exit(0));
          await outcome(child, capture(child), WAIT_MS);
          await child.signal('SIGTERM');
          await child.signal('SIGKILL');
        },
        TEST_MS,
      );

      it(
        'rejects an unknown signal with INVALID_ARGUMENT',
        async () => {
          const child = await spawn(fixtures.sleep(30));
          const captured = capture(child);
          try {
            const error = await rejection(child.signal('SIGNOTASIGNAL'));
            expect(hasCode(error, 'INVALID_ARGUMENT'), describeError(error)).toBe(true);
          } finally {
            await child.signal('SIGKILL');
            await outcome(child, captured, WAIT_MS);
          }
        },
        TEST_MS,
      );
    });

    describe('tty', () => {
      it.skipIf(!capabilities.tty)(
        'runs under a TTY: output arrives on stdout, stderr stays empty',
        async () => {
          const result = await run(fixtures.echo('through a tty'), {
            tty: { cols: 80, rows: 24 },
          });
          expect(result.stdout.toString()).toContain('through a tty');
          expect(result.stderr.length).toBe(0);
          expect(result.exit).toEqual(exitedWith(0));
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.tty)(
        'resizes the TTY of a running process',
        async () => {
          const child = await spawn(fixtures.sleep(30), { tty: { cols: 80, rows: 24 } });
          const captured = capture(child);
          try {
            await within(child.resize({ cols: 100, rows: 30 }), WAIT_MS, 'resize()');
          } finally {
            await child.signal('SIGKILL');
            await outcome(child, captured, WAIT_MS);
          }
        },
        TEST_MS,
      );

      it.skipIf(capabilities.tty)(
        'rejects a TTY as UNSUPPORTED when it declares none',
        async () => {
          const error = await rejection(spawn(fixtures.echo('x'), { tty: { cols: 80, rows: 24 } }));
          expect(hasCode(error, 'UNSUPPORTED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );

      it(
        'rejects resize of a process without a TTY as UNSUPPORTED',
        async () => {
          const child = await spawn(fixtures.sleep(30));
          const captured = capture(child);
          try {
            const error = await rejection(child.resize({ cols: 80, rows: 24 }));
            expect(hasCode(error, 'UNSUPPORTED'), describeError(error)).toBe(true);
          } finally {
            await child.signal('SIGKILL');
            await outcome(child, captured, WAIT_MS);
          }
        },
        TEST_MS,
      );
    });

    describe('user', () => {
      it.skipIf(!capabilities.user)(
        'runs as spec.user',
        async () => {
          const result = await run(fixtures.printUid(), { user: fixtures.user.user });
          expect(result.stdout.toString().trim()).toBe(String(fixtures.user.uid));
        },
        TEST_MS,
      );

      it.skipIf(capabilities.user)(
        'rejects spec.user as UNSUPPORTED when it declares no users',
        async () => {
          const error = await rejection(spawn(fixtures.echo('x'), { user: fixtures.user.user }));
          expect(hasCode(error, 'UNSUPPORTED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );
    });

    describe('spawn failures', () => {
      it(
        'rejects an empty command with SPAWN_FAILED',
        async () => {
          const error = await rejection(runtime.spawn({ ...base, command: [] }, context()));
          expect(hasCode(error, 'SPAWN_FAILED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );

      it(
        'rejects a missing binary with SPAWN_FAILED',
        async () => {
          const error = await rejection(spawn(fixtures.missingBinary()));
          expect(hasCode(error, 'SPAWN_FAILED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );

      it(
        'rejects a working directory that does not exist with SPAWN_FAILED',
        async () => {
          const error = await rejection(
            spawn(fixtures.echo('x'), { cwd: fixtures.missingDirectory }),
          );
          expect(hasCode(error, 'SPAWN_FAILED'), describeError(error)).toBe(true);
        },
        TEST_MS,
      );
    });

    describe('sandboxes', () => {
      it.skipIf(!capabilities.sandboxes)(
        'runs processes in a sandbox, and destroy ends them',
        async () => {
          const sandboxSpec = {
            ...(base.env === undefined ? {} : { env: base.env }),
            ...(base.runtimeOptions === undefined ? {} : { runtimeOptions: base.runtimeOptions }),
          };
          const sandbox = await within(
            runtime.createSandbox!(sandboxSpec, context()),
            WAIT_MS,
            'createSandbox()',
          );
          try {
            const echo = await sandbox.spawn(spec(fixtures.echo('in the sandbox')), context());
            const echoed = await outcome(echo, capture(echo), WAIT_MS);
            expect(echoed.stdout.toString()).toBe('in the sandbox\n');
            const sleeper = await sandbox.spawn(spec(fixtures.sleep(30)), context());
            const captured = capture(sleeper);
            await within(sandbox.destroy(), WAIT_MS, 'sandbox.destroy()');
            const result = await outcome(sleeper, captured, WAIT_MS);
            expect(result.exit).not.toEqual(exitedWith(0));
          } finally {
            await sandbox.destroy();
          }
        },
        TEST_MS,
      );
    });

    describe('through a supervisor', () => {
      /** Run `body` with a fresh supervisor on the runtime, closed afterwards. */
      const withSupervisor = async (body: (supervisor: Supervisor) => Promise<void>) => {
        const supervisor = await createSupervisor({ runtime });
        try {
          await body(supervisor);
        } finally {
          await within(supervisor.close(), WAIT_MS, 'supervisor.close()');
        }
      };

      /** Follow the task's stdout until `text` appears. */
      const untilTaskStdout = async (supervisor: Supervisor, id: string, text: string) => {
        let seen = '';
        for await (const event of supervisor
          .output(id)
          .read({ follow: true, streams: ['stdout'] })) {
          if (event.type !== 'frame') continue;
          seen += event.data.toString();
          if (seen.includes(text)) return;
        }
        throw new Error(`the task's output ended without ${JSON.stringify(text)}: ${seen}`);
      };

      it(
        'captures stdout and stderr in the task output log',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(spec(fixtures.interleaved()));
            const ended = await within(supervisor.wait(task.id), WAIT_MS, 'the task ending');
            expect(ended.state).toBe('exited');
            expect(ended.exit).toEqual(exitedWith(0));
            const log = supervisor.output(task.id);
            expect((await log.text('stdout')).toString()).toBe('out1\nout2\n');
            expect((await log.text('stderr')).toString()).toBe('err1\nerr2\n');
          }),
        TEST_MS,
      );

      it(
        'records a non-zero exit code as data',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(spec(fixtures.exit(42)));
            const ended = await within(supervisor.wait(task.id), WAIT_MS, 'the task ending');
            expect(ended.exit).toEqual(exitedWith(42));
          }),
        TEST_MS,
      );

      it.skipIf(!capabilities.stdin)(
        'writes stdin to a task and closes it',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(spec(fixtures.cat(), { stdin: 'pipe' }));
            await supervisor.writeStdin(task.id, 'through the supervisor\n');
            await supervisor.closeStdin(task.id);
            const ended = await within(supervisor.wait(task.id), WAIT_MS, 'the task ending');
            expect(ended.exit).toEqual(exitedWith(0));
            const stdout = await supervisor.output(task.id).text('stdout');
            expect(stdout.toString()).toBe('through the supervisor\n');
          }),
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        'stop escalates to SIGKILL after graceMs when SIGTERM is ignored (reason killed)',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(spec(fixtures.trapTerm()));
            await within(untilTaskStdout(supervisor, task.id, 'ready'), WAIT_MS, 'ready');
            const stopped = await within(
              supervisor.stop(task.id, { signal: 'SIGTERM', graceMs: 300 }),
              WAIT_MS,
              'stop()',
            );
            expect(stopped.state).toBe('exited');
            expect(stopped.exit).toEqual({ code: null, signal: 'SIGKILL', reason: 'killed' });
          }),
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        'stop of a process that exits on SIGTERM reports reason signalled',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(spec(fixtures.exitOnTerm()));
            await within(untilTaskStdout(supervisor, task.id, 'ready'), WAIT_MS, 'ready');
            const stopped = await within(
              supervisor.stop(task.id, { signal: 'SIGTERM', graceMs: WAIT_MS }),
              WAIT_MS,
              'stop()',
            );
            expect(stopped.state).toBe('exited');
            expect(stopped.exit).toEqual(signalledBy('SIGTERM'));
          }),
        TEST_MS,
      );

      it(
        'timeoutMs stops a task with reason timeout',
        () =>
          withSupervisor(async (supervisor) => {
            const task = await supervisor.create(
              spec(fixtures.sleep(30), { timeoutMs: 300, kill: { graceMs: WAIT_MS / 2 } }),
            );
            const ended = await within(supervisor.wait(task.id), WAIT_MS, 'the timeout');
            expect(ended.state).toBe('exited');
            expect(ended.exit?.reason).toBe('timeout');
          }),
        TEST_MS,
      );

      it(
        'a spawn failure rejects with SPAWN_FAILED and registers nothing',
        () =>
          withSupervisor(async (supervisor) => {
            const error = await rejection(supervisor.create(spec(fixtures.missingBinary())));
            expect(hasCode(error, 'SPAWN_FAILED'), describeError(error)).toBe(true);
            expect(supervisor.list()).toEqual([]);
          }),
        TEST_MS,
      );
    });

    describe('dispose', () => {
      it(
        'ends every live process',
        async () => {
          const disposable = await create();
          const children = await Promise.all([
            disposable.spawn(spec(fixtures.sleep(30)), context()),
            disposable.spawn(spec(fixtures.sleep(30)), context()),
          ]);
          const captured = children.map((child) => capture(child));
          await within(disposable.dispose(), WAIT_MS, 'dispose()');
          for (const [index, child] of children.entries()) {
            const result = await outcome(child, captured[index]!, WAIT_MS);
            // sleep 30 cannot have exited by itself yet.
            expect(result.exit).not.toEqual(exitedWith(0));
          }
        },
        TEST_MS,
      );
    });
  });
}
