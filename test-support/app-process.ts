/**
 * What every app's integration tests need to run the app as a real process:
 * its TypeScript source through tsx from the repository root (where the root
 * tsconfig maps @overthere/* to package sources), a clean environment, and
 * its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * This process's environment without the test runner's variables and those
 * starting with `dropPrefix` (the app's own settings, which tests set on
 * purpose), plus `extra`.
 */
export function testEnv(
  dropPrefix: string,
  extra: Record<string, string | undefined> = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith(dropPrefix) && !key.startsWith('VITEST') && key !== 'NODE_OPTIONS') {
      env[key] = value;
    }
  }
  return { ...env, ...extra };
}

/** Start `node --import tsx <main> …args` from the repository root, stdin closed, output piped. */
export function spawnSource(
  main: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', main, ...args], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Run `node --import tsx <main> …args` to its end (--help, --version, bad flags): its exit and output. */
export async function runSource(
  main: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<Exit & { stdout: string; stderr: string }> {
  const child = spawnSource(main, args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = await exitOf(child);
  return { ...exit, stdout, stderr };
}
