/**
 * `describeTransport`: the vitest suite that proves a transport keeps the
 * overthere protocol — tasks, errors as codes, output replay and follow
 * without gaps or repeats across reconnects, stdin, auth — and then runs
 * `describeRuntime` again through the transport's remote runtime.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor } from '@overthere/core';
import type { Runtime, Supervisor, SupervisorOptions, TaskInfo, TaskSpec } from '@overthere/core';
import { describeRuntime, type BaseTaskSpec } from './describe-runtime.js';
import { type FixtureSpec, type RuntimeFixtures } from './fixtures.js';
import { describeError, hasCode, rejection, suiteSettings, within } from './helpers.js';
import type {
  TransportClient,
  TransportHarness,
  TransportOutputEvent,
  TransportOutputOptions,
  TransportStartContext,
} from './transport-client.js';

/** Options for {@link describeTransport}. */
export interface DescribeTransportOptions {
  /** Shown in the suite's name, e.g. `http`. */
  name: string;
  /**
   * Makes the real runtime the served supervisor runs on. Called once while
   * vitest collects the suite (its capabilities decide which tests run), and
   * again for each agent the runtime-through-transport suite starts.
   */
  createRuntime: () => Runtime | Promise<Runtime>;
  /** Serve the supervisor with the transport and return clients for it. */
  start: (context: TransportStartContext) => Promise<TransportHarness>;
  /** The programs the suite runs; default `shellFixtures`, fields given here replace those. */
  fixtures?: Partial<RuntimeFixtures>;
  /** Merged under every spec the suite runs (`env` merged too). */
  baseSpec?: BaseTaskSpec;
  /** Multiplies every bound on waiting and every test timeout. Default 1. */
  timeScale?: number;
  /**
   * Options for every supervisor the suite serves (besides `runtime`), e.g. a
   * larger `output.memoryBytes` for runtimes that write many tiny frames faster
   * than a client reads them (the log would rightly report a gap).
   */
  supervisorOptions?: Omit<SupervisorOptions, 'runtime'>;
  /**
   * Run `describeRuntime` through the transport, on the harness's
   * `remoteRuntime()` (which must then be given). Default true.
   */
  runtimeThroughTransport?: boolean;
}

type Frame = Extract<TransportOutputEvent, { type: 'frame' }>;

/** Everything an output read delivered. */
interface Collected {
  frames: Frame[];
  gaps: Extract<TransportOutputEvent, { type: 'gap' }>[];
  end: TaskInfo | undefined;
}

function concat(frames: readonly Frame[], stream?: 'stdout' | 'stderr'): Buffer {
  return Buffer.concat(
    frames.filter((frame) => stream === undefined || frame.stream === stream).map((f) => f.data),
  );
}

/**
 * Register the transport conformance suite with vitest. Call it at the top
 * level of a test file:
 *
 * ```ts
 * describeTransport({
 *   name: 'http',
 *   createRuntime: () => createLocalRuntime(),
 *   start: async ({ supervisor, runtime }) => {
 *     const agent = await createHttpAgent({ supervisor, runtime, token: 't' });
 *     const client = createHttpClient({ baseUrl: agent.url, token: 't' });
 *     return { client, close: () => agent.close(), remoteRuntime: () => createRemoteRuntime({ client }) };
 *   },
 * });
 * ```
 */
