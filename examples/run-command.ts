/**
 * Run a command "over there" — here, on this machine through the local
 * runtime — and print what it wrote and how it ended.
 *
 *   pnpm example
 *
 * The same Supervisor calls work with any runtime (a container, a remote
 * agent): only the `runtime` passed to `createSupervisor` changes.
 */
import { createSupervisor } from '@overthere/core';
import type { Supervisor, TaskSpec } from '@overthere/core';
import { createLocalRuntime } from '@overthere/runtime-local';

/** Start a task, wait for it to end, then print its stdout, stderr and exit status. */
async function run(supervisor: Supervisor, title: string, spec: TaskSpec): Promise<void> {
  console.log(`\n== ${title}`);
  const task = await supervisor.create(spec);
  const done = await supervisor.wait(task.id);
  const output = supervisor.output(task.id);
  printStream('stdout', await output.text('stdout'));
  printStream('stderr', await output.text('stderr'));
  // A non-zero exit is data, not an error: it arrives as { code, signal, reason }.
  const { code, signal, reason } = done.exit ?? { code: null, signal: null, reason: 'unknown' };
  console.log(
    `exit:   code=${code ?? '-'} signal=${signal ?? '-'} reason=${reason} state=${done.state}`,
  );
}

function printStream(name: string, data: Buffer): void {
  const text = data.toString('utf8').trimEnd();
  if (text === '') {
    console.log(`${name}: (nothing)`);
    return;
  }
  for (const line of text.split('\n')) console.log(`${name}: ${line}`);
}

const runtime = createLocalRuntime();
const supervisor = await createSupervisor({ runtime });
try {
  await run(supervisor, 'a command: uname -a', { command: ['uname', '-a'] });

  await run(supervisor, 'a script writing to stdout and stderr, exiting 3', {
    script: [
      '#!/bin/sh',
      'echo "hello from pid $$ in $PWD"',
      'echo "GREETING=$GREETING"',
      'echo "this line goes to stderr" >&2',
      'exit 3',
    ].join('\n'),
    env: { GREETING: 'hi from the task spec' },
    cwd: '/tmp',
  });
} finally {
  // Stops anything still running, then releases the runtime.
  await supervisor.close();
  await runtime.dispose();
}
