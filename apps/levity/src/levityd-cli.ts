/**
 * The `levityd` command line: `levityd ADDRESS` as the original, plus opt-in
 * flags (token, TLS and mutual TLS, a data dir, the grace period). Listening
 * beyond loopback needs a token or client certificates, or an explicit
 * `--insecure`.
 */
import path from 'node:path';
import { isLoopbackHost } from '@overthere/core';
import { splitHostPort } from './address.js';
import { formatGoDuration, parseGoDuration } from './go-format.js';
import {
  FlagValues,
  UsageError,
  flagLabel,
  formatFlags,
  isFlag,
  parseFlag,
  type FlagSpec,
} from './flags.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';

/** Between SIGTERM and SIGKILL after SignalTask: the original's 5 s. */
export const DEFAULT_GRACE_MS = 5_000;
/** Finished tasks are forgotten this long after they ended, by default. */
export const DEFAULT_TASK_TTL_MS = 24 * 60 * 60 * 1000;
/** Node timers fire at once past about 24.8 days. */
const MAX_DURATION_MS = 2_147_483_647;

const FLAGS: readonly FlagSpec[] = [
  {
    name: 'token',
    kind: 'string',
    usage: 'Require this token from clients (authorization: Bearer); default $LEVITY_TOKEN',
  },
  {
    name: 'insecure',
    kind: 'bool',
    usage: 'Allow a non-loopback address without a token or client certificates',
  },
  {
    name: 'tls-cert',
    short: 'c',
    aliases: ['certificate'],
    kind: 'string',
    usage: 'Serve TLS with this certificate chain (PEM; needs --tls-key)',
  },
  {
    name: 'tls-key',
    short: 'k',
    aliases: ['key'],
    kind: 'string',
    usage: 'Private key for --tls-cert (PEM)',
  },
  {
    name: 'tls-client-ca',
    kind: 'string',
    usage: 'Require client certificates signed by this CA (PEM): mutual TLS',
  },
  {
    name: 'data-dir',
    kind: 'string',
    usage: 'Keep task records and output here, so they survive a restart (default: memory only)',
  },
  {
    name: 'grace',
    kind: 'duration',
    usage: 'Time between SIGTERM and SIGKILL when a task is signalled',
    defaultText: formatGoDuration(DEFAULT_GRACE_MS),
  },
  {
    name: 'task-ttl',
    kind: 'duration',
    usage: 'Forget finished tasks this long after they ended; 0 keeps them',
    defaultText: '24h0m0s',
  },
  {
    name: 'log-level',
    kind: 'string',
    usage: `Log level: ${LOG_LEVELS.join(', ')}`,
    defaultText: '"warn"',
  },
  { name: 'help', short: 'h', kind: 'bool', usage: 'help for levityd' },
  { name: 'version', kind: 'bool', usage: 'Print the version and exit' },
];

/** Paths of the TLS files. */
export interface TlsPaths {
  cert: string;
  key: string;
  clientCa: string | undefined;
}

/** Settings for one run of the server. */
export interface LevitydSettings {
  /** As given: `127.0.0.1:4321`, `:4321`, `[::1]:0`. */
  address: string;
  token: string | undefined;
  tls: TlsPaths | undefined;
  dataDir: string | undefined;
  graceMs: number;
  taskTtlMs: number;
  logLevel: LogLevel;
}

export type LevitydCommand =
  { kind: 'help' } | { kind: 'version' } | { kind: 'serve'; settings: LevitydSettings };

/** `levityd --help`. */
export function levitydHelp(): string {
  return (
    'Levity: A simple task manager service. Serves the levity gRPC protocol on\n' +
    'ADDRESS (host:port; ":port" is every interface) and runs the tasks clients\n' +
    'start, as the user levityd runs as. Listening beyond loopback needs a token,\n' +
    'client certificates, or --insecure.\n\n' +
    'Usage:\n  levityd ADDRESS [flags]\n\n' +
    'Examples:\n' +
    '  levityd 127.0.0.1:4321\n' +
    '  LEVITY_TOKEN=s3cret levityd --tls-cert server.pem --tls-key server-key.pem 0.0.0.0:4321\n\n' +
    'Flags:\n' +
    formatFlags(FLAGS)
  );
}

function duration(values: FlagValues, name: string, fallback: number): number {
  const text = values.last(name);
  if (text === undefined) return fallback;
  const flag = FLAGS.find((candidate) => candidate.name === name) as FlagSpec;
  let ms: number;
  try {
    ms = parseGoDuration(text);
  } catch (error) {
    throw new UsageError(
      `invalid argument ${JSON.stringify(text)} for "${flagLabel(flag)}" flag: ${(error as Error).message}`,
    );
  }
  if (ms < 0 || ms > MAX_DURATION_MS) {
    throw new UsageError(
      `invalid argument ${JSON.stringify(text)} for "${flagLabel(flag)}" flag: want 0 to 596h`,
    );
  }
  return Math.round(ms);
}

/**
 * Parse `levityd`'s arguments (without `node` and the script).
 *
 * @throws UsageError with a one-line message.
 */
export function parseLevitydCommandLine(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): LevitydCommand {
  const values = new FlagValues();
  const positionals: string[] = [];
  let index = 0;
  while (index < args.length) {
    const arg = args[index] as string;
    if (arg === '--') {
      positionals.push(...args.slice(index + 1));
      break;
    }
    if (isFlag(arg)) {
      index = parseFlag(args, index, FLAGS, values);
      continue;
    }
    positionals.push(arg);
    index += 1;
  }
  if (values.bool('help')) return { kind: 'help' };
  if (values.bool('version')) return { kind: 'version' };
  if (positionals.length !== 1) {
    throw new UsageError(`accepts 1 arg(s), received ${positionals.length}`);
  }
  const address = positionals[0] as string;
  let host: string;
  try {
    host = splitHostPort(address).host;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  const tokenFlag = values.last('token');
  const token =
    tokenFlag !== undefined && tokenFlag !== '' ? tokenFlag : env.LEVITY_TOKEN || undefined;
  const cert = values.last('tls-cert') || undefined;
  const key = values.last('tls-key') || undefined;
  const clientCa = values.last('tls-client-ca') || undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  if (clientCa !== undefined && cert === undefined) {
    throw new UsageError('--tls-client-ca needs --tls-cert and --tls-key');
  }
  if (
    !isLoopbackHost(host) &&
    token === undefined &&
    clientCa === undefined &&
    !values.bool('insecure')
  ) {
    const where = host === '' ? `${address} (every interface)` : address;
    throw new UsageError(
      `refusing to listen on ${where} without authentication: anyone who can connect could run any command. ` +
        'Give a token (--token or LEVITY_TOKEN), client certificates (--tls-client-ca), ' +
        'or --insecure to accept that',
    );
  }
  const logLevel = values.last('log-level') ?? 'warn';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(
      `invalid argument ${JSON.stringify(logLevel)} for "--log-level" flag: want one of ${LOG_LEVELS.join(', ')}`,
    );
  }
  const dataDir = values.last('data-dir') || undefined;
  return {
    kind: 'serve',
    settings: {
      address,
      token,
      tls: cert !== undefined && key !== undefined ? { cert, key, clientCa } : undefined,
      dataDir: dataDir === undefined ? undefined : path.resolve(dataDir),
      graceMs: duration(values, 'grace', DEFAULT_GRACE_MS),
      taskTtlMs: duration(values, 'task-ttl', DEFAULT_TASK_TTL_MS),
      logLevel: logLevel as LogLevel,
    },
  };
}