export function describeTransport(options: DescribeTransportOptions): void {
  const { fixtures, waitMs: WAIT_MS, testMs: TEST_MS, spec } = suiteSettings(options);
  const base = options.baseSpec ?? {};
  const scale = options.timeScale ?? 1;

  describe(`transport conformance: ${options.name}`, async () => {
    // Created while collecting: `it.skipIf` needs the capabilities now.
    const runtime = await options.createRuntime();
    const capabilities = runtime.capabilities;
    let supervisor: Supervisor | undefined;
    let harness: TransportHarness | undefined;
    /** Tasks to stop after each group, so nothing outlives the suite. */
    const started = new Set<string>();

    beforeAll(async () => {
      supervisor = await createSupervisor({ ...options.supervisorOptions, runtime });
      harness = await within(options.start({ supervisor, runtime }), WAIT_MS, 'start()');
    }, TEST_MS);

    afterAll(async () => {
      try {
        for (const id of started) {
          await supervisor?.stop(id, { signal: 'SIGKILL' }).catch(() => undefined);
        }
        await harness?.close();
        await supervisor?.close();
      } finally {
        await runtime.dispose();
      }
    }, TEST_MS);

    const client = (): TransportClient => {
      if (!harness) throw new Error('the harness did not start');
      return harness.client;
    };
    const served = (): Supervisor => {
      if (!supervisor) throw new Error('the supervisor did not start');
      return supervisor;
    };
    const create = async (fragment: FixtureSpec, extra?: BaseTaskSpec): Promise<TaskInfo> => {
      const task = await within(client().create(spec(fragment, extra)), WAIT_MS, 'create()');
      started.add(task.id);
      return task;
    };
    const waitFinal = (id: string) => within(client().wait(id), WAIT_MS, `task ${id} ending`);
    const kill = async (id: string) => {
      await within(client().stop(id, { signal: 'SIGKILL' }), WAIT_MS, `stopping ${id}`);
    };

    /** Read output until `end` (or `stopWhen` says so, which then aborts the read). */
    const collect = async (
      id: string,
      readOptions: Omit<TransportOutputOptions, 'signal'> = {},
      stopWhen?: (collected: Collected) => boolean,
    ): Promise<Collected> => {
      const collected: Collected = { frames: [], gaps: [], end: undefined };
      const controller = new AbortController();
      const read = async () => {
        for await (const event of client().output(id, {
          ...readOptions,
          signal: controller.signal,
        })) {
          if (event.type === 'frame') collected.frames.push(event);
          else if (event.type === 'gap') collected.gaps.push(event);
          else collected.end = event.task;
          if (stopWhen?.(collected)) {
            controller.abort();
            break;
          }
        }
        return collected;
      };
      try {
        return await within(read(), WAIT_MS, `reading the output of ${id}`);
      } finally {
        controller.abort();
      }
    };
    const sees = (text: string) => (collected: Collected) =>
      concat(collected.frames).toString('latin1').includes(text);

    describe('tasks', () => {
      it(
        'create returns the running task; get and list show it',
        async () => {
          const task = await create(fixtures.sleep(30));
          expect(typeof task.id).toBe('string');
          expect(task.state).toBe('running');
          expect(task.spec.command ?? task.spec.script).toEqual(
            fixtures.sleep(30).command ?? fixtures.sleep(30).script,
          );
          const got = await client().get(task.id);
          expect(got.id).toBe(task.id);
          expect(got.state).toBe('running');
          expect(served().get(task.id).state).toBe('running');
          const listed = await client().list();
          expect(listed.map((each) => each.id)).toContain(task.id);
          await kill(task.id);
        },
        TEST_MS,
      );

      it(
        'list filters by state and by labels, oldest first',
        async () => {
          const run = randomUUID();
          const done = await create(fixtures.exit(0), { labels: { run } });
          await waitFinal(done.id);
          const live = await create(fixtures.sleep(30), { labels: { run, kind: 'live' } });
          const ids = (tasks: TaskInfo[]) => tasks.map((task) => task.id);
          expect(ids(await client().list({ state: 'running', labels: { run } }))).toEqual([
            live.id,
          ]);
          expect(ids(await client().list({ state: ['exited'], labels: { run } }))).toEqual([
            done.id,
          ]);
          expect(
            ids(await client().list({ state: ['running', 'exited'], labels: { run } })),
          ).toEqual([done.id, live.id]);
          expect(ids(await client().list({ labels: { run, kind: 'live' } }))).toEqual([live.id]);
          expect(await client().list({ labels: { run: `${run}-none` } })).toEqual([]);
          await kill(live.id);
        },
        TEST_MS,
      );

      it(
        'wait resolves with the final task; a non-zero exit is data',
        async () => {
          const task = await create(fixtures.exit(42));
          const final = await waitFinal(task.id);
          expect(final.state).toBe('exited');
          expect(final.exit).toEqual({ code: 42, signal: null, reason: 'exited' });
          expect(final.endedAt).toBeDefined();
        },
        TEST_MS,
      );

      it(
        'a task created on the supervisor is seen through the transport',
        async () => {
          const task = await served().create(spec(fixtures.echo('from the agent')));
          started.add(task.id);
          expect((await client().get(task.id)).id).toBe(task.id);
          const final = await waitFinal(task.id);
          expect(final.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
          const output = await collect(task.id);
          expect(concat(output.frames, 'stdout').toString()).toBe('from the agent\n');
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        "signal reaches the task's process",
        async () => {
          const task = await create(fixtures.exitOnTerm());
          await collect(task.id, { follow: true }, sees('ready'));
          await client().signal(task.id, 'SIGTERM');
          const final = await waitFinal(task.id);
          expect(final.exit).toEqual({ code: null, signal: 'SIGTERM', reason: 'signalled' });
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.signals)(
        'stop escalates to SIGKILL after graceMs and resolves with the final task',
        async () => {
          const task = await create(fixtures.trapTerm());
          await collect(task.id, { follow: true }, sees('ready'));
          const stopped = await within(
            client().stop(task.id, { signal: 'SIGTERM', graceMs: 300 }),
            WAIT_MS,
            'stop()',
          );
          expect(stopped.state).toBe('exited');
          expect(stopped.stopRequested).toBe(true);
          expect(stopped.exit).toEqual({ code: null, signal: 'SIGKILL', reason: 'killed' });
        },
        TEST_MS,
      );

      it(
        'remove forgets a finished task, and stops a live one first',
        async () => {
          const finished = await create(fixtures.exit(0));
          await waitFinal(finished.id);
          await client().remove(finished.id);
          expect(hasCode(await rejection(client().get(finished.id)), 'NOT_FOUND')).toBe(true);
          const live = await create(fixtures.sleep(30), { kill: { graceMs: 200 } });
          await within(client().remove(live.id), WAIT_MS, 'remove() of a live task');
          expect(hasCode(await rejection(client().get(live.id)), 'NOT_FOUND')).toBe(true);
          const ids = (await client().list()).map((task) => task.id);
          expect(ids).not.toContain(finished.id);
          expect(ids).not.toContain(live.id);
          expect(() => served().get(live.id)).toThrow();
        },
        TEST_MS,
      );

      it(
        'capacity counts live tasks',
        async () => {
          const capacity = await client().capacity();
          expect(Number.isInteger(capacity.liveTasks)).toBe(true);
          expect(capacity.liveTasks).toBeGreaterThanOrEqual(0);
          for (const key of ['memoryBytes', 'diskBytes', 'tasks'] as const) {
            if (capacity[key] !== undefined) expect(capacity[key]).toBeGreaterThanOrEqual(0);
          }
        },
        TEST_MS,
      );
    });

    describe('errors', () => {
      it(
        'an unknown task is NOT_FOUND on every operation',
        async () => {
          const id = `no-such-task-${randomUUID()}`;
          const calls: [string, () => Promise<unknown>][] = [
            ['get', () => client().get(id)],
            ['wait', () => client().wait(id)],
            ['signal', () => client().signal(id, 'SIGTERM')],
            ['stop', () => client().stop(id)],
            ['remove', () => client().remove(id)],
            ['writeStdin', () => client().writeStdin(id, 'x')],
            ['closeStdin', () => client().closeStdin(id)],
            ['resize', () => client().resize(id, { cols: 80, rows: 24 })],
            ['output', () => collect(id)],
          ];
          for (const [name, call] of calls) {
            const error = await rejection(within(call(), WAIT_MS, name));
            expect(hasCode(error, 'NOT_FOUND'), `${name}: ${describeError(error)}`).toBe(true);
          }
        },
        TEST_MS,
      );

      it(
        'a malformed spec is INVALID_ARGUMENT and registers nothing',
        async () => {
          const before = served().list().length;
          const echo = fixtures.echo('x');
          const bad: unknown[] = [
            { command: ['true'], script: 'true' },
            {},
            { command: 'echo hi' },
            { command: [1, 2] },
            { ...echo, stdin: 'sometimes' },
            { ...echo, tty: { cols: 0, rows: 24 } },
            { ...echo, env: { A: 1 } },
            { ...echo, notAField: true },
          ];
          for (const body of bad) {
            const error = await rejection(client().create(body as TaskSpec));
            expect(
              hasCode(error, 'INVALID_ARGUMENT'),
              `${JSON.stringify(body)}: ${describeError(error)}`,
            ).toBe(true);
          }
          expect(served().list().length).toBe(before);
        },
        TEST_MS,
      );

      it(
        'a spawn failure is SPAWN_FAILED and registers nothing',
        async () => {
          const before = served().list().length;
          const missing = await rejection(client().create(spec(fixtures.missingBinary())));
          expect(hasCode(missing, 'SPAWN_FAILED'), describeError(missing)).toBe(true);
          const badCwd = await rejection(
            client().create(spec(fixtures.echo('x'), { cwd: fixtures.missingDirectory })),
          );
          expect(hasCode(badCwd, 'SPAWN_FAILED'), describeError(badCwd)).toBe(true);
          expect(served().list().length).toBe(before);
        },
        TEST_MS,
      );

      it(
        'an unknown signal is INVALID_ARGUMENT and leaves the task running',
        async () => {
          const task = await create(fixtures.sleep(30));
          const error = await rejection(client().signal(task.id, 'SIGNOTASIGNAL'));
          expect(hasCode(error, 'INVALID_ARGUMENT'), describeError(error)).toBe(true);
          expect((await client().get(task.id)).state).toBe('running');
          await kill(task.id);
        },
        TEST_MS,
      );

      it(
        'a taken id is CONFLICT',
        async () => {
          const id = `conformance-${randomUUID()}`;
          const task = await within(
            client().create(spec(fixtures.sleep(30)), { id }),
            WAIT_MS,
            'create()',
          );
          started.add(task.id);
          expect(task.id).toBe(id);
          const error = await rejection(client().create(spec(fixtures.echo('x')), { id }));
          expect(hasCode(error, 'CONFLICT'), describeError(error)).toBe(true);
          await kill(id);
        },
        TEST_MS,
      );
    });

    describe('output', () => {
      it(
        'replays a finished task exactly, stdout and stderr apart, then ends with the task',
        async () => {
          const task = await create(fixtures.interleaved());
          await waitFinal(task.id);
          const all = await collect(task.id);
          expect(concat(all.frames, 'stdout').toString()).toBe('out1\nout2\n');
          expect(concat(all.frames, 'stderr').toString()).toBe('err1\nerr2\n');
          expect(all.end?.state).toBe('exited');
          expect(all.gaps).toEqual([]);
          const local: number[] = [];
          for await (const event of served().output(task.id).read()) {
            if (event.type === 'frame') local.push(event.seq);
          }
          expect(all.frames.map((frame) => frame.seq)).toEqual(local);
          const stderr = await collect(task.id, { stream: 'stderr' });
          expect(stderr.frames.every((frame) => frame.stream === 'stderr')).toBe(true);
          expect(concat(stderr.frames).toString()).toBe('err1\nerr2\n');
          expect(stderr.end?.id).toBe(task.id);
        },
        TEST_MS,
      );

      it(
        'replays from a cursor',
        async () => {
          const task = await create(fixtures.lines(20_000));
          await waitFinal(task.id);
          const all = await collect(task.id);
          const from = all.frames[Math.floor(all.frames.length / 2)]!.seq;
          const rest = await collect(task.id, { cursor: from });
          expect(rest.frames.map((frame) => frame.seq)).toEqual(
            all.frames.filter((frame) => frame.seq >= from).map((frame) => frame.seq),
          );
          expect(concat(rest.frames).equals(concat(all.frames.filter((f) => f.seq >= from)))).toBe(
            true,
          );
          const none = await collect(task.id, { cursor: all.frames.at(-1)!.seq + 1 });
          expect(none.frames).toEqual([]);
          expect(none.end?.state).toBe('exited');
        },
        TEST_MS,
      );

      it(
        'follows a live task until it is final',
        async () => {
          const task = await create(fixtures.lines(20_000));
          const followed = await collect(task.id, { follow: true });
          expect(followed.end?.state).toBe('exited');
          const expected = Array.from({ length: 20_000 }, (_, index) => `${index + 1}\n`).join('');
          expect(concat(followed.frames, 'stdout').toString() === expected).toBe(true);
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.stdin)(
        'resumes with the last cursor after a read is aborted: nothing missed, nothing repeated',
        async () => {
          const task = await create(fixtures.cat(), { stdin: 'pipe' });
          const first = Buffer.from('first chunk\n');
          await client().writeStdin(task.id, first);
          const before = await collect(task.id, { follow: true }, sees('first chunk\n'));
          // Written while nobody reads.
          const second = randomBytes(3000);
          await client().writeStdin(task.id, second);
          const cursor = before.frames.at(-1)!.seq + 1;
          const third = Buffer.from('\nthird chunk\n');
          const after = collect(task.id, { follow: true, cursor });
          await client().writeStdin(task.id, third);
          await client().closeStdin(task.id);
          const rest = await after;
          expect(rest.end?.state).toBe('exited');
          const seqs = [...before.frames, ...rest.frames].map((frame) => frame.seq);
          expect(new Set(seqs).size, 'a frame was repeated').toBe(seqs.length);
          const whole = Buffer.concat([concat(before.frames), concat(rest.frames)]);
          expect(whole.equals(Buffer.concat([first, second, third])), 'output differs').toBe(true);
          expect(whole.equals(await served().output(task.id).text('stdout'))).toBe(true);
        },
        TEST_MS,
      );

      it(
        'resumes a follow of a fast writer from the last cursor with nothing missed or repeated',
        async () => {
          const task = await create(fixtures.lines(30_000));
          const before = await collect(task.id, { follow: true }, (c) => c.frames.length >= 1);
          const rest = await collect(task.id, {
            follow: true,
            cursor: before.frames.at(-1)!.seq + 1,
          });
          expect(rest.end?.state).toBe('exited');
          const frames = [...before.frames, ...rest.frames];
          const local: number[] = [];
          for await (const event of served().output(task.id).read()) {
            if (event.type === 'frame') local.push(event.seq);
          }
          expect(frames.map((frame) => frame.seq)).toEqual(local);
          expect(concat(frames).equals(await served().output(task.id).text('stdout'))).toBe(true);
        },
        TEST_MS,
      );

      it.skipIf(!capabilities.stdin)(
        'the client resumes by itself when the connection drops',
        async (context) => {
          if (!harness?.dropConnections) {
            context.skip();
            return;
          }
          const task = await create(fixtures.cat(), { stdin: 'pipe' });
          const collected: Collected = { frames: [], gaps: [], end: undefined };
          let seen: () => void = () => undefined;
          const firstSeen = new Promise<void>((resolve) => (seen = resolve));
          const reading = (async () => {
            for await (const event of client().output(task.id, { follow: true })) {
              if (event.type === 'frame') collected.frames.push(event);
              else if (event.type === 'end') collected.end = event.task;
              if (sees('one\n')(collected)) seen();
            }
          })();
          await client().writeStdin(task.id, 'one\n');
          await within(firstSeen, WAIT_MS, 'the first output');
          await harness.dropConnections();
          // Written on the agent's side: what is under test is the reading client.
          await served().writeStdin(task.id, 'two\n');
          await served().closeStdin(task.id);
          await within(reading, WAIT_MS, 'the output after the drop');
          expect(concat(collected.frames).toString()).toBe('one\ntwo\n');
          expect(collected.end?.state).toBe('exited');
        },
        TEST_MS,
      );
    });

    describe('stdin', () => {
      it.skipIf(!capabilities.stdin)(
        'writes stdin, and closing it gives the task EOF',
        async () => {
          const task = await create(fixtures.cat(), { stdin: 'pipe' });
          const bytes = randomBytes(2048);
          bytes[0] = 0;
          await client().writeStdin(task.id, 'text\n');
          await client().writeStdin(task.id, bytes);
          await client().closeStdin(task.id);
          const final = await waitFinal(task.id);
          expect(final.exit).toEqual({ code: 0, signal: null, reason: 'exited' });
          const stdout = await served().output(task.id).text('stdout');
          expect(stdout.equals(Buffer.concat([Buffer.from('text\n'), bytes]))).toBe(true);
        },
        TEST_MS,
      );

      it(
        'stdin of a task without a pipe is FAILED_PRECONDITION',
        async () => {
          const task = await create(fixtures.sleep(30));
          const error = await rejection(client().writeStdin(task.id, 'x'));
          expect(hasCode(error, 'FAILED_PRECONDITION'), describeError(error)).toBe(true);
          await kill(task.id);
        },
        TEST_MS,
      );
    });

    describe('auth', () => {
      it(
        'a wrong credential is UNAUTHENTICATED and changes nothing',
        async (context) => {
          const bad = harness?.unauthenticatedClient;
          if (!bad) {
            context.skip();
            return;
          }
          const task = await create(fixtures.sleep(30));
          const before = served().list().length;
          const calls: [string, () => Promise<unknown>][] = [
            ['get', () => bad.get(task.id)],
            ['list', () => bad.list()],
            ['create', () => bad.create(spec(fixtures.echo('x')))],
            ['signal', () => bad.signal(task.id, 'SIGKILL')],
            ['stop', () => bad.stop(task.id, { signal: 'SIGKILL' })],
            ['remove', () => bad.remove(task.id)],
            ['capacity', () => bad.capacity()],
            [
              'output',
              async () => {
                for await (const _event of bad.output(task.id)) return;
              },
            ],
          ];
          for (const [name, call] of calls) {
            const error = await rejection(within(call(), WAIT_MS, name));
            expect(hasCode(error, 'UNAUTHENTICATED'), `${name}: ${describeError(error)}`).toBe(
              true,
            );
          }
          expect(served().list().length).toBe(before);
          expect(served().get(task.id).state).toBe('running');
          await kill(task.id);
        },
        TEST_MS,
      );
    });

    if (options.runtimeThroughTransport !== false) {
      describeRuntime({
        name: `${options.name} (through the transport)`,
        fixtures,
        baseSpec: base,
        timeScale: scale,
        createRuntime: async () => {
          const real = await options.createRuntime();
          const agentSupervisor = await createSupervisor({
            ...options.supervisorOptions,
            runtime: real,
          });
          const agent = await options.start({ supervisor: agentSupervisor, runtime: real });
          const shutdown = async () => {
            await agent.close();
            await agentSupervisor.close();
            await real.dispose();
          };
          if (!agent.remoteRuntime) {
            await shutdown();
            throw new Error(
              'runtimeThroughTransport needs the harness to provide remoteRuntime() (or set it to false)',
            );
          }
          const remote = await agent.remoteRuntime();
          return withDispose(remote, async () => {
            try {
              await remote.dispose();
            } finally {
              await shutdown();
            }
          });
        },
      });
    }
  });
}

/** `runtime`, with `dispose` replaced. */
function withDispose(runtime: Runtime, dispose: () => Promise<void>): Runtime {
  const wrapped: Runtime = {
    id: runtime.id,
    capabilities: runtime.capabilities,
    spawn: (spec, context) => runtime.spawn(spec, context),
    capacity: () => runtime.capacity(),
    dispose,
  };
  if (runtime.createSandbox) {
    const createSandbox = runtime.createSandbox.bind(runtime);
    wrapped.createSandbox = (spec, context) => createSandbox(spec, context);
  }
  if (runtime.adopt) {
    const adopt = runtime.adopt.bind(runtime);
    wrapped.adopt = (handle, context) => adopt(handle, context);
  }
  return wrapped;
}
