/**
 * The OpenSSH client for tests: `ssh` (through `sshpass` for passwords) run to
 * its end, or interactively with `-tt` in a node-pty terminal, as a person
 * would. Used by transport-ssh and narc.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import pty from '@lydell/node-pty';

/** What the ssh client did. */
export interface SshResult {
  /** 255 for an ssh-level failure (auth, connection), else the remote status. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Options for {@link runSsh}. */
export interface RunSshOptions {
  /** The server's port; `dir`, when given, keeps the client's known_hosts (else none is kept). */
  server: { port: number; dir?: string };
  user?: string;
  /** Log in with this password (through sshpass). */
  password?: string;
  /** Log in with this private key file. */
  identity?: string;
  /** Remote command; omitted: a shell. */
  command?: string;
  /** Extra ssh options before the destination. */
  args?: readonly string[];
  stdin?: Buffer | string;
  timeoutMs?: number;
}

/** The ssh argv (without sshpass) for a test server on 127.0.0.1. */
export function sshArguments(options: RunSshOptions): string[] {
  const { server } = options;
  const auth =
    options.identity === undefined
      ? [
          '-o',
          'PubkeyAuthentication=no',
          '-o',
          'PreferredAuthentications=password,keyboard-interactive',
        ]
      : ['-i', options.identity, '-o', 'IdentitiesOnly=yes', '-o', 'PasswordAuthentication=no'];
  return [
    '-p',
    String(server.port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    `UserKnownHostsFile=${server.dir === undefined ? '/dev/null' : path.join(server.dir, 'known_hosts')}`,
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=10',
    '-o',
    'NumberOfPasswordPrompts=1',
    '-F',
    '/dev/null',
    ...(options.password === undefined && options.identity === undefined
      ? ['-o', 'BatchMode=yes']
      : auth),
    ...(options.args ?? []),
    `${options.user ?? 'tester'}@127.0.0.1`,
    ...(options.command === undefined ? [] : [options.command]),
  ];
}

/** Run the OpenSSH client to completion. */
export function runSsh(options: RunSshOptions): Promise<SshResult> {
  const argv = sshArguments(options);
  const [file, args] =
    options.password === undefined
      ? ['ssh', argv]
      : ['sshpass', ['-p', options.password, 'ssh', ...argv]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.stdin ?? '');
  });
}

/** An interactive `ssh -tt` in a pseudo-terminal, as a person would run it. */
export interface InteractiveSsh {
  /** Everything the terminal showed so far. */
  readonly output: string;
  write(data: string): void;
  /** Resolve once the output after `since` (a length of `output`) matches; returns the match. */
  expect(pattern: RegExp, since?: number, timeoutMs?: number): Promise<RegExpExecArray>;
  resize(cols: number, rows: number): void;
  /** Resolves with the client's exit code once it exits. */
  readonly exited: Promise<number>;
  kill(signal?: string): void;
}

/** Start `ssh -tt` (through sshpass when a password is given) in a node-pty terminal of `cols`×`rows`. */
export function interactiveSsh(
  options: Omit<RunSshOptions, 'stdin' | 'timeoutMs'> & { cols?: number; rows?: number },
): InteractiveSsh {
  const argv = sshArguments({ ...options, args: ['-tt', ...(options.args ?? [])] });
  const [file, args] =
    options.password === undefined
      ? ['ssh', argv]
      : ['sshpass', ['-p', options.password, 'ssh', ...argv]];
  const terminal = pty.spawn(file, args, {
    cols: options.cols ?? 80,
    rows: options.rows ?? 24,
    name: 'xterm',
    env: { ...process.env, TERM: 'xterm' },
  });
  let output = '';
  const listeners = new Set<() => void>();
  terminal.onData((data) => {
    output += data;
    // Answer cursor position queries as a terminal would (busybox's line editor waits for one).
    if (data.includes('\x1b[6n')) terminal.write('\x1b[1;1R');
    for (const listener of listeners) listener();
  });
  const exited = new Promise<number>((resolve) => {
    terminal.onExit(({ exitCode }) => {
      for (const listener of listeners) listener();
      resolve(exitCode);
    });
  });
  return {
    get output() {
      return output;
    },
    write: (data) => terminal.write(data),
    resize: (cols, rows) => terminal.resize(cols, rows),
    exited,
    kill: (signal) => terminal.kill(signal),
    expect(pattern, since = 0, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = pattern.exec(output.slice(since));
          if (!match) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(match);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${String(pattern)} in terminal output:\n${output.slice(since)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
